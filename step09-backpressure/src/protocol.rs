//! The messages: what a request and a response look like as JSON, and how
//! a frame's body is read as a request. Pure data and functions, no I/O:
//! [`crate::frame`] moves the bytes.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, forward_to_deserialize_any};
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// A call: which method to run, and its parameters.
///
/// On the wire:
/// `{"id":1,"method":"add","params":{"a":5,"b":3},"meta":{"timeout_ms":15000,"idempotent":false}}`.
/// `params` is any JSON value; each method says what shape it expects by
/// the type it decodes them into (see `Methods::register`). The server
/// reads a request with [`parse_message`], which checks it field by field.
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
    /// How long the caller is willing to wait, in milliseconds; `None`
    /// (`null`) for as long as it takes.
    ///
    /// The time left, from when the server reads the request, not a moment:
    /// the two machines' clocks can disagree by more than a call takes. Time
    /// on the wire goes uncounted, so the server's deadline falls a bit late.
    pub timeout_ms: Option<u64>,
    /// True if running the call twice does no more harm than running it
    /// once, so that it is safe to retry. The client decides by it; the
    /// server only sees it.
    pub idempotent: bool,
    /// The shared secret of a server that requires one
    /// (`Methods::require_token`); left out of the frame when `None`, and
    /// refused when `null`: a token is a string or not there.
    ///
    /// On every request, so that there is no per-connection handshake to get
    /// wrong. Without TLS it crosses the network in clear text: it keeps out
    /// a careless client, not an attacker who can watch the traffic.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "not_null")]
    pub token: Option<String>,
}

/// Reads a field that may be left out but, when there, holds a value:
/// `Option`'s own reading takes `null` for `None`. The field's default
/// (here the struct's `#[serde(default)]`) covers it being left out.
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The answer to one request, tagged with that request's id.
///
/// On the wire, `{"id":1,"ok":true,"result":8.0}` on success and
/// `{"id":2,"ok":false,"error":{"code":"METHOD_NOT_FOUND","message":"unknown method `multiply`","details":null}}`
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
    /// What kind of failure, for a program to match on.
    pub code: ErrorCode,
    /// What went wrong, for a human to read. Not for a program: its words
    /// may change, the code and the details do not.
    pub message: String,
    /// What exactly was wrong, for a program to act on; `null` when there
    /// is nothing to add. Its shape depends on the code:
    ///
    /// - `BAD_REQUEST`: `{"field": "params.b", "expected": "a number"}`,
    ///   the path of the field that was wrong, dotted from the top of the
    ///   request (`""` for the request as a whole), and what it should have
    ///   been (`"a value"` when it was missing);
    /// - `INTERNAL` for an answer too large to send: `{"bytes": 1048600,
    ///   "max_bytes": 1048576}`;
    /// - `SERVER_BUSY` in the notice of a server closing the connection
    ///   (shutting down, or the connection idle), and in its answer to a
    ///   request it refused: `{"going_away": true}`;
    /// - `null` for every other code.
    #[serde(default)]
    pub details: Value,
}

/// What kind of failure, one of six, each a fixed string on the wire
/// (`"BAD_REQUEST"`). Clients match on them, so they are part of the
/// protocol: a code a client does not know makes the whole response
/// unreadable to it, and adding one is a change of protocol (step 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request is wrong: not a JSON object, a field missing or of the
    /// wrong type, a parameter out of range (a division by zero). From the
    /// server's checks and from methods; `details` names the field. Not
    /// retryable: the same request is just as wrong the second time.
    BadRequest,
    /// The server has no method of that name. From the server. Not
    /// retryable: it will not have one a moment later either.
    MethodNotFound,
    /// The caller's deadline passed before the method ran, or while it ran,
    /// and its result was dropped. From the server; the client's own
    /// deadline passing is `CallError::Timeout`. Not retryable: see
    /// [`ErrorCode::is_retryable`].
    Timeout,
    /// The server failed: a method panicked, or its answer was too large to
    /// send. From the server, which keeps the bug's details to itself (its
    /// log) rather than tell a peer about its insides. Not retryable: the
    /// method may have done part of its work, and a bug tends to recur.
    Internal,
    /// The request lacks the token the server requires, or has a wrong one.
    /// From the server, before it looks up any method. Not retryable: the
    /// same token is refused again.
    Unauthorized,
    /// The server did not do the work this time, and may do it later. Today
    /// from `flaky`, which pretends, and from a server closing a connection,
    /// in its notice and its refusals ([`Response::going_away`]); step 9 sheds
    /// load with it when too many requests arrive at once. Retryable, and
    /// the only code that is.
    ServerBusy,
}

