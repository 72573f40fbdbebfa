//! `cargo xtask exercises`: every exercise is real.
//!
//! An exercise is an `#[ignore]`d test `fn NAME` in a step's
//! `exercises/tests.rs`, its reference solution `exercises/NAME.patch`, and
//! at least one plausible wrong solution `exercises/NAME.wrong.patch` (or
//! `NAME.wrong-2.patch`, anything matching `NAME.wrong*.patch`). As
//! rustlings' `dev check` does for its own exercises, this proves:
//!
//! 1. unsolved: on the step as shipped, each test compiles and *fails*;
//! 2. solved: with its solution applied, the test passes;
//! 3. wrongly solved: there is a wrong solution, and with each one applied
//!    the test compiles and fails, so it catches that mistake;
//! 4. all solved: the step's solutions, applied together in name order
//!    with plain `git apply`, apply cleanly, and then all of its exercise
//!    tests and its own tests pass at once and the step is fmt- and
//!    clippy-clean, so that exercises can be solved in any order and
//!    solving one never breaks another.
//!
//! The step's own tests, rustfmt and clippy run once per step, in proof 4,
//! rather than once per solution: each run rebuilds every test binary of
//! the step, and that was most of the time this command took.
//!
//! The repo itself is never modified. (1) runs in it; the rest runs in one
//! copy of it per step, `target/xtask/exercises/tree`, where each patch is
//! applied, checked and reverted (`git apply -R`). The copy's build output
//! is kept between runs, so only the patched step recompiles.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::steps::{self, Step};

/// One exercise of a step: the name of its test and its patches.
#[derive(Debug, PartialEq)]
struct Exercise {
    /// The test's `fn` name, which is also the patches' file stem.
    name: String,
    /// The reference solution, `NAME.patch`.
    solution: PathBuf,
    /// The wrong solutions, `NAME.wrong*.patch`, each of which the test
    /// must catch.
    wrong: Vec<PathBuf>,
}

/// `cargo xtask exercises [--step N]`.
pub fn exercises(root: &Path, only: Option<u32>) -> Result<()> {
    let work = steps::target_dir(root).join("xtask/exercises");
    let mut problems = Vec::new();
    let mut count = 0;
    for step in steps::select(root, only)? {
        let found = patches(&step.dir.join("exercises"))
            .and_then(|exercises| {
                count += exercises.len();
                check_step(root, &work, &step, &exercises)
            })
            .unwrap_or_else(|e| vec![format!("{}: {e:#}", step.name)]);
        problems.extend(found);
    }
    if !problems.is_empty() {
        bail!(
            "{} exercise problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    eprintln!(
        "exercises: all {count} fail unsolved and wrongly solved, and pass solved, \
         alone and together"
    );
    Ok(())
}

/// The exercises whose patches are in `dir`, in name order. A wrong
/// solution whose exercise has no reference solution is an error: it is
/// most likely a misspelt name, and would otherwise never be checked.
fn patches(dir: &Path) -> Result<Vec<Exercise>> {
    let mut solutions = Vec::new();
    let mut wrong = Vec::new();
    if dir.is_dir() {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            let Some(stem) = file.strip_suffix(".patch") else {
                continue;
            };
            match stem.split_once('.') {
                None => solutions.push((stem.to_string(), path.clone())),
                Some((name, kind)) if kind.starts_with("wrong") => {
                    wrong.push((name.to_string(), path.clone()));
                }
                Some(_) => bail!("{}: not NAME.patch nor NAME.wrong*.patch", path.display()),
            }
        }
    }
    solutions.sort();
    wrong.sort();
    if let Some((_, orphan)) = wrong
        .iter()
        .find(|(name, _)| !solutions.iter().any(|(solved, _)| solved == name))
    {
        bail!("{} has no reference solution beside it", orphan.display());
    }
    Ok(solutions
        .into_iter()
        .map(|(name, solution)| Exercise {
            wrong: wrong
                .iter()
                .filter(|(of, _)| *of == name)
                .map(|(_, path)| path.clone())
                .collect(),
            name,
            solution,
        })
        .collect())
}

