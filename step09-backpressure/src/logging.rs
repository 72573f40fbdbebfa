//! Where the log goes, and in what shape: both binaries call [`init`].
//!
//! The code logs through `tracing`: events (`warn!`, `debug!`, ...) inside
//! spans, such as a connection's (its peer) and a call's (its request id and
//! method), whose fields every event inside them carries. What is written,
//! and how, is chosen once, here: `RUST_LOG` picks the events
//! (`RUST_LOG=step08=debug`; `info` and above when unset), `--log-format`
//! the shape, text for people or JSON, one object a line, for programs.

use std::io::{self, IsTerminal};
use std::panic;

use anyhow::Context;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

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
/// dropping it writes the lines still queued (waiting a second at most).
///
/// A write to stderr blocks while stderr is a pipe whose reader is slow or
/// stuck, and a task that blocks holds up every task on its runtime thread:
/// a peer that can make the server log could freeze it. So lines go to a
/// queue, and a thread of its own writes them out (`tracing_appender`'s
/// `non_blocking`, step 7's log thread as a crate). When the queue is full,
/// lines are dropped; a failed write is ignored.
pub fn init(format: LogFormat) -> anyhow::Result<WorkerGuard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::try_new(directives).context("RUST_LOG")?,
        Err(_) => EnvFilter::new("info"),
    };
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
    Ok(guard)
}

/// Sends panics to the log, one event each, instead of the standard hook's
/// direct write to stderr, which would block as [`init`] explains; nor does
/// it print a backtrace per panic, which a peer calling a panicking method
/// could make the server write by the megabyte. A panic in a call is logged
/// inside the call's span, so its line says which request it was.
fn log_panics() {
    panic::set_hook(Box::new(|info| {
        tracing::error!("{}", info.to_string().replace('\n', " "));
    }));
}