/// The code as it is on the wire, e.g. `SERVER_BUSY`: serde's spelling,
/// so that the two can never disagree.
impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        f.write_str(name.as_str().unwrap_or_default())
    }
}

impl ErrorCode {
    /// Every code, in the order declared, for whoever must go through them
    /// all (a test of each code's spelling, or of which are retried).
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::ServerBusy,
    ];

    /// True if the same request, sent again, may succeed: only after
    /// `SERVER_BUSY`. Any other code would come again, or for `TIMEOUT`,
    /// comes too late: one deadline covers the whole call, every attempt
    /// included, so once it has passed no time is left for another.
    pub fn is_retryable(self) -> bool {
        // Every code listed, no `_`: a new code must be classified here
        // (and added to `ALL` above, which the compiler cannot check).
        match self {
            ErrorCode::ServerBusy => true,
            ErrorCode::BadRequest
            | ErrorCode::MethodNotFound
            | ErrorCode::Timeout
            | ErrorCode::Internal
            | ErrorCode::Unauthorized => false,
        }
    }
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

impl Response {
    /// The notice a server sends on a connection it is about to close: on
    /// each connection as it begins to shut down, or on one left idle for
    /// too long. It runs no new request on this connection (it refuses those
    /// that arrive: [`Response::refused`]), answers the calls it has taken
    /// on, then closes. HTTP/2 and gRPC call it GOAWAY.
    ///
    /// It is an answer to no request: `"id": null`, the id of an answer to
    /// a request too broken to read. A client that predates the notice
    /// (steps 2-5) drops it as it drops any answer it has no call for, and
    /// goes on waiting for its answers: old clients keep working. This one
    /// tells it by its code, `SERVER_BUSY`, the one code that means "not
    /// done here, try again", and `details` that say `going_away`.
    pub fn going_away() -> Response {
        let message = "the server is closing this connection: send new calls on a new connection";
        Response::failure(None, RpcError::going_away(message))
    }

    /// The answer to request `id`, read by a server going away after its
    /// notice, and *not run*: as the notice, under the request's id. Its
    /// caller may send it again on a new connection, whatever the call.
    pub fn refused(id: u64) -> Response {
        let message = "the server is closing this connection: this request was not run";
        Response::failure(Some(id), RpcError::going_away(message))
    }

    /// The answer to request `id` when the server has no room for it: past
    /// `limit` (`"in_flight"`, `"handlers"` or `"bytes"`), the request is
    /// *shed*, not run, and its caller may send it again, whatever the
    /// call, after `retry_after`.
    pub fn busy(id: u64, limit: &str, retry_after: Duration) -> Response {
        let message = format!("the server is busy ({limit}): this request was not run");
        let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        let error = RpcError {
            details: json!({ "shed": limit, "retry_after_ms": millis }),
            ..RpcError::new(ErrorCode::ServerBusy, message)
        };
        Response::failure(Some(id), error)
    }

    /// True if this is the notice [`Response::going_away`] makes.
    pub fn is_going_away(&self) -> bool {
        self.id.is_none() && (self.error.as_ref()).is_some_and(RpcError::is_going_away)
    }
}