/// Every proof for one step's exercises; returns the problems found. Fails
/// outright only if the copy could not be made or restored.
fn check_step(
    root: &Path,
    work: &Path,
    step: &Step,
    exercises: &[Exercise],
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if exercises.is_empty() {
        return Ok(problems);
    }
    let mut report = |what: &str, outcome: Result<()>| {
        if let Err(e) = outcome {
            problems.push(format!("{}/{what}: {e:#}", step.name));
        }
    };

    // 1. Unsolved, in the repo itself.
    for exercise in exercises {
        eprintln!("exercise {}/{}: unsolved", step.name, exercise.name);
        report(&exercise.name, unsolved_fails(root, step, &exercise.name));
    }

    // 2-4 in one fresh copy of the repo, each patch reverted after its check.
    let tree = Tree::copy(root, work)?;
    for exercise in exercises {
        eprintln!("exercise {}/{}: solved", step.name, exercise.name);
        let outcome = tree.applied(&[&exercise.solution], || {
            solved_passes(&tree, step, &exercise.name)
        })?;
        report(&exercise.name, outcome);
        report(&exercise.name, has_wrong_solution(exercise));
        for wrong in &exercise.wrong {
            let shown = wrong.file_name().unwrap_or_default().to_string_lossy();
            eprintln!("exercise {}/{shown}: wrongly solved", step.name);
            let outcome = tree.applied(&[wrong], || wrong_fails(&tree, step, &exercise.name));
            report(&shown, outcome?);
        }
    }
    eprintln!("exercises of {}: all solved together", step.name);
    let all: Vec<&Path> = exercises.iter().map(|e| e.solution.as_path()).collect();
    let outcome = tree.applied(&all, || all_pass(&tree, step, exercises.len()))?;
    report("all solved together", outcome);
    Ok(problems)
}

/// Proof 1: on the step as shipped the test compiles and fails.
fn unsolved_fails(root: &Path, step: &Step, name: &str) -> Result<()> {
    let output = exercise_test(step, name).current_dir(root).output()?;
    test_fails(&output, "without the solution", name)
}

