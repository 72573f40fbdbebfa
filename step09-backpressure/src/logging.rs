//! Where the log goes, and in what shape: both binaries call [`init`].
//!
//! The code logs through `tracing`: events (`warn!`, `debug!`, ...) inside
//! spans, such as a connection's (its peer) and a call's (its request id and
//! method), whose fields every event inside them carries. What is written,
//! and how, is chosen once, here: `RUST_LOG` picks the events
//! (`RUST_LOG=step09=debug`; `info` and above when unset), `--log-format`
//! the shape, text for people or JSON, one object a line, for programs.

use std::io::{self, IsTerminal};
use std::panic;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, its spans' fields before its own.
    Text,
    /// One JSON object per event, for programs that collect logs.
    Json,
}

/// How many lines may wait to be written; more are dropped.
const LOG_QUEUE: usize = 1024;

/// Sends this process's log to stderr, as `format` says, with the events
/// that `RUST_LOG` picks. Keep the returned guard until the process ends:
/// dropping it writes the lines still queued (see [`LogGuard`]).
///
/// A write to stderr blocks while stderr is a pipe whose reader is slow or
/// stuck, and a task that blocks holds up every task on its runtime thread:
/// a peer that can make the server log could freeze it. So lines go to a
/// queue, and a thread of its own writes them out (`tracing_appender`'s
/// `non_blocking`, step 7's log thread as a crate). When the queue is full,
/// lines are dropped; a failed write is ignored.
pub fn init(format: LogFormat) -> anyhow::Result<LogGuard> {
    // Unset or empty: `info`. Directives that do not parse are an error.
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("RUST_LOG")?;
    let (stderr, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE)
        .lossy(true)
        .finish(io::stderr());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr)
        .with_ansi(io::stderr().is_terminal());
    match format {
        LogFormat::Text => log.try_init(),
        LogFormat::Json => log.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!(e))?;
    log_panics();
    Ok(LogGuard(Some(guard)))
}

/// Writes out the lines still queued when dropped, waiting at most
/// [`FLUSH_LIMIT`]. `WorkerGuard`'s own drop can block for good: when the
/// queue is full it reports so with `println!`, which waits on a stdout
/// nobody reads (`server 2>&1 | stuck`), or panics on one whose reader has
/// gone. So it is dropped on a thread of its own, and not waited for long.
pub struct LogGuard(Option<WorkerGuard>);

/// The longest a process waits, on its way out, for its last log lines.
const FLUSH_LIMIT: Duration = Duration::from_millis(1500);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else { return };
        let (done, flushed) = mpsc::channel();
        let flush = move || {
            drop(guard);
            let _ = done.send(());
        };
        if thread::Builder::new()
            .name("log-flush".into())
            .spawn(flush)
            .is_ok()
        {
            let _ = flushed.recv_timeout(FLUSH_LIMIT);
        }
    }
}

/// Sends panics to the log, one event each, instead of the standard hook's
/// direct write to stderr, which would block as [`init`] explains; nor does
/// it print a backtrace per panic, which a peer calling a panicking method
/// could make the server write by the megabyte. A panic in a call is logged
/// inside the call's span, so its line says which request it was. Its text
/// is escaped, and cut to [`MAX_PANIC`] bytes: a panic's message may quote
/// a peer's data.
fn log_panics() {
    panic::set_hook(Box::new(|info| {
        // Escaped: no newline or control byte of it reaches the log raw.
        let mut text = info.to_string().escape_debug().to_string();
        let mut end = text.len().min(MAX_PANIC);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        tracing::error!(panic = %text, "panicked");
    }));
}

/// The most of a panic's text written to the log.
const MAX_PANIC: usize = 1024;
