//! The steps' binaries as real processes, killed when the test is done
//! with them, even if it panics first.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::STUCK;

/// A child process that is killed and reaped when dropped.
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
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The path of a binary of this workspace, e.g. `step01-server`.
///
/// Integration tests run from `target/<profile>/deps/`; `cargo test` builds
/// the package's binaries beside that, in `target/<profile>/`.
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

/// Starts a server binary on a free port (`--addr 127.0.0.1:0` and then
/// `args`), and returns it with the address from its first line,
/// `listening on ADDR`. Its stderr goes where the test's goes.
pub fn start_server(bin: &Path, args: &[&str]) -> (KillOnDrop, SocketAddr) {
    start_server_with(bin, args, Stdio::inherit())
}

/// Like [`start_server`], with the server's stderr set to `stderr` (e.g. a
/// pipe the test closes, to prove logging cannot take the server down).
pub fn start_server_with(bin: &Path, args: &[&str], stderr: Stdio) -> (KillOnDrop, SocketAddr) {
    let mut child = KillOnDrop(
        Command::new(bin)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display())),
    );
    let stdout = child.stdout.take().unwrap();
    let (line, first) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stdout).read_line(&mut text);
        let _ = line.send(text);
    });
    let text = first
        .recv_timeout(STUCK)
        .expect("the server printed no first line");
    let addr = text
        .trim()
        .strip_prefix("listening on ")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("not `listening on ADDR`: {text:?}"));
    (child, addr)
}
