//! The tour: every step's server and client as real processes, the way a
//! learner runs them in two terminals, and the transcripts the book shows.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use regex::Regex;

use crate::process::{self, Server};
use crate::steps::{self, Step};

/// `cargo xtask tour [--step N]`.
pub fn tour(root: &Path, only: Option<u32>) -> Result<()> {
    let steps = steps::select(root, only)?;
    build(root, &steps)?;
    let mut failed = Vec::new();
    for step in &steps {
        println!("== {} ==", step.name);
        match run_step(root, step) {
            Ok(transcript) => print!("{transcript}"),
            Err(e) => {
                println!("FAILED: {e:#}");
                failed.push(step.name.clone());
            }
        }
        println!();
    }
    if !failed.is_empty() {
        bail!("the tour failed for {}", failed.join(", "));
    }
    println!("tour: {} step(s) ran cleanly", steps.len());
    Ok(())
}

/// `cargo xtask transcripts [--check]`: each step's demo output, normalised,
/// in `book/src/transcripts/<step>.txt` for the chapter to include.
pub fn transcripts(root: &Path, check: bool) -> Result<()> {
    let steps = steps::all(root)?;
    build(root, &steps)?;
    for step in steps {
        let transcript = normalise(&run_step(root, &step)?);
        let path = root.join(format!("book/src/transcripts/{}.txt", step.name));
        steps::write_or_check(&path, &transcript, check)?;
    }
    Ok(())
}

/// Builds the binaries of `steps` only, so that `tour --step 1` works even
/// while another step does not compile.
fn build(root: &Path, steps: &[Step]) -> Result<()> {
    let mut cargo = steps::cargo();
    cargo.current_dir(root).args(["build", "--quiet", "--bins"]);
    for step in steps {
        cargo.args(["-p", &step.name]);
    }
    steps::run(&mut cargo)
}

/// Starts the step's server on a free port, runs its client against it and
/// returns what the client printed, prefixed with the commands run.
fn run_step(root: &Path, step: &Step) -> Result<String> {
    with_server(
        root,
        step,
        "debug",
        |client_bin, addr, client_args, server| {
            let mut client = Command::new(client_bin);
            client.args(["--addr", addr]).args(client_args);
            let client = process::finish_within(&mut client, process::TIMEOUT)?;
            let (server_args, _) = tour_args(root, step)?;
            let mut transcript = format!(
                "$ {short}-server --addr 127.0.0.1:0{server}\nlistening on {addr}\n\
             $ {short}-client --addr {addr}{client}\n{stdout}",
                stdout = client.stdout,
                short = step.short(),
                server = shown(&server_args),
                client = shown(client_args),
            );
            if !client.success {
                transcript.push_str(&client.stderr);
                bail!("the client failed:\n{transcript}");
            }
            // Where the server's log of the demo goes, once it is known.
            let after_demo = transcript.len();
            if step.number >= PINGS_FROM {
                transcript.push_str(&freeze(
                    &step.short(),
                    client_bin,
                    addr,
                    client_args,
                    server,
                )?);
            }
            if step.number >= DRAINS_FROM {
                let short = step.short();
                let (drained, before) = drain(&short, client_bin, addr, client_args, server)?;
                transcript.push_str(&drained);
                if step.number >= LOGS_FROM {
                    let log = format!("# the server's log meanwhile (stderr):\n{before}");
                    transcript.insert_str(after_demo, &log);
                }
            }
            Ok(transcript)
        },
    )
}

/// The first step whose server stops gracefully on SIGTERM.
const DRAINS_FROM: u32 = 6;

/// The first step whose client pings a silent server.
const PINGS_FROM: u32 = 7;

/// The first step whose server logs through `tracing`, its calls' failures
/// among them: the tour shows what it logged during the demo.
const LOGS_FROM: u32 = 8;

