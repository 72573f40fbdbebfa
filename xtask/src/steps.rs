//! Finding the steps, and writing generated files (or checking them fresh).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_or_missing_file_fails_the_check_and_a_fresh_one_passes() {
        let dir = std::env::temp_dir().join(format!("xtask-woc-{}", std::process::id()));
        let path = dir.join("generated.txt");
        let _ = fs::remove_dir_all(&dir);
        assert!(write_or_check(&path, "new", true).is_err(), "missing");
        assert!(write_or_check(&path, "new", false).unwrap());
        assert!(!write_or_check(&path, "new", true).unwrap(), "fresh");
        let err = write_or_check(&path, "newer", true).unwrap_err();
        assert!(err.to_string().contains("stale"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
