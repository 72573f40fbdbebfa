//! `cargo xtask`: the tooling that keeps the steps, the book, the diffs and
//! the exercises in lockstep.
//!
//! Everything here works on "every `stepNN-*` directory at the repo root",
//! so adding a step never means editing this crate.
//!
//! - `tour`: run every step's server and client as real processes.
//! - `new-step NN-name`: start the next step as a renamed copy of the last
//!   one, with empty exercises, a workspace member and a chapter stub.
//! - `diff A B` (or `diff B`, from the step before): print the diff between
//!   two steps as the book shows it, coloured on a terminal.
//! - `diffs`: write each step's diff against its predecessor into the book.
//! - `transcripts`: write each step's client transcript into the book.
//! - `exercises`: prove each exercise fails unsolved and wrongly solved,
//!   passes solved, and that a step's solutions pass together.
//! - `book-check`: prove every `{{#include}}` in the book resolves and every
//!   anchor in the steps and in xtask is included somewhere.
//! - `check`: all of the checks above, without writing anything, and that
//!   no step's description is still a TODO.
//! - `bench-report`: every step's load mode in one run, for the book; with
//!   `--peers DIR`, every step beside tarpc and raw TCP floors instead, in
//!   one run of the peers' harness `DIR/run.sh`.
//!
//! `process` holds the child-process helpers the tour and the bench report
//! share.

mod bench;
mod book;
mod diffs;
mod exercises;
mod new_step;
mod process;
mod steps;
mod tour;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "rpc-steps repo tooling")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, then run each step's client against its server and print the transcripts.
    Tour {
        /// Only this step (by number, e.g. `--step 1`).
        #[arg(long)]
        step: Option<u32>,
    },
    /// Start the next step (e.g. `new-step 05-async`) as a copy of the last one.
    NewStep {
        /// Its number and name, e.g. `05-async`.
        spec: String,
    },
    /// Print what changed between two steps (e.g. `diff 03 04`, or `diff 4`
    /// for the same), as the chapter explains it.
    Diff {
        /// The older step's number (the newer one's, if it is the only one).
        first: u32,
        /// The newer step's number.
        second: Option<u32>,
    },
    /// Write each step's diff against the previous step into book/src/diffs/.
    Diffs {
        /// Fail if a generated diff is missing or stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Write each step's client transcript into book/src/transcripts/.
    Transcripts {
        /// Fail if a transcript is missing or stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Prove every exercise's test fails on the step and with each wrong
    /// solution, and passes with its solution, alone and with its siblings'.
    Exercises {
        /// Only this step (by number).
        #[arg(long)]
        step: Option<u32>,
    },
    /// Check that every `{{#include}}` in the book resolves to non-empty text,
    /// and that every anchor in the steps and xtask is included somewhere.
    BookCheck,
    /// Every check: descriptions, diffs, includes and anchors, transcripts
    /// (which run every step's server and client), exercises.
    Check,
    /// Measure every step's load mode (release builds) into the book's
    /// performance appendix.
    BenchReport {
        /// Seconds per measurement (whole seconds with `--peers`).
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Instead, run the steps beside the peers through `<DIR>/run.sh`
        /// (e.g. `--peers ../shared/peers`) into book/src/generated/peers.md.
        #[arg(long, value_name = "DIR")]
        peers: Option<PathBuf>,
        /// With `--peers`: rounds, each running every case once.
        #[arg(long, default_value_t = 3, requires = "peers")]
        rounds: u32,
        /// With `--peers`: run only the cases whose name matches this regex.
        #[arg(long, default_value = "floor|tarpc|step", requires = "peers")]
        only: String,
    },
}

fn main() -> Result<()> {
    let root = steps::repo_root()?;
    match Args::parse().command {
        Command::Tour { step } => tour::tour(&root, step),
        Command::NewStep { spec } => new_step::new_step(&root, &spec),
        Command::Diff { first, second } => diffs::print(&root, first, second),
        Command::Diffs { check } => diffs::diffs(&root, check),
        Command::Transcripts { check } => tour::transcripts(&root, check),
        Command::Exercises { step } => exercises::exercises(&root, step),
        Command::BookCheck => book::book_check(&root),
        Command::BenchReport {
            secs, peers: None, ..
        } => bench::bench_report(&root, secs),
        Command::BenchReport {
            secs,
            peers: Some(peers),
            rounds,
            only,
        } => bench::peers_report(&root, &peers, secs, rounds, &only),
        Command::Check => {
            // Run them all and report every failure, not just the first.
            let checks: [(&str, &dyn Fn() -> Result<()>); 5] = [
                ("descriptions", &|| steps::check_descriptions(&root)),
                ("diffs", &|| diffs::diffs(&root, true)),
                ("book-check", &|| book::book_check(&root)),
                ("transcripts", &|| tour::transcripts(&root, true)),
                ("exercises", &|| exercises::exercises(&root, None)),
            ];
            let mut failed = Vec::new();
            for (name, check) in checks {
                eprintln!("xtask check: {name}");
                if let Err(e) = check() {
                    eprintln!("xtask check: {name} FAILED: {e:#}");
                    failed.push(name);
                }
            }
            if !failed.is_empty() {
                bail!("failed: {}", failed.join(", "));
            }
            eprintln!("xtask check: all passed");
            Ok(())
        }
    }
}
