//! Each step's diff against its predecessor, generated into the book.
//!
//! This is the diff a learner gets from `cargo xtask diff 01 02`: the two
//! step directories compared file by file, less `exercises/` (each step's
//! own exercises and solution patches; the chapter's exercise section covers
//! them), build output and `ANCHOR` lines (which parts a chapter shows is
//! not part of the step), and with the old step's name read as the new
//! one's, so that a line differing only by the step's name is not shown.

use std::collections::BTreeSet;
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::Path;

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

/// The unified diff from `old` to `new`, file by file, preceded by a summary
/// of what changed where.
pub fn render(old: &Step, new: &Step) -> Result<String> {
    let mut files = BTreeSet::new();
    files.extend(steps::files_under(&old.dir, SKIPPED_DIRS)?);
    files.extend(steps::files_under(&new.dir, SKIPPED_DIRS)?);

    let mut summary = Vec::new();
    let mut body = String::new();
    let (mut total_added, mut total_removed) = (0, 0);
    for file in &files {
        let before = read(&old.dir.join(file))?
            .map(|text| without_anchors(&steps::renamed(&text, old, new)));
        let after = read(&new.dir.join(file))?.map(|text| without_anchors(&text));
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
         # ({} is read as {} throughout and anchor lines are left out)\n",
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

/// `cargo xtask diff A [B]`: prints the diff from step A to step B (from
/// step A-1 to step A if B is left out), coloured when stdout is a terminal
/// and `NO_COLOR` is unset.
pub fn print(root: &Path, first: u32, second: Option<u32>) -> Result<()> {
    let (from, to) = match second {
        Some(to) => (first, to),
        None => (first.saturating_sub(1), first),
    };
    // The newer step first, so that `diff 9` complains about step 9.
    let new = steps::select(root, Some(to))?;
    let old = steps::select(root, Some(from))?;
    let diff = render(&old[0], &new[0])?;
    let mut stdout = std::io::stdout();
    let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let text = if colour { coloured(&diff) } else { diff };
    match stdout.write_all(text.as_bytes()) {
        // `cargo xtask diff 03 04 | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
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

/// `text` less its anchor lines: which parts a chapter includes is not
/// part of what a step changes.
fn without_anchors(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|line| !crate::book::is_anchor_line(line))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_shows_every_changed_file_and_nothing_else() {
        let root = steps::temp_dir("diff");
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
                (
                    "src/same.rs",
                    "same\n// ANCHOR: shown\n// ANCHOR_END: shown\n",
                ),
                ("src/lib.rs", "use step01_a::x;\none\ntwo\n"),
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
                ("src/lib.rs", "use step02_b::x;\none\n2\n"),
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
        // The renamed `use` line is not a change: +1 -1 in lib.rs, +1 new.rs.
        assert!(diff.starts_with(
            "# step01-a -> step02-b: 2 files changed, +2 -1\n\
             # (step01-a is read as step02-b throughout and anchor lines are left out)\n"
        ));
        assert!(diff.contains("--- a/step01-a/src/lib.rs\n+++ b/step02-b/src/lib.rs\n"));
        assert!(diff.contains("-two\n+2\n"));
        assert!(diff.contains("--- /dev/null\n+++ b/step02-b/src/new.rs\n"));
        // named.rs differs only by the step's name, and same.rs only by its
        // anchor lines, so neither is in the diff.
        for absent in ["same.rs", "named.rs", "x.patch", "junk"] {
            assert!(!diff.contains(absent), "{absent} in\n{diff}");
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn each_kind_of_diff_line_gets_its_colour() {
        let diff = "# summary\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n same\n-old\n+new\n";
        assert_eq!(
            coloured(diff),
            "# summary\n\x1b[1m--- a/x\x1b[0m\n\x1b[1m+++ b/x\x1b[0m\n\
             \x1b[36m@@ -1 +1 @@\x1b[0m\n same\n\x1b[31m-old\x1b[0m\n\x1b[32m+new\x1b[0m\n"
        );
    }
}
