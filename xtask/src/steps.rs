//! Finding the steps, reading one step's text as the next one's, and
//! writing generated files (or checking them fresh).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// One step crate: `step07-heartbeat` is number 7, short name `step07`.
#[derive(Debug, Clone)]
pub struct Step {
    /// The step's place in the sequence, from the directory name.
    pub number: u32,
    /// The directory and package name, e.g. `step01-basic`.
    pub name: String,
    /// Where the step lives: `<repo root>/<name>`.
    pub dir: PathBuf,
}

impl Step {
    /// `step01`: the prefix of the binary names.
    pub fn short(&self) -> String {
        format!("step{:02}", self.number)
    }

    /// `step01_basic`: the name the crate goes by in Rust paths.
    pub fn crate_name(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// `text` from the `old` step with its names replaced by the `new` step's:
/// the package (`step01-basic`), the crate (`step01_basic`) and the binary
/// prefix (`step01-server`, `step01-client`), and the log target a
/// `RUST_LOG` example names (`step01=debug`). A new step is made with this
/// (`cargo xtask new-step`) and its diff is read through it, so a line that
/// differs only by the step's name is never a change. Other crates' names
/// (`testkit`) are left alone.
pub fn renamed(text: &str, old: &Step, new: &Step) -> String {
    text.replace(&old.name, &new.name)
        .replace(&old.crate_name(), &new.crate_name())
        .replace(&format!("{}-", old.short()), &format!("{}-", new.short()))
        .replace(&format!("{}=", old.short()), &format!("{}=", new.short()))
}

/// The workspace root: the parent of this crate's directory.
pub fn repo_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask has no parent")?
        .to_path_buf())
}

/// Every `stepNN-*` directory under `root`, in order.
pub fn all(root: &Path) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for entry in fs::read_dir(root)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("step") else {
            continue;
        };
        let Some(number) = rest.get(..2).and_then(|n| n.parse().ok()) else {
            continue;
        };
        if rest.as_bytes().get(2) == Some(&b'-') {
            steps.push(Step {
                number,
                dir: root.join(&name),
                name,
            });
        }
    }
    steps.sort_by_key(|step| step.number);
    Ok(steps)
}

/// The steps selected by an optional `--step N`.
pub fn select(root: &Path, only: Option<u32>) -> Result<Vec<Step>> {
    let steps = all(root)?;
    match only {
        None => Ok(steps),
        Some(n) => match steps.into_iter().find(|s| s.number == n) {
            Some(step) => Ok(vec![step]),
            None => bail!("there is no step {n}"),
        },
    }
}

/// Fails while a step's `description` still says TODO: `cargo xtask
/// new-step` writes one for the author to replace, and a stub must not land.
pub fn check_descriptions(root: &Path) -> Result<()> {
    let mut unfinished = Vec::new();
    for step in all(root)? {
        let manifest = fs::read_to_string(step.dir.join("Cargo.toml"))?;
        let description = manifest
            .lines()
            .find(|line| line.trim_start().starts_with("description"));
        if description.is_none_or(|line| line.contains("TODO")) {
            unfinished.push(step.name);
        }
    }
    if !unfinished.is_empty() {
        bail!(
            "describe these steps in their Cargo.toml `description`: {}",
            unfinished.join(", ")
        );
    }
    Ok(())
}

/// Every file under `dir`, relative to it, sorted, leaving out the
/// top-level directories named in `skip` (e.g. `target`).
pub fn files_under(dir: &Path, skip: &[&str]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if !entry.file_type()?.is_dir() {
                files.push(path);
            } else if !(relative.as_os_str().is_empty()
                && skip.contains(&&*entry.file_name().to_string_lossy()))
            {
                pending.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Copies `from` to `to`, leaving out the top-level entries named in `skip`
/// and every `target/` (build output) below them.
pub fn copy_dir(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
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
            fs::copy(&source, &dest)
                .with_context(|| format!("cannot copy {}", source.display()))?;
        }
    }
    Ok(())
}

/// Writes a generated file, or with `check` fails if it differs from what
/// it should be. Returns whether it was (or would be) changed.
pub fn write_or_check(path: &Path, content: &str, check: bool) -> Result<bool> {
    let current = fs::read_to_string(path).ok();
    if current.as_deref() == Some(content) {
        return Ok(false);
    }
    if check {
        let why = if current.is_some() {
            "stale"
        } else {
            "missing"
        };
        bail!(
            "{} is {why}: run `cargo xtask` to regenerate it",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, content)?;
    eprintln!("wrote {}", path.display());
    Ok(true)
}

/// `cargo`, the same one that is running us.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a command to completion; fails with its name if it fails.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Where cargo puts build output for the workspace at `root`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// A fresh, empty directory under the system's temp dir for one unit test.
#[cfg(test)]
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(number: u32, name: &str) -> Step {
        let dir = PathBuf::from(name);
        let name = name.to_string();
        Step { number, name, dir }
    }

    #[test]
    fn renaming_reads_the_old_steps_names_as_the_new_ones() {
        let (old, new) = (step(3, "step03-retries"), step(4, "step04-errors"));
        let text = "pub use step03_retries as rpc; // step03-retries, step03-server, testkit\n";
        assert_eq!(
            renamed(text, &old, &new),
            "pub use step04_errors as rpc; // step04-errors, step04-server, testkit\n"
        );
    }

    #[test]
    fn a_todo_description_fails_the_check() {
        let root = temp_dir("descriptions");
        let manifest = |name: &str, description: &str| {
            fs::create_dir_all(root.join(name)).unwrap();
            let text = format!("[package]\nname = \"{name}\"\ndescription = \"{description}\"\n");
            fs::write(root.join(name).join("Cargo.toml"), text).unwrap();
        };
        manifest("step01-a", "Step 1: done");
        check_descriptions(&root).unwrap();
        manifest("step02-b", "Step 2: TODO describe");
        let err = check_descriptions(&root).unwrap_err().to_string();
        assert!(err.ends_with(": step02-b"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn copies_and_listings_leave_out_build_output() {
        let root = temp_dir("copy");
        for file in [
            "a/Cargo.toml",
            "a/src/lib.rs",
            "a/target/junk",
            "a/x/target/junk",
        ] {
            fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            fs::write(root.join(file), file).unwrap();
        }
        copy_dir(&root.join("a"), &root.join("b"), &["target"]).unwrap();
        let copied = files_under(&root.join("b"), &[]).unwrap();
        assert_eq!(copied, [PathBuf::from("Cargo.toml"), "src/lib.rs".into()]);
        let listed = files_under(&root.join("a"), &["target"]).unwrap();
        assert_eq!(listed.len(), 3, "only the top-level target/ is skipped");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_stale_or_missing_file_fails_the_check_and_a_fresh_one_passes() {
        let dir = temp_dir("write-or-check");
        let path = dir.join("generated.txt");
        assert!(write_or_check(&path, "new", true).is_err(), "missing");
        assert!(write_or_check(&path, "new", false).unwrap());
        assert!(!write_or_check(&path, "new", true).unwrap(), "fresh");
        let err = write_or_check(&path, "newer", true).unwrap_err();
        assert!(err.to_string().contains("stale"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