/// Freezes the server (SIGSTOP) and makes a call with a short heartbeat,
/// which gives the server up; then thaws it, and returns the transcript.
fn freeze(
    short: &str,
    client_bin: &Path,
    addr: &str,
    client_args: &[String],
    server: &Server,
) -> Result<String> {
    let call = ["call", "add", r#"{"a":1,"b":2}"#];
    let heartbeat = ["--ping-interval", "0.5", "--ping-timeout", "0.5"];
    let mut client = Command::new(client_bin);
    client
        .args(["--addr", addr])
        .args(client_args)
        .args(call)
        .args(heartbeat);
    // The error's first line is the story; a backtrace would be noise.
    client.env("RUST_BACKTRACE", "0");
    server.signal("-STOP")?;
    let frozen = process::finish_within(&mut client, process::TIMEOUT);
    server.signal("-CONT")?;
    let frozen = frozen?;
    let error = frozen.stderr.lines().next().unwrap_or_default();
    let transcript = format!(
        "$ kill -STOP $SERVER_PID\n\
         $ {short}-client --addr {addr}{client} call add '{params}' {heartbeat}\n{error}\n\
         $ kill -CONT $SERVER_PID\n",
        client = shown(client_args),
        params = call[2],
        heartbeat = heartbeat.join(" "),
    );
    if frozen.success || !error.contains("ping") {
        bail!(
            "the client did not give the frozen server up:
{transcript}{}",
            frozen.stderr
        );
    }
    Ok(transcript)
}

/// Stops the server with SIGTERM while a slow call runs, and returns the
/// transcript (what the server logged as it drained, and the call's
/// answer) and what the server had logged before the signal.
fn drain(
    short: &str,
    client_bin: &Path,
    addr: &str,
    client_args: &[String],
    server: &mut Server,
) -> Result<(String, String)> {
    let call = ["call", "sleep", r#"{"ms":2000}"#];
    let mut client = Command::new(client_bin);
    client.args(["--addr", addr]).args(client_args).args(call);
    let slow = thread::spawn(move || process::finish_within(&mut client, process::TIMEOUT));
    // A call starts within milliseconds; a second is ample time for it to
    // be running when the signal comes, and leaves it a second to run.
    thread::sleep(Duration::from_secs(1));
    let (status, log) = server.terminate(process::TIMEOUT)?;
    let slow = slow
        .join()
        .map_err(|_| anyhow!("the client's thread panicked"))??;
    // The lines from the signal on: earlier ones belong to the demo.
    let signalled = |line: &&str| !line.contains("SIGTERM");
    let lines = |lines: &mut dyn Iterator<Item = &str>| -> String {
        lines.map(|line| format!("{line}\n")).collect()
    };
    let before = lines(&mut log.lines().take_while(signalled));
    let drained = lines(&mut log.lines().skip_while(signalled));
    let transcript = format!(
        "$ {short}-client --addr {addr}{client} call sleep '{params}' &\n\
         $ kill -TERM $SERVER_PID\n{drained}$ wait\n{stdout}",
        client = shown(client_args),
        params = call[2],
        stdout = slow.stdout,
    );
    if !status.success() || !slow.success || drained.is_empty() {
        bail!(
            "the server did not drain cleanly ({status}):\n{transcript}{}{log}",
            slow.stderr
        );
    }
    Ok((transcript, before))
}

/// Runs the step's server (from `target/<profile>/`, with its tour
/// arguments) on a free port while `body` gets the client binary, the
/// server's address, the client's tour arguments and the server; then
/// kills the server, whatever `body` returned, unless it has stopped.
pub fn with_server<T>(
    root: &Path,
    step: &Step,
    profile: &str,
    body: impl FnOnce(&Path, &str, &[String], &mut Server) -> Result<T>,
) -> Result<T> {
    let bin = steps::target_dir(root).join(profile);
    let server_bin = bin.join(format!("{}-server", step.short()));
    let client_bin = bin.join(format!("{}-client", step.short()));
    let (server_args, client_args) = tour_args(root, step)?;

    // Port 0: the OS picks a free port and the server prints it.
    let mut command = Command::new(&server_bin);
    command.args(["--addr", "127.0.0.1:0"]).args(&server_args);
    // Dropping `server` when this returns stops it, whatever `body` did.
    let mut server = Server::start(&mut command, process::TIMEOUT)?;
    let addr = server.addr.clone();
    body(&client_bin, &addr, &client_args, &mut server)
}

/// Extra arguments for a step's server and client in the tour, from its
/// `Cargo.toml`, for a step whose demo needs them (a shared token, say):
///
/// ```toml
/// [package.metadata.tour]
/// server-args = ["--token", "demo-token"]
/// client-args = ["--token", "demo-token"]
/// ```
pub(crate) fn tour_args(root: &Path, step: &Step) -> Result<(Vec<String>, Vec<String>)> {
    let output = steps::cargo()
        .current_dir(root)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == *step.name))
        .with_context(|| format!("cargo metadata does not list {}", step.name))?;
    let args = |key: &str| -> Result<Vec<String>> {
        match &package["metadata"]["tour"][key] {
            serde_json::Value::Null => Ok(Vec::new()),
            value => serde_json::from_value(value.clone())
                .with_context(|| format!("{}: metadata.tour.{key} must be strings", step.name)),
        }
    };
    Ok((args("server-args")?, args("client-args")?))
}

/// Arguments as they appear after a command in the transcript.
fn shown(args: &[String]) -> String {
    args.iter().map(|arg| format!(" {arg}")).collect()
}

/// Replaces what changes from run to run (ports, timings) with placeholders,
/// so a transcript in the book only changes when the program does.
pub fn normalise(transcript: &str) -> String {
    // Port 0 (ask the OS for one) stays; the port it chose does not.
    let port = Regex::new(r"127\.0\.0\.1:[1-9]\d*").unwrap();
    let duration = Regex::new(r"\b\d+(\.\d+)?\s?(ns|µs|us|ms|s)\b").unwrap();
    // A log line's timestamp, and its latency field.
    let timestamp = Regex::new(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap();
    let latency = Regex::new(r"\blatency_us=\d+").unwrap();
    let text = port.replace_all(transcript, "127.0.0.1:PORT");
    let text = timestamp.replace_all(&text, "<when>");
    let text = latency.replace_all(&text, "latency_us=<time>");
    let text = duration.replace_all(&text, "<time>");
    // A table's column of times was padded to each one's width.
    let padded = Regex::new(r" {2,}<time>").unwrap();
    padded.replace_all(&text, " <time>").into_owned()
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn ports_and_timings_are_normalised() {
        let raw = "--addr 127.0.0.1:0\nlistening on 127.0.0.1:40123\n1000 calls in 12.5ms (3 µs each), 2s total\n";
        assert_eq!(
            normalise(raw),
            "--addr 127.0.0.1:0\nlistening on 127.0.0.1:PORT\n1000 calls in <time> (<time> each), <time> total\n"
        );
        let log = "2026-12-06T00:19:23.411406Z  WARN call: failed latency_us=100750\n";
        assert_eq!(
            normalise(log),
            "<when>  WARN call: failed latency_us=<time>\n"
        );
        let row = "add       10007  OK 10007           28µs    1.5ms\n";
        assert_eq!(normalise(row), "add       10007  OK 10007 <time> <time>\n");
    }
}
