//! The method registry: which methods a server offers, by name, and how a
//! request is run against them. Knows nothing of sockets: [`crate::server`]
//! hands it requests and writes back what it returns.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::thread;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task;
use tokio_util::task::AbortOnDropHandle;

use crate::protocol::{ErrorCode, Request, Response, RpcError, decode};

/// What a method's code returns when called: a future of its result, boxed
/// so that every method's future has the same type, whatever its size.
type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>>;

/// A method's code as the table keeps it: takes the request's `params` as
/// JSON, returns a future of the result as JSON or an error for the caller.
/// One type for every method, whatever its parameters, so that one table
/// holds them all; [`Methods::register`] wraps each typed method into it.
///
/// `Send + Sync` because one `Methods` table is shared by every task that
/// serves requests, on whichever of the runtime's threads it runs.
type Handler = Box<dyn Fn(Value) -> HandlerFuture + Send + Sync>;

/// The table of methods a server offers, by name, and who may call them.
pub struct Methods {
    /// Method name to code. Filled before the server starts, read-only after.
    handlers: HashMap<String, Handler>,
    /// The token every request must carry in `meta.token`, if any.
    token: Option<String>,
    /// Places for blocking calls to run, one per core, shared by every
    /// method registered with [`Methods::register_blocking`]: more would
    /// only take turns on the same cores, and starve the runtime's threads.
    blocking: Arc<Semaphore>,
}

impl Default for Methods {
    fn default() -> Methods {
        let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Methods {
            handlers: HashMap::new(),
            token: None,
            blocking: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl Methods {
    /// An empty table.
    pub fn new() -> Methods {
        Methods::default()
    }

    /// Offers `handler` under `name`, replacing any method of that name.
    ///
    /// The handler is async: an `async fn` taking its parameters as its own
    /// type `P`, a struct deriving `Deserialize` say, into which `params`
    /// are decoded first: no handler checks a shape by hand, and params that
    /// do not fit are a `BAD_REQUEST` naming the field, the handler never
    /// called. It must not block: it runs on one of a few runtime threads,
    /// shared by every connection. Code that blocks or computes for long
    /// goes to [`Methods::register_blocking`].
    pub fn register<P, R, F, Fut>(&mut self, name: &str, handler: F)
    where
        P: DeserializeOwned,
        R: Serialize,
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        // Shared by every call's future, which may outlive this call of
        // `register`'s closure.
        let handler = Arc::new(handler);
        let erased = move |params: Value| -> HandlerFuture {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let decoded = decode(&params, "params");
                // The JSON can be many times the size of its text; only the
                // decoded value is kept while the method runs.
                drop(params);
                let future = handler(decoded?);
                let result = future.await?;
                // A result with no JSON form (a map whose keys are not
                // strings) is the method's bug, not the caller's.
                serde_json::to_value(result)
                    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))
            })
        };
        self.handlers.insert(name.to_string(), Box::new(erased));
    }

    /// Offers a method whose code blocks, or computes for a long time, under
    /// `name`. It runs on tokio's pool of blocking threads
    /// (`spawn_blocking`), so the runtime's few threads go on serving every
    /// other connection meanwhile.
    ///
    /// At most one such call per core runs at once (`blocking`); the others
    /// wait for a place as futures, so a call given up on while it waits
    /// (its deadline passed, or its connection closed) is simply dropped.
    /// One that runs cannot be stopped, and keeps its place to the end:
    /// nothing can stop a blocking function from outside; only async code
    /// has points (`.await`) where it can be left.
    pub fn register_blocking<P, R>(
        &mut self,
        name: &str,
        handler: impl Fn(P) -> Result<R, RpcError> + Send + Sync + 'static,
    ) where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let handler = Arc::new(handler);
        let places = Arc::clone(&self.blocking);
        self.register(name, move |params: P| {
            let (handler, places) = (Arc::clone(&handler), Arc::clone(&places));
            async move {
                let place = places.acquire_owned().await;
                let place = place.map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
                // A thread of the blocking pool is not in the call's task:
                // the call's span goes with it by hand, so that what is
                // logged there (a panic, say) still names the request.
                let span = tracing::Span::current();
                let work = AbortOnDropHandle::new(task::spawn_blocking(move || {
                    let _place = place;
                    span.in_scope(|| handler(params))
                }));
                // A panic on the blocking thread comes back as a `JoinError`:
                // raise it again here, where `run_handler` catches it like
                // any other handler's (`resume_unwind` logs nothing more).
                match work.await {
                    Ok(result) => result,
                    Err(e) => match e.try_into_panic() {
                        Ok(panic) => panic::resume_unwind(panic),
                        // Aborted: only when the runtime shuts down.
                        Err(e) => Err(RpcError::new(ErrorCode::Internal, e.to_string())),
                    },
                }
            }
        });
    }

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

    /// The names of the methods in the table.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Whether `request` carries the token this table requires, if any.
    pub fn is_authorized(&self, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = request.meta.token.as_deref().unwrap_or_default();
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }

    /// Runs the method a request names. An unknown name is an error response,
    /// not a server error: the caller made the mistake.
    pub async fn call(&self, request: Request) -> Response {
        let id = Some(request.id);
        // Before any method is looked up: a caller without the token gets
        // nothing run, and does not even learn which methods exist.
        if !self.is_authorized(&request) {
            let message = "missing or wrong `meta.token`";
            return Response::failure(id, RpcError::new(ErrorCode::Unauthorized, message));
        }
        match self.handlers.get(&request.method) {
            Some(handler) => match run_handler(handler, request.params, &request.method).await {
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

/// Runs a request's handler, and turns a panic in it into `INTERNAL`.
///
/// Unwinding would otherwise end the request's task without an answer,
/// and its caller would wait out its deadline. A future runs in pieces, one
/// `poll` at a time, so each `poll` is wrapped in `catch_unwind`: a panic in
/// any piece ends the handler, and the task goes on to write the answer.
/// The panic's message goes to the server's log, not to the peer: it may
/// tell about the server's insides. The panic hook has logged it already,
/// with where it was raised; a line of our own would only say it twice.
///
/// `AssertUnwindSafe` is our word that state a panic left half-changed is
/// acceptable to go on with: here only `flaky`'s counts, behind a lock that
/// every call takes even when poisoned. No help with `panic = "abort"`.
async fn run_handler(handler: &Handler, params: Value, method: &str) -> Result<Value, RpcError> {
    let mut future = handler(params);
    let polled = poll_fn(|cx| {
        panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))).map_or_else(
            |_panic| std::task::Poll::Ready(Err(())),
            |poll| poll.map(Ok),
        )
    });
    polled.await.unwrap_or_else(|()| {
        let message = format!("method `{method}` failed");
        Err(RpcError::new(ErrorCode::Internal, message))
    })
}

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
