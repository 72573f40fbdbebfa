//! The steps' binaries as real processes, for the tests that run what the
//! README and the tour run. Every child is killed when the test is done
//! with it, even if the test panics first.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::STUCK;

/// A child process that is killed and reaped when dropped, so that a
/// failing test leaves no server running behind it (and no zombie).
/// Derefs to the [`Child`], e.g. for `try_wait` or its pipes.
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Fails only if the child has exited already, which is fine.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The path of a binary of this workspace, e.g. `step01-server`.
///
/// Tests find it from their own path rather than `CARGO_BIN_EXE_*`, so
/// that a test file copied to the next step need not name its binaries:
/// integration tests run from `target/<profile>/deps/`, and `cargo test`
/// builds the package's binaries beside that, in `target/<profile>/`.
///
/// # Panics
///
/// If there is no such binary, with a message saying to run the tests
/// through `cargo test`, which builds it.
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} does not exist: run the tests through `cargo test`, which builds it",
        path.display()
    );
    path
}

/// Starts a server binary on a free port (`--addr 127.0.0.1:0`, then
/// `args`), and returns it with the address it printed, `listening on
/// ADDR`, as every step's server does first. Its stderr goes where the
/// test's goes.
///
/// # Panics
///
/// If it cannot be started, or ends or takes [`STUCK`] without printing
/// that line.
pub fn start_server(bin: &Path, args: &[&str]) -> (KillOnDrop, SocketAddr) {
    start_server_with(bin, args, Stdio::inherit())
}

/// Like [`start_server`], with the server's stderr set to `stderr`: a pipe
/// the test reads (what the server logs), or one the test closes (to prove
/// that a failing log write cannot take the server down).
pub fn start_server_with(bin: &Path, args: &[&str], stderr: Stdio) -> (KillOnDrop, SocketAddr) {
    start_server_in(bin, args, &[], stderr)
}

/// Like [`start_server_with`], with `env` added to the server's
/// environment: `RUST_LOG`, say.
pub fn start_server_in(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stderr: Stdio,
) -> (KillOnDrop, SocketAddr) {
    let mut child = KillOnDrop(
        Command::new(bin)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display())),
    );
    let stdout = child.stdout.take().expect("the server's stdout is piped");
    let (found, address) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = found.send(listening_address(&mut lines));
        // Keep reading to the end: a server whose stdout is closed fails
        // (`println!` panics) at its next line. What it prints shows with
        // the output of a failing test.
        for line in lines.map_while(Result::ok) {
            println!("server: {line}");
        }
    });
    let addr = match address.recv_timeout(STUCK) {
        Ok(Ok(addr)) => addr,
        Ok(Err(why)) => {
            let status = child.try_wait();
            panic!("{} {why} (exit status: {status:?})", bin.display())
        }
        Err(_) => panic!(
            "{} printed no `listening on ADDR` within {STUCK:?}",
            bin.display()
        ),
    };
    (child, addr)
}

/// Starts the server binary `bin` with its stdout closed, as `server |
/// head -0` would have it, and returns once it listens. Where nobody
/// reads, the server cannot say which port it chose: the port is found
/// the way `ss -ltp` finds it, among the process's sockets in `/proc`.
///
/// # Panics
///
/// If the server exits, or listens on no port within [`STUCK`].
pub fn start_server_stdout_gone(bin: &Path) -> (KillOnDrop, SocketAddr) {
    // A pipe whose reading end is closed before the server starts: its
    // first line already fails.
    let (reading, writing) = io::pipe().expect("cannot make a pipe");
    drop(reading);
    let mut child = KillOnDrop(
        Command::new(bin)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(writing)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display())),
    );
    let start = Instant::now();
    loop {
        if let Some(port) = listening_port(child.id()) {
            return (child, SocketAddr::from(([127, 0, 0, 1], port)));
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited with its stdout closed: {status}", bin.display());
        }
        assert!(
            start.elapsed() < STUCK,
            "{} listens on no port",
            bin.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The port process `pid` listens on, if it does yet: a socket of its
/// (`/proc/PID/fd/N` links to `socket:[INODE]`) that `/proc/net/tcp`
/// lists in state `0A`, listening.
fn listening_port(pid: u32) -> Option<u16> {
    let mut sockets = Vec::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let link = fs::read_link(fd.path()).unwrap_or_default();
        let link = link.to_string_lossy();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|l| l.strip_suffix(']'))
        {
            sockets.push(inode.to_string());
        }
    }
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        if *state != "0A" || !sockets.iter().any(|s| s == inode) {
            return None;
        }
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    })
}

/// Reads `lines` up to the first `listening on ADDR` and returns ADDR;
/// otherwise says what was printed instead.
fn listening_address(
    lines: &mut impl Iterator<Item = io::Result<String>>,
) -> Result<SocketAddr, String> {
    let mut before = Vec::new();
    for line in lines {
        let line = line.map_err(|e| format!("stdout could not be read: {e}"))?;
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            return addr
                .parse()
                .map_err(|e| format!("printed {line:?}, whose address does not parse: {e}"));
        }
        before.push(line);
    }
    Err(format!(
        "ended its output without `listening on ADDR`; it printed {before:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let out = "building...\nlistening on 127.0.0.1:4321\nlater\n";
        let addr = listening_address(&mut Cursor::new(out).lines());
        assert_eq!(addr, Ok("127.0.0.1:4321".parse().unwrap()));

        let none = listening_address(&mut Cursor::new("oops\n").lines()).unwrap_err();
        assert!(none.contains("without `listening on ADDR`"), "{none}");
        assert!(none.contains("oops"), "{none}");
        let bad = listening_address(&mut Cursor::new("listening on port 9\n").lines());
        assert!(bad.unwrap_err().contains("does not parse"));
    }

    #[test]
    #[should_panic(expected = "run the tests through `cargo test`")]
    fn a_missing_binary_says_how_to_build_it() {
        cargo_bin("no-such-binary");
    }

    #[cfg(unix)]
    #[test]
    fn kill_on_drop_kills_and_reaps_the_child() {
        use std::io::Read;
        let mut child = KillOnDrop(
            Command::new("sleep")
                .arg("600")
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting `sleep`"),
        );
        let pid = child.id();
        let mut stdout = child.stdout.take().unwrap();
        // The pipe ends only when the child is gone.
        let (ended, end) = mpsc::channel();
        thread::spawn(move || ended.send(stdout.read_to_end(&mut Vec::new())));
        drop(child);
        let read = end.recv_timeout(STUCK).expect("the child still runs");
        assert_eq!(read.unwrap(), 0);
        #[cfg(target_os = "linux")]
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} was not reaped"
        );
        let _ = pid;
    }
}