impl RpcError {
    /// The error of the going-away notice, and of a request refused after
    /// it: `SERVER_BUSY`, with details `{"going_away": true}`.
    fn going_away(message: &str) -> RpcError {
        RpcError {
            details: json!({ "going_away": true }),
            ..RpcError::new(ErrorCode::ServerBusy, message)
        }
    }

    /// True for the error of a going-away notice or refusal: a request
    /// answered with it was not run.
    pub fn is_going_away(&self) -> bool {
        self.code == ErrorCode::ServerBusy && self.details["going_away"] == true
    }

    /// For a request shed by a busy server ([`Response::busy`]), which did
    /// not run it: how long the server asks its caller to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        let millis = self.details["retry_after_ms"].as_u64();
        millis
            .filter(|_| self.code == ErrorCode::ServerBusy)
            .map(Duration::from_millis)
    }
}

/// What a client sends in a frame: a request, or a ping.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call to run.
    Request(Request),
    /// A heartbeat, to be answered at once.
    Ping(Ping),
}

/// A heartbeat, from a client to its server: "are you still there?". On
/// the wire `{"ping":7}`, answered at once by the [`Pong`] `{"pong":7}`.
///
/// A client sends one when calls wait on a connection and nothing has come
/// from the server for a while (`ClientConfig::ping_interval`): a server
/// that answers neither calls nor pings has gone. The number is the
/// client's count of its pings, echoed, so that a pong can be told from
/// another (this client takes any pong, indeed any frame, as news that the
/// server is there). A ping runs nothing, so it needs no token and takes no
/// request id. A server older than this step answers it as a request with
/// no `id` (`BAD_REQUEST`, `"id": null`), which shows it alive just as
/// well, and which the client counts as an unknown response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The client's number for this ping.
    pub ping: u64,
}

/// The answer to a [`Ping`], with its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The number of the ping answered.
    pub pong: u64,
}

impl Ping {
    /// The frame body of this ping's answer.
    pub fn answer(self) -> Vec<u8> {
        let pong = Pong { pong: self.ping };
        serde_json::to_vec(&pong).expect("a Pong is valid JSON")
    }
}

impl RpcError {
    /// An error with `code` and `message`, and nothing in `details`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// A `BAD_REQUEST` whose details name `field` and what was `expected`
    /// of it, in the shape [`RpcError::details`] documents.
    pub fn bad_request(field: &str, expected: &str, message: impl Into<String>) -> RpcError {
        RpcError {
            details: json!({ "field": field, "expected": expected }),
            ..RpcError::new(ErrorCode::BadRequest, message)
        }
    }
}

