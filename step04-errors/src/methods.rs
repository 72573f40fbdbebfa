//! The method registry: which methods a server offers, by name, and how a
//! request is run against them. Knows nothing of sockets: [`crate::server`]
//! hands it requests and writes back what it returns.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::protocol::{ErrorCode, Request, Response, RpcError, decode};

/// A method's code as the table keeps it: takes the request's `params` as
/// JSON, returns a result as JSON or an error for the caller. One type for
/// every method, whatever its parameters, so that one table holds them
/// all; [`Methods::register`] wraps each typed method into it.
///
/// `Send + Sync` because one `Methods` table is shared by every thread
/// that serves requests.
type Handler = Box<dyn Fn(&Value) -> Result<Value, RpcError> + Send + Sync>;

/// The table of methods a server offers, by name, and who may call them.
#[derive(Default)]
pub struct Methods {
    /// Method name to code. Filled before the server starts, read-only after.
    handlers: HashMap<String, Handler>,
    /// The token every request must carry in `meta.token`, if any.
    token: Option<String>,
}

impl Methods {
    /// An empty table.
    pub fn new() -> Methods {
        Methods::default()
    }

    // ANCHOR: typed_handler
    /// Offers `handler` under `name`, replacing any method of that name.
    ///
    /// The handler takes its parameters as its own type `P`, a struct
    /// deriving `Deserialize` say, into which `params` are decoded first:
    /// no handler checks a shape by hand, and params that do not fit are a
    /// `BAD_REQUEST` naming the field, the handler never called.
    pub fn register<P, R>(
        &mut self,
        name: &str,
        handler: impl Fn(P) -> Result<R, RpcError> + Send + Sync + 'static,
    ) where
        P: DeserializeOwned,
        R: Serialize,
    {
        let erased = move |params: &Value| {
            let result = handler(decode(params, "params")?)?;
            // A result with no JSON form (a map whose keys are not strings)
            // is the method's bug, not the caller's.
            serde_json::to_value(result)
                .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))
        };
        self.handlers.insert(name.to_string(), Box::new(erased));
    }
    // ANCHOR_END: typed_handler

    /// Requires `token` in the `meta.token` of every request: any other
    /// request is answered `UNAUTHORIZED`, and no method runs for it. See
    /// `Meta::token` for what this does and does not protect against.
    ///
    /// # Panics
    ///
    /// If `token` is empty: a request without a token would match it.
    pub fn require_token(&mut self, token: impl AsRef<str> + Into<String>) {
        assert!(
            !token.as_ref().is_empty(),
            "an empty token lets everyone in"
        );
        self.token = Some(token.into());
    }

    /// Runs the method a request names. An unknown name is an error response,
    /// not a server error: the caller made the mistake.
    pub fn call(&self, request: &Request) -> Response {
        let id = Some(request.id);
        // ANCHOR: token_check
        // Before any method is looked up: a caller without the token gets
        // nothing run, and does not even learn which methods exist.
        if let Some(token) = &self.token {
            let given = request.meta.token.as_deref().unwrap_or_default();
            if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
                let message = "missing or wrong `meta.token`";
                return Response::failure(id, RpcError::new(ErrorCode::Unauthorized, message));
            }
        }
        // ANCHOR_END: token_check
        match self.handlers.get(&request.method) {
            Some(handler) => match run_handler(handler, request) {
                Ok(result) => Response::success(request.id, result),
                Err(error) => Response::failure(id, error),
            },
            None => {
                let message = format!("unknown method `{}`", request.method);
                Response::failure(id, RpcError::new(ErrorCode::MethodNotFound, message))
            }
        }
    }
}

// ANCHOR: catch_panic
/// Runs a request's handler, and turns a panic in it into `INTERNAL`.
///
/// Unwinding would otherwise end the request's thread without an answer,
/// and its caller would wait out its deadline. Stopped here, the thread
/// goes on to write the answer and give back its place under the bound.
/// The panic's message goes to the server's log, not to the peer: it may
/// tell about the server's insides. The panic hook has logged it already,
/// with where it was raised, before `catch_unwind` returns; a line of our
/// own would only say it twice.
///
/// `AssertUnwindSafe` is our word that state a panic left half-changed is
/// acceptable to go on with: here only `flaky`'s counts, behind a lock that
/// every call takes even when poisoned. No help with `panic = "abort"`.
fn run_handler(handler: &Handler, request: &Request) -> Result<Value, RpcError> {
    panic::catch_unwind(AssertUnwindSafe(|| handler(&request.params))).unwrap_or_else(|_panic| {
        let message = format!("method `{}` failed", request.method);
        Err(RpcError::new(ErrorCode::Internal, message))
    })
}
// ANCHOR_END: catch_panic

// ANCHOR: constant_time_eq
/// Whether `a` and `b` are equal, in a time that depends on their lengths,
/// not on where they differ.
///
/// `==` stops at the first byte that differs, which a patient attacker can
/// time to guess the token a byte at a time. This looks at every byte:
/// `x ^ y` is 0 only for equal bytes, and `|` folds every difference into
/// one byte, tested once at the end. Different lengths return at once,
/// which tells how long the token is, not what it is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b)
        .fold(0, |difference, (x, y)| difference | (x ^ y))
        == 0
}
// ANCHOR_END: constant_time_eq

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"token", b"token") && constant_time_eq(b"", b""));
        for other in [&b"tokex"[..], b"xoken", b"token-2", b"toke", b""] {
            assert!(!constant_time_eq(b"token", other), "{other:?}");
            assert!(!constant_time_eq(other, b"token"), "{other:?}");
        }
    }

    #[test]
    #[should_panic(expected = "an empty token lets everyone in")]
    fn an_empty_token_is_refused() {
        Methods::new().require_token("");
    }
}
