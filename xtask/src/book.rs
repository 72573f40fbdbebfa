//! `cargo xtask book-check`: every `{{#include}}` in the book resolves.
//!
//! mdBook does not fail on a broken include: a missing file leaves the
//! directive's text in the page, and a missing anchor includes nothing. So
//! this check does what mdBook will not: every included file must exist and
//! every named anchor must exist and hold at least one non-blank line.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use regex::Regex;

/// `cargo xtask book-check`.
pub fn book_check(root: &Path) -> Result<()> {
    let src = root.join("book/src");
    let problems = check_includes(&src)?;
    if !problems.is_empty() {
        bail!("broken includes in the book:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

// ANCHOR: check_includes
/// Every problem with an include under `src`, as `file: what is wrong`.
pub fn check_includes(src: &Path) -> Result<Vec<String>> {
    let directive = Regex::new(r"\{\{#(?:include|rustdoc_include)\s+([^}\s]+)\s*\}\}")?;
    let mut problems = Vec::new();
    for page in markdown_files(src)? {
        let text = fs::read_to_string(&page)?;
        let shown = page
            .strip_prefix(src)
            .unwrap_or(&page)
            .display()
            .to_string();
        for capture in directive.captures_iter(&text) {
            let target = &capture[1];
            // `path`, `path:anchor`, or `path:10:20` (a line range).
            let (file, selector) = match target.split_once(':') {
                Some((file, selector)) => (file, Some(selector)),
                None => (target, None),
            };
            let path = page.parent().unwrap_or(src).join(file);
            let Ok(included) = fs::read_to_string(&path) else {
                problems.push(format!("{shown}: {file} does not exist"));
                continue;
            };
            let anchor = selector.filter(|s| !s.starts_with(|c: char| c.is_ascii_digit()));
            let body = match anchor {
                Some(anchor) => match anchor_body(&included, anchor) {
                    Some(body) => body,
                    None => {
                        problems.push(format!("{shown}: {file} has no anchor `{anchor}`"));
                        continue;
                    }
                },
                None => included,
            };
            if body.trim().is_empty() {
                problems.push(format!("{shown}: {target} is empty"));
            }
        }
    }
    Ok(problems)
}
// ANCHOR_END: check_includes

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

/// The anchor name in a line like `// ANCHOR: name`.
fn marker<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(keyword)?;
    Some(rest.trim().trim_end_matches("-->").trim())
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
        let src = std::env::temp_dir().join(format!("xtask-book-{}", std::process::id()));
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(&src).unwrap();
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
}
