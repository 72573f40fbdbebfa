//! `cargo xtask`: the tooling that keeps the steps, the book, the diffs and
//! the exercises in lockstep.
//!
//! Everything here works on "every `stepNN-*` directory at the repo root",
//! so adding a step never means editing this crate.
//!
//! - `tour`: run every step's server and client as real processes.
//! - `diff A B`: print the diff between two steps, as the book shows it.
//! - `diffs`: write each step's diff against its predecessor into the book.
//! - `transcripts`: write each step's client transcript into the book.
//! - `exercises`: prove each exercise fails unsolved and passes solved.
//! - `book-check`: prove every `{{#include}}` in the book resolves.
//! - `check`: all of the checks above, without writing anything.
//! - `bench-report`: every step's load mode in one run, for the book.

mod bench;
mod book;
mod diffs;
mod exercises;
mod steps;
mod tour;

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
    /// Print what changed between two steps (e.g. `diff 03 04`), as the chapter explains it.
    Diff {
        /// The older step's number.
        from: u32,
        /// The newer step's number.
        to: u32,
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
    /// Prove every exercise's test fails on the step and passes with its solution.
    Exercises {
        /// Only this step (by number).
        #[arg(long)]
        step: Option<u32>,
    },
    /// Check that every `{{#include}}` in the book resolves to non-empty text.
    BookCheck,
    /// Every check: diffs, transcripts, includes, exercises.
    Check,
    /// Measure every step's load mode (release builds) into the book's
    /// performance appendix.
    BenchReport {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
}

fn main() -> Result<()> {
    let root = steps::repo_root()?;
    match Args::parse().command {
        Command::Tour { step } => tour::tour(&root, step),
        Command::Diff { from, to } => diffs::print(&root, from, to),
        Command::Diffs { check } => diffs::diffs(&root, check),
        Command::Transcripts { check } => tour::transcripts(&root, check),
        Command::Exercises { step } => exercises::exercises(&root, step),
        Command::BookCheck => book::book_check(&root),
        Command::BenchReport { secs } => bench::bench_report(&root, secs),
        Command::Check => {
            // Run them all and report every failure, not just the first.
            let checks: [(&str, &dyn Fn() -> Result<()>); 4] = [
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