/// Reads a frame's body as a request or a ping, or says what is wrong with
/// it, with the id to answer under if that much can be read
/// (`{"id":7,"method":42}` is answered under 7, so its caller hears why;
/// else `"id": null`).
///
/// Every field the protocol defines is checked: `id` an unsigned integer,
/// `method` a non-empty string, `meta` (if there) an object whose fields
/// have their types. Fields it does not define are ignored, so that a
/// later step can add one without breaking this server.
pub fn parse_message(body: &[u8]) -> Result<Message, (Option<u64>, RpcError)> {
    let whole = |message: String| RpcError::bad_request("", "a JSON object", message);
    let value: Value = serde_json::from_slice(body).map_err(|e| (None, whole(e.to_string())))?;
    // serde's derived `Deserialize` also takes a JSON array as a struct,
    // by position: `[7,"add",{"a":1,"b":2}]` would run `add`. A request is
    // an object; and step 10 gives an array a meaning of its own, a batch.
    let Value::Object(mut fields) = value else {
        return Err((None, whole("a request must be a JSON object".into())));
    };
    // An object with a `ping` field and no `method` is a ping. (A request
    // may carry fields this server does not know: `ping` could be one.)
    if let (Some(ping), None) = (fields.get("ping"), fields.get("method")) {
        let ping = decode(ping, "ping").map_err(|error| (None, error))?;
        return Ok(Message::Ping(Ping { ping }));
    }
    // One field at a time, in the order the protocol appendix gives, so
    // that a request wrong in two ways is told about the same one every
    // time. (Decoded whole, serde would go by the keys, and `serde_json`
    // keeps them sorted: `meta` before `method`.)
    let field = |name: &str| {
        let missing = || RpcError::bad_request(name, "a value", format!("missing field `{name}`"));
        fields.get(name).ok_or_else(missing)
    };
    let id = field("id").and_then(|id| decode(id, "id"));
    let id: u64 = id.map_err(|error| (None, error))?;
    // From here on, a request wrong elsewhere is answered under its id.
    let with_id = |error: RpcError| (Some(id), error);
    let method: String = field("method")
        .and_then(|method| decode(method, "method"))
        .map_err(with_id)?;
    if method.is_empty() {
        let error = RpcError::bad_request("method", "a non-empty string", "`method` is empty");
        return Err(with_id(error));
    }
    let meta = match fields.get("meta") {
        Some(meta) => decode(meta, "meta").map_err(with_id)?,
        None => Meta::default(),
    };
    // Any JSON at all: the method's own type decides (`Methods::register`).
    let params = fields.remove("params").unwrap_or_default();
    Ok(Message::Request(Request {
        id,
        method,
        params,
        meta,
    }))
}

/// Decodes `value`, found at `at` in the request (`""` for the request,
/// `"params"` for its parameters), as a `T`; or says which field did not
/// fit, and what was expected there, in the protocol's words.
///
/// serde says *what* went wrong ("invalid type: string "five", expected
/// f64") but not *where*. `serde_path_to_error` tracks the path as serde
/// decodes: it replaces a hand-written walk over `value` mirroring every
/// `T`. `ByName` keeps serde from reading a struct out of an array.
pub fn decode<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, RpcError> {
    serde_path_to_error::deserialize(ByName(value)).map_err(|e| {
        // `.` is the path of `value` itself.
        let path = match e.path().to_string() {
            inner if inner == "." => at.to_string(),
            inner => join(at, &inner),
        };
        let why = e.inner().to_string();
        // A missing field is reported at the struct that lacks it: add its name.
        if let Some(name) = why.strip_prefix("missing field `") {
            let field = join(&path, name.trim_end_matches('`'));
            return RpcError::bad_request(&field, "a value", format!("missing field `{field}`"));
        }
        // "invalid type: string "five", expected f64": serde's last words
        // name what it wanted, in Rust's terms; the wire speaks JSON's.
        let Some((_, rust)) = why.rsplit_once(", expected ") else {
            // Not about a type: a type's own check failed. Its words, then.
            return RpcError::bad_request(&path, &why, format!("`{path}`: {why}"));
        };
        let expected = match rust {
            "f32" | "f64" => "a number",
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "an unsigned integer",
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
            "a sequence" => "an array",
            "a map" => "an object",
            "unit" => "null",
            words => words,
        };
        // `details.expected` keeps to a few fixed words; the message, for
        // people, also names the fields a struct wants (see `ByName`).
        let short = if expected.starts_with("an object") {
            "an object"
        } else {
            expected
        };
        RpcError::bad_request(&path, short, format!("`{path}` must be {expected}"))
    })
}

/// `a.b` from `a` and `b`, and `b` from `""` and `b`.
fn join(path: &str, name: &str) -> String {
    match path {
        "" => name.to_string(),
        path => format!("{path}.{name}"),
    }
}

/// A JSON value to decode a type from, read as `serde_json` reads a
/// `Value`, but for one thing: a struct only from an object, by its
/// fields' names.
///
/// serde's derived `Deserialize` also reads a struct from an array, by
/// position, and `Value` offers it the array: `"params":[1,2]` would be
/// `{"a":1,"b":2}`, and `"meta":[null,false,"SECRET"]` a token. A match by
/// position is a trap: nobody named the fields, so a reordered struct, or
/// one with a field added, reads the same array as something else, and a
/// token gets in where nobody wrote `token`. No struct on our wire is an
/// array, so none is read from one, at any depth: the values inside an
/// array or an object are handed on wrapped too.
struct ByName<'a>(&'a Value);

