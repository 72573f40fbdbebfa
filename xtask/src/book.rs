//! `cargo xtask book-check`: every `{{#include}}` in the book resolves, and
//! every anchor in the code is included.
//!
//! mdBook does not fail on a broken include: a missing file leaves the
//! directive's text in the page, and a missing anchor includes nothing. So
//! this check does what mdBook will not: every included file must exist and
//! every named anchor must exist and hold at least one non-blank line.
//!
//! The other way round, an anchor (`// ANCHOR: name` ... `// ANCHOR_END:
//! name`) in a step or in xtask that no chapter includes is clutter in code
//! a learner reads, and one without its end is a mistake; both fail too.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use regex::Regex;

use crate::steps;

/// `cargo xtask book-check`.
pub fn book_check(root: &Path) -> Result<()> {
    let src = root.join("book/src");
    let mut problems = check_includes(&src)?;
    problems.extend(check_anchors(root, &src)?);
    if !problems.is_empty() {
        bail!(
            "{} problem(s) with the book's includes and the code's anchors:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// One `{{#include ...}}` or `{{#rustdoc_include ...}}` in a page.
struct Include {
    /// The page, relative to `book/src`, for messages.
    page: String,
    /// What follows the directive's name, e.g. `../../step01-basic/src/frame.rs:read_frame`.
    target: String,
    /// The file part of `target`, as written.
    file: String,
    /// The file, resolved against the page's directory.
    path: PathBuf,
    /// The anchor named, if any (not a line range such as `10:20`).
    anchor: Option<String>,
}

/// Every include in the pages under `src`.
fn includes(src: &Path) -> Result<Vec<Include>> {
    let directive = Regex::new(r"\{\{#(?:include|rustdoc_include)\s+([^}\s]+)\s*\}\}")?;
    let mut found = Vec::new();
    for page in markdown_files(src)? {
        let text = fs::read_to_string(&page)?;
        for capture in directive.captures_iter(&text) {
            let target = capture[1].to_string();
            // `path`, `path:anchor`, or `path:10:20` (a line range).
            let (file, selector) = match target.split_once(':') {
                Some((file, selector)) => (file, Some(selector)),
                None => (target.as_str(), None),
            };
            let anchor = selector.filter(|s| !s.starts_with(|c: char| c.is_ascii_digit()));
            found.push(Include {
                page: shown(&page, src),
                path: page.parent().unwrap_or(src).join(file),
                file: file.to_string(),
                anchor: anchor.map(str::to_string),
                target,
            });
        }
    }
    Ok(found)
}

/// Every problem with an include under `src`, as `file: what is wrong`.
pub fn check_includes(src: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for include in includes(src)? {
        let Include { page, file, .. } = &include;
        let Ok(included) = fs::read_to_string(&include.path) else {
            problems.push(format!("{page}: {file} does not exist"));
            continue;
        };
        let body = match &include.anchor {
            Some(anchor) => match anchor_body(&included, anchor) {
                Some(body) => body,
                None => {
                    problems.push(format!("{page}: {file} has no anchor `{anchor}`"));
                    continue;
                }
            },
            None => included,
        };
        if body.trim().is_empty() {
            problems.push(format!("{page}: {} is empty", include.target));
        }
    }
    Ok(problems)
}

/// Every anchor under the steps and `xtask/src` that has no `ANCHOR_END`,
/// or that no include under `src` names (a whole-file include names none).
pub fn check_anchors(root: &Path, src: &Path) -> Result<Vec<String>> {
    // Paths are compared canonicalised: `../../step01-basic/src/x.rs` from
    // a page and `<root>/step01-basic/src/x.rs` from the walk are one file.
    let included: HashSet<(PathBuf, String)> = includes(src)?
        .into_iter()
        .filter_map(|include| Some((fs::canonicalize(&include.path).ok()?, include.anchor?)))
        .collect();
    let mut dirs: Vec<PathBuf> = steps::all(root)?.into_iter().map(|s| s.dir).collect();
    dirs.push(root.join("xtask/src"));

    let mut problems = Vec::new();
    for dir in dirs {
        for file in steps::files_under(&dir, &["target"])? {
            let path = dir.join(&file);
            // A patch's context lines quote anchors that live in the step's
            // sources; no chapter includes from a patch.
            if path.extension().is_some_and(|ext| ext == "patch") {
                continue;
            }
            // Not UTF-8: not source, so no anchors.
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let canonical = fs::canonicalize(&path)?;
            let shown = shown(&path, root);
            let ends: HashSet<&str> = text
                .lines()
                .filter_map(|l| marker(l, "ANCHOR_END:"))
                .collect();
            for anchor in text.lines().filter_map(|l| marker(l, "ANCHOR:")) {
                if !ends.contains(anchor) {
                    problems.push(format!("{shown}: anchor `{anchor}` has no ANCHOR_END"));
                }
                if !included.contains(&(canonical.clone(), anchor.to_string())) {
                    problems.push(format!(
                        "{shown}: anchor `{anchor}` is included by no chapter"
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// `path` relative to `base`, with `/` separators, for messages.
fn shown(path: &Path, base: &Path) -> String {
    let relative = path.strip_prefix(base).unwrap_or(path);
    relative.to_string_lossy().replace('\\', "/")
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name`, if both exist.
fn anchor_body(text: &str, anchor: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|line| marker(line, "ANCHOR:") == Some(anchor))?;
    let mut body = String::new();
    for line in lines {
        if marker(line, "ANCHOR_END:") == Some(anchor) {
            return Some(body);
        }
        // Other anchors' markers are stripped by mdBook, so not content.
        if marker(line, "ANCHOR:").is_none() && marker(line, "ANCHOR_END:").is_none() {
            body.push_str(line);
            body.push('\n');
        }
    }
    None
}

/// The anchor name in a marker line: a comment (`//`, `#` or `<!--`) whose
/// text is `keyword` and a name, e.g. `// ANCHOR: name`. A line that only
/// mentions the keyword, like this doc comment, is not a marker.
/// True for an `ANCHOR:` or `ANCHOR_END:` line: book plumbing, which
/// mdBook leaves out of what it includes and the generated diffs leave out
/// too.
pub fn is_anchor_line(line: &str) -> bool {
    marker(line, "ANCHOR:").is_some() || marker(line, "ANCHOR_END:").is_some()
}

fn marker<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let line = line.trim_start();
    let comment = ["//", "#", "<!--"]
        .iter()
        .find_map(|leader| line.strip_prefix(leader))?;
    let rest = comment.trim_start().strip_prefix(keyword)?;
    let name = rest.trim().trim_end_matches("-->").trim();
    // A name is one word, as in mdBook; anything after it means the line is
    // something else, such as a string literal's continuation in a test.
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    (!name.is_empty() && name.chars().all(word)).then_some(name)
}

fn markdown_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(markdown_files(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_missing_and_empty_includes_are_all_reported() {
        let src = steps::temp_dir("book");
        fs::write(
            src.join("code.rs"),
            "// ANCHOR: good\nfn good() {}\n// ANCHOR_END: good\n\
             // ANCHOR: empty\n\n// ANCHOR_END: empty\n// ANCHOR: open\n",
        )
        .unwrap();
        let good = "{{#include code.rs:good}} {{#include code.rs}} {{#include code.rs:2:3}}";
        fs::write(src.join("good.md"), good).unwrap();
        assert!(check_includes(&src).unwrap().is_empty());

        let bad = "{{#include nope.rs}}\n{{#include code.rs:missing}}\n\
                   {{#include code.rs:empty}}\n{{#include code.rs:open}}\n";
        fs::write(src.join("bad.md"), bad).unwrap();
        let problems = check_includes(&src).unwrap();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("nope.rs does not exist"));
        assert!(problems[1].contains("no anchor `missing`"));
        assert!(problems[2].contains("code.rs:empty is empty"));
        assert!(problems[3].contains("no anchor `open`"));
        fs::remove_dir_all(&src).unwrap();
    }

    #[test]
    fn anchors_no_chapter_includes_and_unclosed_anchors_are_all_reported() {
        let root = steps::temp_dir("anchors");
        let write = |file: &str, text: &str| {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        let (start, end) = ("// ANCHOR: ", "// ANCHOR_END: ");
        write(
            "step01-a/src/lib.rs",
            &format!(
                "{start}used\nfn a() {{}}\n{end}used\n{start}deep\nfn b() {{}}\n{end}deep\n\
                 {start}unused\nfn c() {{}}\n{end}unused\n{start}open\nfn d() {{}}\n\
                 /// Mentions ANCHOR: prose, which is not a marker.\n"
            ),
        );
        write(
            "step01-a/Cargo.toml",
            "# ANCHOR: toml\nx = 1\n# ANCHOR_END: toml\n",
        );
        write("step01-a/target/x.rs", &format!("{start}built\n"));
        write("step01-a/exercises/x.patch", &format!(" {start}quoted\n"));
        // A string's continuation line that happens to start with `//`.
        write("step01-a/tests/t.rs", "let s = \"\\\n// ANCHOR: a\\nb\";\n");
        write(
            "xtask/src/main.rs",
            &format!("{start}tool\nfn main() {{}}\n{end}tool\n"),
        );
        write(
            "book/src/ch.md",
            "{{#include ../../step01-a/src/lib.rs:used}}\n\
             {{#include ../../step01-a/src/lib.rs}}\n\
             {{#rustdoc_include ../../xtask/src/main.rs:tool}}\n",
        );
        write(
            "book/src/sub/page.md",
            "{{#include ../../../step01-a/src/lib.rs:deep}}\n\
             {{#include ../../step01-a/src/lib.rs:unused}}\n",
        );
        let problems = check_anchors(&root, &root.join("book/src")).unwrap();
        assert_eq!(
            problems,
            [
                "step01-a/Cargo.toml: anchor `toml` is included by no chapter",
                "step01-a/src/lib.rs: anchor `unused` is included by no chapter",
                "step01-a/src/lib.rs: anchor `open` has no ANCHOR_END",
                "step01-a/src/lib.rs: anchor `open` is included by no chapter",
            ],
            "`unused` is named from sub/ by a path that leads nowhere"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
