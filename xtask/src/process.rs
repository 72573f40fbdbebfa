//! Child processes for the tour and the bench report: a server that says
//! where it listens and is stopped however the caller leaves, and a client
//! run to the end within a time limit.
//!
//! Every wait here is bounded: a step that hangs must fail the tour, not
//! hang it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a server may take to print its address, and a client to finish
/// its demo, before the step is called broken. Demos take well under a
/// second; this only turns a hang into a failure.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A running server and the address it listens on. Dropping it kills the
/// server, so no error path can leave one behind.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// What the server printed after `listening on `, e.g. `127.0.0.1:40123`.
    pub addr: String,
    /// What the server writes to stderr (its log), read as it comes, so
    /// that a full pipe never blocks it; the text, once it has exited.
    log: Option<thread::JoinHandle<String>>,
}

impl Server {
    /// Spawns `command` and waits up to `timeout` for its first line of
    /// output, which must be `listening on ADDR`.
    pub fn start(command: &mut Command, timeout: Duration) -> Result<Server> {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        // Owned before the first `?` below, so a server that never says where
        // it listens is still killed.
        let mut server = Server {
            child,
            addr: String::new(),
            log: None,
        };
        let stderr = server.child.stderr.take().context("server stderr")?;
        server.log = Some(read_all(Box::new(stderr)));
        server.addr = listening_addr(&mut server.child, timeout)?;
        Ok(server)
    }

    /// Sends the server `signal` (`-STOP`, `-CONT`, `-TERM`) with `kill`,
    /// as a learner would. For `-STOP`, waits until every thread of the
    /// server has stopped: `kill` returns once the signal is sent, and a
    /// thread running on another core may still serve a request first.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.child.id();
        let kill = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        if !kill.success() {
            bail!("kill {signal} {pid} failed: {kill}");
        }
        let start = Instant::now();
        while signal == "-STOP" && !is_stopped(pid) {
            if start.elapsed() > TIMEOUT {
                bail!("the server did not stop within {TIMEOUT:?} of SIGSTOP");
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Sends the server SIGTERM, waits up to `timeout` for it to exit, and
    /// returns how it exited and what it logged.
    pub fn terminate(&mut self, timeout: Duration) -> Result<(ExitStatus, String)> {
        self.signal("-TERM")?;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if start.elapsed() > timeout {
                bail!("the server did not exit within {timeout:?} of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let log = self.log.take().map(|log| log.join().unwrap_or_default());
        Ok((status, log.unwrap_or_default()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in
/// `/proc/PID/task/TID/stat`, after the name's closing parenthesis).
fn is_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.filter_map(Result::ok).all(|thread| {
        let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with(['T', 't']))
    })
}

/// Reads the server's first line, `listening on ADDR`, and returns ADDR.
fn listening_addr(server: &mut Child, timeout: Duration) -> Result<String> {
    let stdout = server.stdout.take().context("server stdout")?;
    // A read cannot time out, so a thread reads and we wait on a channel.
    // If the server never prints, the thread ends when the server is killed.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(timeout)
        .context("the server did not say where it listens")?;
    match line.trim().strip_prefix("listening on ") {
        Some(addr) => Ok(addr.to_string()),
        None => bail!("the server's first line should be `listening on ADDR`, got {line:?}"),
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn read_all(mut pipe: Box<dyn Read + Send>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// How a process that ran to the end went.
#[derive(Debug)]
pub struct Finished {
    /// Whether it exited with status 0.
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to the end, capturing its output; kills it and fails if
/// it is still running after `timeout`.
pub fn finish_within(command: &mut Command, timeout: Duration) -> Result<Finished> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    // Both pipes are drained while we wait: a child that fills one pipe's
    // buffer would otherwise block forever and look like a hang.
    let stdout = read_all(Box::new(child.stdout.take().context("stdout")?));
    let stderr = read_all(Box::new(child.stderr.take().context("stderr")?));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{command:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let join = |handle: thread::JoinHandle<String>| handle.join().unwrap_or_default();
    Ok(Finished {
        success: status.success(),
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_server_says_where_it_listens_and_is_killed_when_dropped() {
        let server = Server::start(
            &mut sh("echo listening on 127.0.0.1:4000; exec sleep 60"),
            TIMEOUT,
        )
        .unwrap();
        assert_eq!(server.addr, "127.0.0.1:4000");
        let start = Instant::now();
        drop(server);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "killed, not awaited"
        );

        let err = Server::start(&mut sh("echo hello"), TIMEOUT).unwrap_err();
        assert!(err.to_string().contains("listening on ADDR"), "{err}");
        let silent = Server::start(&mut sh("exec sleep 60"), Duration::from_millis(100));
        assert!(silent.is_err());
    }

    #[test]
    fn a_finished_process_reports_its_output_and_a_hung_one_fails() {
        let done = finish_within(&mut sh("echo out; echo err >&2; exit 3"), TIMEOUT).unwrap();
        assert!(!done.success);
        assert_eq!(
            (done.stdout.as_str(), done.stderr.as_str()),
            ("out\n", "err\n")
        );

        let hung = finish_within(&mut sh("exec sleep 60"), Duration::from_millis(100));
        assert!(hung.unwrap_err().to_string().contains("did not finish"));
    }
}