/// Proof 2: with the solution applied the test passes.
fn solved_passes(tree: &Tree, step: &Step, name: &str) -> Result<()> {
    let output = tree.run(exercise_test(step, name)).output()?;
    if verdict(
        &String::from_utf8_lossy(&output.stdout),
        output.status.success(),
    ) != Verdict::Passed
    {
        bail!(
            "its test fails with the solution applied:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Proof 3 needs a wrong solution: a test that fails unsolved and passes
/// solved may still pass a plausible mistake, and only trying one shows
/// that it does not.
fn has_wrong_solution(exercise: &Exercise) -> Result<()> {
    if exercise.wrong.is_empty() {
        bail!(
            "no wrong solution (exercises/{}.wrong.patch) shows that its test \
             catches a plausible mistake",
            exercise.name
        );
    }
    Ok(())
}

/// Proof 3: with a wrong solution applied the test compiles and fails. A
/// compile error would prove nothing about the test, only about the patch.
fn wrong_fails(tree: &Tree, step: &Step, name: &str) -> Result<()> {
    let output = tree.run(exercise_test(step, name)).output()?;
    test_fails(&output, "with this wrong solution", name)
}

/// Proofs 1 and 3: the exercise test `name` compiled, ran and failed.
fn test_fails(output: &std::process::Output, applied: &str, name: &str) -> Result<()> {
    match verdict(
        &String::from_utf8_lossy(&output.stdout),
        output.status.success(),
    ) {
        Verdict::Failed => Ok(()),
        Verdict::Passed => bail!("its test passes {applied}"),
        Verdict::DidNotRun => bail!(
            "its test did not compile or run {applied} (does `fn {name}` exist, and \
             does exercises/tests.rs build?)\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Proof 4: with every solution applied, the step's exercise tests (at
/// least one per solution) all pass in one run, so do its own tests, and
/// rustfmt and clippy are happy.
fn all_pass(tree: &Tree, step: &Step, solutions: usize) -> Result<()> {
    let mut command = steps::cargo();
    command.args([
        "test",
        "-p",
        &step.name,
        "--test",
        "exercises",
        "--",
        "--ignored",
    ]);
    let output = tree.run(command).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match summary(&stdout) {
        Some((passed, 0)) if output.status.success() && passed >= solutions => {}
        _ => bail!(
            "the exercise tests do not all pass with every solution applied:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
    let mut own_tests = steps::cargo();
    own_tests.args(["test", "--quiet", "-p", &step.name]);
    steps::run(&mut tree.run(own_tests))
        .context("the step's own tests fail with every solution applied")?;
    let mut fmt = steps::cargo();
    fmt.args(["fmt", "-p", &step.name, "--", "--check"]);
    steps::run(&mut tree.run(fmt)).context("the solved step is not rustfmt-clean")?;
    let mut clippy = steps::cargo();
    clippy.args(["clippy", "--quiet", "-p", &step.name, "--all-targets", "--"]);
    clippy.args(["-D", "warnings"]);
    steps::run(&mut tree.run(clippy)).context("the solved step is not clippy-clean")
}

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
    match (success, summary(stdout)) {
        (true, Some((1, 0))) => Verdict::Passed,
        (false, Some((0, 1))) => Verdict::Failed,
        _ => Verdict::DidNotRun,
    }
}

/// `(passed, failed)` from libtest's `test result: ok. 1 passed; 0 failed;
/// ...` line; `None` if there is none (a compile error prints no summary).
fn summary(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout.lines().find(|l| l.starts_with("test result:"))?;
    let count = |what: &str| -> Option<usize> {
        let (before, _) = line.split_once(what)?;
        before.rsplit(' ').next()?.parse().ok()
    };
    Some((count(" passed;")?, count(" failed;")?))
}

/// The solution may change any test that its new behaviour breaks, but not
/// the exercise test or the helpers it relies on: editing those could make
/// any test pass.
fn edits_the_test(patch_text: &str) -> bool {
    patch_text.contains("/exercises/tests.rs") || patch_text.contains("/tests/common/")
}

/// The copy of the repo that patches are applied to.
struct Tree {
    /// The copy's root: `target/xtask/exercises/tree`.
    dir: PathBuf,
    /// Its parent, under which git must not look for a repository.
    work: PathBuf,
}

impl Tree {
    /// A fresh copy of the workspace's sources at `work/tree`: not build
    /// output, git data or the book.
    fn copy(root: &Path, work: &Path) -> Result<Tree> {
        let dir = work.join("tree");
        let _ = fs::remove_dir_all(&dir);
        steps::copy_dir(root, &dir, &["target", ".git", "book"])
            .context("cannot copy the repo to apply solutions to")?;
        Ok(Tree {
            dir,
            work: work.to_path_buf(),
        })
    }

    /// `command` set to run in the copy, building into `work/target`, which
    /// outlives the copy so that only what a patch touches is rebuilt.
    fn run(&self, mut command: Command) -> Command {
        command
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", self.work.join("target"));
        command
    }

    /// Applies `patch` to the copy (or reverts it, with `reverse`).
    fn git_apply(&self, patch: &Path, reverse: bool) -> Result<()> {
        let mut git = Command::new("git");
        git.current_dir(&self.dir)
            // The copy lives inside this repo's target/; without a ceiling,
            // git would find this repo and apply nothing outside the copy.
            .env("GIT_CEILING_DIRECTORIES", &self.work)
            .args(["apply", "--whitespace=nowarn"]);
        if reverse {
            git.arg("-R");
        }
        steps::run(git.arg(patch))
    }

    /// Applies `patches` in order, runs `check`, then reverts what was
    /// applied, in reverse order, whatever `check` returned. The inner
    /// result is the exercise's (a patch that edits the test or does not
    /// apply is the exercise's problem too); the outer one fails only if
    /// the copy could not be restored, which would spoil every later check.
    fn applied(&self, patches: &[&Path], check: impl FnOnce() -> Result<()>) -> Result<Result<()>> {
        let mut done = Vec::new();
        let mut outcome = Ok(());
        for patch in patches {
            let shown = patch.file_name().unwrap_or_default().to_string_lossy();
            if edits_the_test(&fs::read_to_string(patch)?) {
                outcome = Err(anyhow::anyhow!(
                    "{shown} edits the exercise test or its helpers"
                ));
                break;
            }
            if let Err(e) = self.git_apply(patch, false) {
                outcome = Err(e.context(format!("{shown} does not apply")));
                break;
            }
            done.push(*patch);
        }
        if outcome.is_ok() {
            outcome = check();
        }
        for patch in done.iter().rev() {
            self.git_apply(patch, true).with_context(|| {
                format!("cannot revert {}: the copy is spoilt", patch.display())
            })?;
        }
        Ok(outcome)
    }
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
        assert_eq!(
            summary("test result: FAILED. 12 passed; 3 failed; 0 ignored; 0 measured"),
            Some((12, 3))
        );
    }

    #[test]
    fn wrong_solutions_are_not_solutions_and_belong_to_their_exercise() {
        let dir = steps::temp_dir("patches");
        for file in [
            "b.patch",
            "a.patch",
            "a.wrong.patch",
            "a.wrong-2.patch",
            "tests.rs",
            "README.md",
        ] {
            fs::write(dir.join(file), "").unwrap();
        }
        let exercises = patches(&dir).unwrap();
        let names: Vec<_> = exercises.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(exercises[0].solution, dir.join("a.patch"));
        assert_eq!(
            exercises[0].wrong,
            [dir.join("a.wrong-2.patch"), dir.join("a.wrong.patch")]
        );
        assert!(has_wrong_solution(&exercises[0]).is_ok());
        assert!(exercises[1].wrong.is_empty());
        let err = has_wrong_solution(&exercises[1]).unwrap_err().to_string();
        assert!(
            err.contains("no wrong solution (exercises/b.wrong.patch)"),
            "{err}"
        );

        fs::write(dir.join("c.wrong.patch"), "").unwrap();
        let err = patches(&dir).unwrap_err().to_string();
        assert!(
            err.contains("c.wrong.patch has no reference solution"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_patch_may_not_touch_the_exercise_test_or_its_helpers() {
        assert!(edits_the_test("--- a/step01-a/exercises/tests.rs\n"));
        assert!(edits_the_test("+++ b/step01-a/tests/common/mod.rs\n"));
        assert!(!edits_the_test("--- a/step01-a/tests/calls.rs\n"));
    }

    /// A patch of `file` in a copy rooted at `tree`, from `old` to `new`.
    fn patch(dir: &Path, name: &str, file: &str, old: &str, new: &str) -> PathBuf {
        let text = format!("--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-{old}\n+{new}\n");
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn patches_are_applied_in_order_and_always_reverted() {
        let work = steps::temp_dir("tree");
        let dir = work.join("tree");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("f.txt"), "one\n").unwrap();
        let tree = Tree { dir, work };
        let read = || fs::read_to_string(tree.dir.join("f.txt")).unwrap();
        let first = patch(&tree.work, "1.patch", "f.txt", "one", "two");
        let second = patch(&tree.work, "2.patch", "f.txt", "two", "three");

        // Both stack, the check sees both, and the file is restored.
        let seen = tree.applied(&[&first, &second], || {
            assert_eq!(read(), "three\n");
            Ok(())
        });
        assert!(seen.unwrap().is_ok());
        assert_eq!(read(), "one\n");

        // A failing check still reverts.
        let failed = tree.applied(&[&first], || bail!("nope")).unwrap();
        assert_eq!(failed.unwrap_err().to_string(), "nope");
        assert_eq!(read(), "one\n");

        // The second does not apply without the first: the first is reverted
        // and the check never runs.
        let outcome = tree
            .applied(&[&second], || panic!("the check must not run"))
            .unwrap();
        assert!(format!("{:#}", outcome.unwrap_err()).contains("2.patch does not apply"));
        let outcome = tree.applied(&[&second, &first], || Ok(())).unwrap();
        assert!(outcome.is_err());
        assert_eq!(read(), "one\n");
        fs::remove_dir_all(&tree.work).unwrap();
    }
}
