//! `cargo xtask exercises`: every exercise is real.
//!
//! An exercise is a patch `stepNN-*/exercises/NAME.patch` (the reference
//! solution) and an `#[ignore]`d test `fn NAME` in `exercises/tests.rs`.
//! For each one this proves, as rustlings' `dev check` does for its own:
//!
//! 1. on the step as shipped the test compiles and *fails*;
//! 2. on a copy of the repo with the patch applied, the test passes, the
//!    step's other tests still pass, and the step is fmt- and clippy-clean.
//!
//! The repo itself is never modified: solutions are applied to a copy under
//! `target/xtask/exercises/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::steps::{self, Step};

/// `cargo xtask exercises [--step N]`.
pub fn exercises(root: &Path, only: Option<u32>) -> Result<()> {
    let work = steps::target_dir(root).join("xtask/exercises");
    let mut problems = Vec::new();
    let mut count = 0;
    for step in steps::select(root, only)? {
        for (name, patch) in patches(&step)? {
            count += 1;
            eprintln!("exercise {}/{name}", step.name);
            if let Err(e) = check_one(root, &work, &step, &name, &patch) {
                problems.push(format!("{}/{name}: {e:#}", step.name));
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} exercise(s) broken:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    eprintln!("exercises: all {count} fail unsolved and pass solved");
    Ok(())
}

/// The step's solution patches, by exercise name, in order.
fn patches(step: &Step) -> Result<Vec<(String, PathBuf)>> {
    let dir = step.dir.join("exercises");
    let mut found = Vec::new();
    if dir.is_dir() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "patch") {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                found.push((name, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

// ANCHOR: check_one
fn check_one(root: &Path, work: &Path, step: &Step, name: &str, patch: &Path) -> Result<()> {
    let patch_text = fs::read_to_string(patch)?;
    // The solution may change any test that its new behaviour breaks, but
    // not the exercise test or the helpers it relies on.
    if patch_text.contains("/exercises/tests.rs") || patch_text.contains("/tests/common/") {
        bail!("the solution edits the exercise test or its helpers");
    }

    // 1. Unsolved: the test must compile and fail.
    let unsolved = exercise_test(step, name).current_dir(root).output()?;
    match verdict(
        &String::from_utf8_lossy(&unsolved.stdout),
        unsolved.status.success(),
    ) {
        Verdict::Failed => {}
        Verdict::Passed => bail!("its test passes without the solution"),
        Verdict::DidNotRun => bail!(
            "its test did not run on the step as shipped (does `fn {name}` exist, \
             and does exercises/tests.rs compile?)\n{}",
            String::from_utf8_lossy(&unsolved.stderr)
        ),
    }

    // 2. Solved: a copy of the repo with the patch applied. The copy's build
    // output is kept between runs, so only the step itself recompiles.
    let tree = work.join("tree");
    let _ = fs::remove_dir_all(&tree);
    copy_tree(root, &tree)?;
    steps::run(
        Command::new("git")
            .current_dir(&tree)
            // The copy lives inside this repo's target/; without a ceiling,
            // git would find this repo and apply nothing outside the copy.
            .env("GIT_CEILING_DIRECTORIES", work)
            .args(["apply", "--whitespace=nowarn"])
            .arg(patch),
    )
    .context("the solution patch does not apply")?;
    let target = work.join("target");
    let in_tree = |mut command: Command| {
        command.current_dir(&tree).env("CARGO_TARGET_DIR", &target);
        command
    };
    let solved = in_tree(exercise_test(step, name)).output()?;
    if verdict(
        &String::from_utf8_lossy(&solved.stdout),
        solved.status.success(),
    ) != Verdict::Passed
    {
        bail!(
            "its test fails with the solution applied:\n{}{}",
            String::from_utf8_lossy(&solved.stdout),
            String::from_utf8_lossy(&solved.stderr)
        );
    }
    let mut others = steps::cargo();
    others.args(["test", "--quiet", "-p", &step.name]);
    steps::run(&mut in_tree(others)).context("the solution breaks the step's own tests")?;
    let mut fmt = steps::cargo();
    fmt.args(["fmt", "-p", &step.name, "--", "--check"]);
    steps::run(&mut in_tree(fmt)).context("the solved step is not rustfmt-clean")?;
    let mut clippy = steps::cargo();
    clippy.args(["clippy", "--quiet", "-p", &step.name, "--all-targets", "--"]);
    clippy.args(["-D", "warnings"]);
    steps::run(&mut in_tree(clippy)).context("the solved step is not clippy-clean")?;
    Ok(())
}
// ANCHOR_END: check_one

/// `cargo test -p STEP --test exercises -- --ignored --exact NAME`: exactly
/// what a learner runs for one exercise.
fn exercise_test(step: &Step, name: &str) -> Command {
    let mut command = steps::cargo();
    command.args(["test", "-p", &step.name, "--test", "exercises", "--"]);
    command.args(["--ignored", "--exact", name]);
    command
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Passed,
    Failed,
    /// It did not compile, or no test of that name ran.
    DidNotRun,
}

/// Reads libtest's summary: exactly one test must have run.
fn verdict(stdout: &str, success: bool) -> Verdict {
    let ran_one = |outcome: &str| {
        stdout
            .lines()
            .any(|line| line.starts_with("test result:") && line.contains(outcome))
    };
    if success && ran_one(" 1 passed; 0 failed") {
        Verdict::Passed
    } else if !success && ran_one(" 0 passed; 1 failed") {
        Verdict::Failed
    } else {
        Verdict::DidNotRun
    }
}

/// Copies the workspace sources: not build output, git data or the book.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    copy_dir(from, to, &["target", ".git", "book"])
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.contains(&&*name.to_string_lossy()) {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_dir(&source, &dest, &["target"])?;
        } else {
            fs::copy(&source, &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_test_run_counts_as_a_verdict() {
        let passed =
            "running 1 test\ntest x ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored";
        let failed = "test result: FAILED. 0 passed; 1 failed; 0 ignored";
        let none = "test result: ok. 0 passed; 0 failed; 0 ignored";
        assert_eq!(verdict(passed, true), Verdict::Passed);
        assert_eq!(verdict(failed, false), Verdict::Failed);
        // A misspelt name runs nothing, and that must not count as passing.
        assert_eq!(verdict(none, true), Verdict::DidNotRun);
        // A compile error prints no summary at all.
        assert_eq!(verdict("", false), Verdict::DidNotRun);
    }
}
