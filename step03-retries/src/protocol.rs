//! The messages: what a request and a response look like as JSON, and how
//! a frame's body is read as a request. Pure data and functions, no I/O:
//! [`crate::frame`] moves the bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A call: which method to run, and its parameters.
///
/// On the wire:
/// `{"id":1,"method":"add","params":{"a":5,"b":3},"meta":{"timeout_ms":15000,"idempotent":false}}`.
/// `params` is any JSON value; each method decides what shape it expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client and copied into the response, so that answers
    /// arriving in any order can each be handed to the call that asked.
    /// Unique only among one connection's calls in flight: a counter will do.
    pub id: u64,
    /// The name the server registered the method under.
    pub method: String,
    /// The arguments. Missing on the wire means `null`.
    #[serde(default)]
    pub params: Value,
    /// How the caller wants the call handled. Missing means the defaults.
    #[serde(default)]
    pub meta: Meta,
}

/// What a caller says about a call besides what to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    // ANCHOR: deadline
    /// How long the caller is willing to wait, in milliseconds; `None`
    /// (`null`) for as long as it takes.
    ///
    /// The time left, from when the server reads the request, not a moment:
    /// the two machines' clocks can disagree by more than a call takes. Time
    /// on the wire goes uncounted, so the server's deadline falls a bit late.
    pub timeout_ms: Option<u64>,
    // ANCHOR_END: deadline
    /// True if running the call twice does no more harm than running it
    /// once, so that it is safe to retry. The client decides by it; the
    /// server only sees it.
    pub idempotent: bool,
}

/// The answer to one request, tagged with that request's id.
///
/// On the wire, `{"id":1,"ok":true,"result":8.0}` on success and
/// `{"id":2,"ok":false,"error":{"code":"method_error","message":"division by zero","details":null}}`
/// on failure: `result` is left out of a failure and `error` out of a
/// success. `ok` says which to look for without guessing from which keys
/// are there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request answered. `None` (`null`) when the request was
    /// too broken for its id to be read.
    pub id: Option<u64>,
    /// Whether the method ran and returned a result.
    pub ok: bool,
    /// What the method returned, when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the request failed, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// Why a request failed, in a form both a program and a human can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// What kind of failure, for a program to match on: `"bad_request"`,
    /// `"unknown_method"`, `"method_error"`, ... In this step each site
    /// picks its own string; step 4 makes the codes a typed enum.
    pub code: String,
    /// What went wrong, for a human to read.
    pub message: String,
    /// Anything else a program could use, as JSON; `null` when there is
    /// nothing to add.
    #[serde(default)]
    pub details: Value,
}

impl Response {
    /// The method with request `id` ran and returned `result`.
    pub fn success(id: u64, result: Value) -> Response {
        Response {
            id: Some(id),
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// The request with `id` (if it could be read) failed with `error`.
    pub fn failure(id: Option<u64>, error: RpcError) -> Response {
        Response {
            id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

impl RpcError {
    /// An error with `code` and `message`, and nothing in `details`.
    pub fn new(code: &str, message: impl Into<String>) -> RpcError {
        RpcError {
            code: code.to_string(),
            message: message.into(),
            details: Value::Null,
        }
    }
}

/// A handler's plain message is a `method_error`, so that `?` on a
/// `Result<_, String>` or `Result<_, &str>` works inside a handler.
impl From<String> for RpcError {
    fn from(message: String) -> RpcError {
        RpcError::new("method_error", message)
    }
}

impl From<&str> for RpcError {
    fn from(message: &str) -> RpcError {
        RpcError::new("method_error", message)
    }
}

/// Reads a request out of a frame's body. The error is the answer the
/// caller gets back: the frame was fine, its contents were not.
///
/// `{"id":7,"method":42}` is still answered under id 7, for the caller
/// waiting on it; only a request whose id cannot be read gets `null`.
pub fn parse_request(body: &[u8]) -> Result<Request, (Option<u64>, RpcError)> {
    serde_json::from_slice(body).map_err(|e| {
        // Parse again, loosely, just for the id: this is the rare path.
        let id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|request| request.get("id")?.as_u64());
        (
            id,
            RpcError::new("bad_request", format!("bad request: {e}")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_json_shape() {
        let request = parse_request(br#"{"id":1,"method":"add","params":{"a":5,"b":3}}"#).unwrap();
        assert_eq!(request.method, "add");
        // No `meta` on the wire is the default meta.
        assert_eq!(request.meta, Meta::default());
        assert_eq!(
            serde_json::to_string(&Response::success(1, 8.0.into())).unwrap(),
            r#"{"id":1,"ok":true,"result":8.0}"#
        );
        let error = RpcError::new("method_error", "division by zero");
        assert_eq!(
            serde_json::to_string(&Response::failure(Some(2), error)).unwrap(),
            r#"{"id":2,"ok":false,"error":{"code":"method_error","message":"division by zero","details":null}}"#
        );
    }
}
