//! The method registry: which methods a server offers, by name, and how a
//! request is run against them. Knows nothing of sockets: [`crate::server`]
//! hands it requests and writes back what it returns.

use std::collections::HashMap;

use serde_json::Value;

use crate::protocol::{Request, Response};

// ANCHOR: methods
/// A method's code: takes the request's `params`, returns a result or an
/// error message for the caller.
///
/// `Send + Sync` because one `Methods` table is shared by every thread
/// that serves requests.
pub type Handler = Box<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

/// The table of methods a server offers, by name.
#[derive(Default)]
pub struct Methods {
    /// Method name to code. Filled before the server starts, read-only after.
    handlers: HashMap<String, Handler>,
}

impl Methods {
    /// An empty table.
    pub fn new() -> Methods {
        Methods::default()
    }

    /// Offers `handler` under `name`, replacing any method of that name.
    pub fn register(
        &mut self,
        name: &str,
        handler: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static,
    ) {
        self.handlers.insert(name.to_string(), Box::new(handler));
    }

    /// Runs the method a request names. An unknown name is an error response,
    /// not a server error: the caller made the mistake.
    pub fn call(&self, request: &Request) -> Response {
        match self.handlers.get(&request.method) {
            Some(handler) => match handler(&request.params) {
                Ok(result) => Response::Result(result),
                Err(message) => Response::Error(message),
            },
            None => Response::Error(format!("unknown method `{}`", request.method)),
        }
    }
}
// ANCHOR_END: methods
