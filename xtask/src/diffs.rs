//! Each step's diff against its predecessor, generated into the book.
//!
//! This is the diff a learner gets from `cargo xtask diff 01 02`: the two
//! step directories compared file by file, less `exercises/` (each step's
//! own exercises and solution patches; the chapter's exercise section covers
//! them) and build output, and with the old step's name read as the new
//! one's, so that a line differing only by the step's name is not shown.

use std::collections::BTreeSet;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use similar::TextDiff;

use crate::steps::{self, Step};

/// Directories inside a step that are left out of its diff.
const SKIPPED_DIRS: &[&str] = &["target", "exercises"];

/// `cargo xtask diffs [--check]`.
pub fn diffs(root: &Path, check: bool) -> Result<()> {
    let steps = steps::all(root)?;
    for pair in steps.windows(2) {
        let diff = render(&pair[0], &pair[1])?;
        let path = root.join(format!("book/src/diffs/{}.diff", pair[1].name));
        steps::write_or_check(&path, &diff, check)?;
    }
    Ok(())
}

// ANCHOR: render
/// The unified diff from `old` to `new`, file by file, preceded by a summary
/// of what changed where.
pub fn render(old: &Step, new: &Step) -> Result<String> {
    let mut files = BTreeSet::new();
    files.extend(files_under(&old.dir)?);
    files.extend(files_under(&new.dir)?);

    let mut summary = Vec::new();
    let mut body = String::new();
    let (mut total_added, mut total_removed) = (0, 0);
    for file in &files {
        let before = read(&old.dir.join(file))?.map(|text| renamed(&text, old, new));
        let after = read(&new.dir.join(file))?;
        if before == after {
            continue;
        }
        let name = file.to_string_lossy().replace('\\', "/");
        let from = match before {
            Some(_) => format!("a/{}/{name}", old.name),
            None => "/dev/null".to_string(),
        };
        let to = match after {
            Some(_) => format!("b/{}/{name}", new.name),
            None => "/dev/null".to_string(),
        };
        let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
        let diff = TextDiff::from_lines(&before, &after);
        let (mut added, mut removed) = (0, 0);
        for change in diff.iter_all_changes() {
            match change.tag() {
                similar::ChangeTag::Insert => added += 1,
                similar::ChangeTag::Delete => removed += 1,
                similar::ChangeTag::Equal => {}
            }
        }
        summary.push(format!("#   {name:<32} +{added} -{removed}"));
        total_added += added;
        total_removed += removed;
        body.push_str(&diff.unified_diff().header(&from, &to).to_string());
    }

    let mut out = format!(
        "# {} -> {}: {} files changed, +{total_added} -{total_removed}\n\
         # ({} is read as {} throughout, so renames alone do not show)\n",
        old.name,
        new.name,
        summary.len(),
        old.name,
        new.name,
    );
    for line in summary {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}
// ANCHOR_END: render

/// `text` from the `old` step with its names replaced by the `new` step's:
/// the package (`step01-basic`), the crate (`step01_basic`) and the binary
/// prefix (`step01-server`, `step01-client`).
fn renamed(text: &str, old: &Step, new: &Step) -> String {
    let crate_name = |step: &Step| step.name.replace('-', "_");
    text.replace(&old.name, &new.name)
        .replace(&crate_name(old), &crate_name(new))
        .replace(&format!("{}-", old.short()), &format!("{}-", new.short()))
}

/// Prints the diff between two steps, coloured when stdout is a terminal.
pub fn print(root: &Path, from: u32, to: u32) -> Result<()> {
    let (old, new) = (
        steps::select(root, Some(from))?,
        steps::select(root, Some(to))?,
    );
    let diff = render(&old[0], &new[0])?;
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    print!("{}", if colour { coloured(&diff) } else { diff });
    Ok(())
}

/// `diff` with ANSI colours: file headers bold, hunk headers cyan, added
/// lines green, removed lines red.
fn coloured(diff: &str) -> String {
    let mut out = String::with_capacity(diff.len() * 2);
    for line in diff.lines() {
        let colour = if line.starts_with("+++") || line.starts_with("---") {
            "1"
        } else if line.starts_with("@@") {
            "36"
        } else if line.starts_with('+') {
            "32"
        } else if line.starts_with('-') {
            "31"
        } else {
            ""
        };
        if colour.is_empty() {
            out.push_str(line);
        } else {
            out.push_str(&format!("\x1b[{colour}m{line}\x1b[0m"));
        }
        out.push('\n');
    }
    out
}

/// A file's text, `None` if it does not exist. A file that is not UTF-8 is
/// an error rather than silently left out of the diff.
fn read(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot diff {}", path.display()))),
    }
}

/// Every file under `dir`, relative to it, skipping [`SKIPPED_DIRS`].
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                if !(relative.as_os_str().is_empty()
                    && SKIPPED_DIRS.contains(&&*entry.file_name().to_string_lossy()))
                {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_shows_every_changed_file_and_nothing_else() {
        let root = std::env::temp_dir().join(format!("xtask-diff-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let step = |number: u32, name: &str, files: &[(&str, &str)]| {
            let dir = root.join(name);
            for (file, text) in files {
                fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
                fs::write(dir.join(file), text).unwrap();
            }
            Step {
                number,
                name: name.to_string(),
                dir,
            }
        };
        let old = step(
            1,
            "step01-a",
            &[
                ("src/same.rs", "same\n"),
                ("src/lib.rs", "one\ntwo\n"),
                (
                    "src/named.rs",
                    "use step01_a;\n// step01-a, step01-server\n",
                ),
                ("exercises/x.patch", "old"),
                ("target/junk", "old"),
            ],
        );
        let new = step(
            2,
            "step02-b",
            &[
                ("src/same.rs", "same\n"),
                ("src/lib.rs", "one\n2\n"),
                (
                    "src/named.rs",
                    "use step02_b;\n// step02-b, step02-server\n",
                ),
                ("src/new.rs", "new\n"),
                ("exercises/x.patch", "new"),
                ("target/junk", "new"),
            ],
        );
        let diff = render(&old, &new).unwrap();
        assert!(diff.starts_with("# step01-a -> step02-b: 2 files changed, +2 -1\n"));
        assert!(diff.contains("--- a/step01-a/src/lib.rs\n+++ b/step02-b/src/lib.rs\n"));
        assert!(diff.contains("-two\n+2\n"));
        assert_eq!(coloured("+a\n").trim_end(), "\x1b[32m+a\x1b[0m");
        assert!(diff.contains("--- /dev/null\n+++ b/step02-b/src/new.rs\n"));
        for absent in ["same.rs", "named.rs", "x.patch", "junk"] {
            assert!(!diff.contains(absent), "{absent} in\n{diff}");
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
