//! The messages: what a request and a response look like as JSON, and how
//! a frame's body is read as a request. Pure data and functions, no I/O:
//! [`crate::frame`] moves the bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ANCHOR: messages
/// A call: which method to run, and its parameters.
///
/// On the wire: `{"method":"add","params":{"a":5,"b":3}}`. `params` is any
/// JSON value; each method decides what shape it expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The name the server registered the method under.
    pub method: String,
    /// The arguments. Missing on the wire means `null`.
    #[serde(default)]
    pub params: Value,
}

/// The answer to one request: either a result or an error message.
///
/// Serde's default ("externally tagged") enum representation gives exactly
/// the two shapes of the wire format: `{"result":8.0}` or
/// `{"error":"division by zero"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    /// The method ran and returned this value.
    Result(Value),
    /// The request failed; the string says why, for a human to read.
    Error(String),
}
// ANCHOR_END: messages

/// Reads a request out of a frame's body. The error is the message the
/// caller gets back: the frame was fine, its contents were not.
pub fn parse_request(body: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_json_shape() {
        let request = parse_request(br#"{"method":"add","params":{"a":5,"b":3}}"#).unwrap();
        assert_eq!(request.method, "add");
        assert_eq!(
            serde_json::to_string(&Response::Result(8.0.into())).unwrap(),
            r#"{"result":8.0}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Error("division by zero".into())).unwrap(),
            r#"{"error":"division by zero"}"#
        );
    }
}
