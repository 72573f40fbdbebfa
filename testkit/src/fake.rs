//! A scripted server: it reads request frames like a real server, and
//! answers each with whatever the test says, including what no real server
//! would send.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::{STUCK, read_frame, send_raw_quietly, write_frame};

/// One thing the fake server does in answer to a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// One frame holding this JSON.
    Json(Value),
    /// One frame holding these bytes.
    Frame(Vec<u8>),
    /// These bytes as they are: half a frame, a hostile length, garbage.
    Raw(Vec<u8>),
    /// These bytes one at a time, a pause of `every` before each.
    Trickle {
        /// What to send, eventually.
        bytes: Vec<u8>,
        /// The pause before each byte.
        every: Duration,
    },
    /// Say nothing more, read nothing more, and keep the connection open
    /// until the [`FakeServer`] is dropped.
    Stall,
    /// Hang up.
    Close,
}

/// What the fake server does for each request it reads: given the request
/// as JSON (`Null` if it is not JSON), the replies, in order.
type Script = Box<dyn FnMut(&Value) -> Vec<Reply> + Send>;

/// A fake server on `127.0.0.1`, on a port the OS picks, that runs until it
/// is dropped.
pub struct FakeServer {
    addr: SocketAddr,
    /// Every request body it read, in order.
    requests: Receiver<Vec<u8>>,
    /// Set on drop: stalled connections end and the accept loop stops.
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Serves every connection, each on its own thread, answering each
    /// request as `script` says.
    pub fn start(script: impl FnMut(&Value) -> Vec<Reply> + Send + 'static) -> FakeServer {
        FakeServer::spawn(Box::new(script), false)
    }

    /// Takes one connection and then stops listening, so that a client's
    /// reconnect is refused; answers its requests as `script` says.
    pub fn start_once(script: impl FnMut(&Value) -> Vec<Reply> + Send + 'static) -> FakeServer {
        FakeServer::spawn(Box::new(script), true)
    }

    /// The simplest fake: one connection, whose first request is answered
    /// with `replies`, after which the server hangs up (unless one of them
    /// is [`Reply::Stall`]).
    pub fn once(replies: Vec<Reply>) -> FakeServer {
        let mut replies = Some(replies);
        FakeServer::start_once(move |_| {
            let mut first = replies.take().unwrap_or_default();
            first.push(Reply::Close);
            first
        })
    }

    fn spawn(script: Script, only_one: bool) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a fake server");
        let addr = listener.local_addr().unwrap();
        let (seen, requests) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(script));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (script, seen, stop) = (Arc::clone(&script), seen.clone(), stopped.clone());
                let connection = thread::spawn(move || serve(stream, &script, &seen, &stop));
                if only_one {
                    // Dropping the listener makes the next connect fail.
                    drop(listener);
                    let _ = connection.join();
                    return;
                }
            }
        });
        FakeServer {
            addr,
            requests,
            stop,
        }
    }

    /// Where the fake server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next request body the server read, waiting up to [`STUCK`].
    pub fn request(&self) -> Vec<u8> {
        self.requests
            .recv_timeout(STUCK)
            .expect("the fake server got no request")
    }

    /// The next request the server read, as JSON.
    pub fn request_json(&self) -> Value {
        serde_json::from_slice(&self.request()).expect("the request is JSON")
    }

    /// The next request, if one comes within `wait`: for proving that a
    /// client did *not* send something, where no event can be awaited.
    pub fn request_within(&self, wait: Duration) -> Option<Vec<u8>> {
        self.requests.recv_timeout(wait).ok()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees `stop` (refused once it has gone).
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection: read a request, do what the script says, repeat.
fn serve(mut stream: TcpStream, script: &Mutex<Script>, seen: &Sender<Vec<u8>>, stop: &AtomicBool) {
    while let Ok(Some(body)) = read_frame(&mut stream) {
        let request = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = seen.send(body);
        let replies = (script.lock().unwrap_or_else(PoisonError::into_inner))(&request);
        for reply in replies {
            let sent = match reply {
                Reply::Json(value) => write_frame(&mut stream, value.to_string().as_bytes()),
                Reply::Frame(body) => write_frame(&mut stream, &body),
                Reply::Raw(bytes) => send_raw_quietly(&mut stream, &bytes),
                Reply::Trickle { bytes, every } => trickle(&mut stream, &bytes, every, stop),
                Reply::Stall => {
                    while !stop.load(Ordering::Acquire) {
                        thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
                Reply::Close => return,
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

/// Sends `bytes` one at a time, pausing `every` before each.
fn trickle(
    stream: &mut TcpStream,
    bytes: &[u8],
    every: Duration,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    for byte in bytes {
        if stop.load(Ordering::Acquire) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        thread::sleep(every);
        send_raw_quietly(stream, &[*byte])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{closed_by_server, connect, exchange, send_raw};
    use serde_json::json;
    use std::io::ErrorKind;

    #[test]
    fn a_script_answers_each_request_and_sees_what_was_sent() {
        let server = FakeServer::start(|request| {
            vec![
                Reply::Json(json!({"echo": request["n"]})),
                Reply::Raw(vec![]),
            ]
        });
        for n in 0..2 {
            let mut stream = connect(server.addr());
            assert_eq!(exchange(&mut stream, br#"{"n":1}"#), json!({"echo": 1}));
            assert_eq!(exchange(&mut stream, b"[]"), json!({"echo": null}), "{n}");
        }
        assert_eq!(server.request_json(), json!({"n": 1}));
        assert_eq!(server.request(), b"[]");
    }

    #[test]
    fn once_answers_then_hangs_up_and_refuses_a_second_connection() {
        let server = FakeServer::once(vec![Reply::Frame(b"hi".to_vec())]);
        let mut stream = connect(server.addr());
        send_raw(&mut stream, &crate::frame(b"{}"));
        assert_eq!(read_frame(&mut stream).unwrap().unwrap(), b"hi");
        assert!(closed_by_server(&mut stream));
        crate::wait_until("the listener is gone", STUCK, || {
            TcpStream::connect(server.addr()).is_err()
        });
    }

    #[test]
    fn a_stall_keeps_the_connection_open_and_a_trickle_arrives() {
        let every = Duration::from_millis(1);
        let server = FakeServer::start(move |_| {
            vec![
                Reply::Trickle {
                    bytes: crate::frame(b"slow"),
                    every,
                },
                Reply::Stall,
            ]
        });
        let mut stream = connect(server.addr());
        assert_eq!(crate::exchange_bytes(&mut stream, b"{}"), b"slow");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let err = read_frame(&mut stream).unwrap_err();
        assert!(matches!(
            err.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        drop(server);
        stream.set_read_timeout(Some(STUCK)).unwrap();
        assert!(
            closed_by_server(&mut stream),
            "a stall ends with the server"
        );
    }
}