impl<'de> Deserializer<'de> for ByName<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut items = SeqDeserializer::new(items.iter().map(ByName));
                let decoded = visitor.visit_seq(&mut items)?;
                items.end().map(|()| decoded)
            }
            Value::Object(fields) => {
                let fields = fields
                    .iter()
                    .map(|(name, value)| (name.as_str(), ByName(value)));
                let mut fields = MapDeserializer::new(fields);
                let decoded = visitor.visit_map(&mut fields)?;
                fields.end().map(|()| decoded)
            }
            other => other.deserialize_any(visitor),
        }
    }

    /// The one difference from `Value`: an object, or no struct.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            _ => Err(de::Error::invalid_type(
                Unexpected::Other("not an object"),
                &AnObjectWith(fields),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    /// An enum on our wire is a string (`ErrorCode`): `Value` reads that.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

/// So that `SeqDeserializer` and `MapDeserializer` take a `ByName` as the
/// deserializer of an element.
impl<'de> IntoDeserializer<'de, serde_json::Error> for ByName<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// What a struct is on the wire, in the protocol's words: "an object with
/// fields `a` and `b`".
struct AnObjectWith(&'static [&'static str]);

impl de::Expected for AnObjectWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")?;
        let Some((last, others)) = self.0.split_last() else {
            return Ok(());
        };
        f.write_str(if others.is_empty() {
            " with field "
        } else {
            " with fields "
        })?;
        for (i, name) in others.iter().enumerate() {
            let then = if i + 1 == others.len() { " and " } else { ", " };
            write!(f, "`{name}`{then}")?;
        }
        write!(f, "`{last}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_json_shape() {
        let request: Request =
            serde_json::from_str(r#"{"id":1,"method":"add","params":{"a":5,"b":3}}"#).unwrap();
        assert_eq!(request.method, "add");
        // No `meta` on the wire is the default meta.
        assert_eq!(request.meta, Meta::default());
        assert_eq!(
            serde_json::to_string(&Response::success(1, 8.0.into())).unwrap(),
            r#"{"id":1,"ok":true,"result":8.0}"#
        );
        let error = RpcError::new(ErrorCode::MethodNotFound, "unknown method `multiply`");
        assert_eq!(
            serde_json::to_string(&Response::failure(Some(2), error)).unwrap(),
            r#"{"id":2,"ok":false,"error":{"code":"METHOD_NOT_FOUND","message":"unknown method `multiply`","details":null}}"#
        );
    }

    #[test]
    fn the_going_away_notice_is_an_answer_to_no_request() {
        let notice = serde_json::to_string(&Response::going_away()).unwrap();
        assert_eq!(
            notice,
            r#"{"id":null,"ok":false,"error":{"code":"SERVER_BUSY","message":"the server is closing this connection: send new calls on a new connection","details":{"going_away":true}}}"#
        );
        assert!(
            serde_json::from_str::<Response>(&notice)
                .unwrap()
                .is_going_away()
        );
        // An answer to a request too broken to read is not a notice, nor is
        // an answer to a request, refused or busy.
        let unreadable = Response::failure(None, RpcError::new(ErrorCode::BadRequest, "bad"));
        let busy = Response::failure(Some(3), RpcError::new(ErrorCode::ServerBusy, "busy"));
        let refused = Response::refused(4);
        assert!(!unreadable.is_going_away() && !busy.is_going_away() && !refused.is_going_away());
        // A refusal says that its request did not run; a plain busy does not.
        assert!(refused.error.unwrap().is_going_away() && !busy.error.unwrap().is_going_away());
    }
}
