//! `cargo xtask new-step NN-name`: start the next step the way every step
//! is made, by copying the previous one.
//!
//! The copy is the previous step with its names changed (package, binaries,
//! crate path: the same renaming the generated diff reads through, so the
//! new step's diff starts empty), its exercises emptied, and its
//! `description` set to a TODO that `cargo xtask check` refuses, so a stub
//! cannot land. The workspace's `members` and the book's `SUMMARY.md` get a
//! line each, and the book a chapter stub with the usual sections.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use regex::{NoExpand, Regex};

use crate::steps::{self, Step};

/// `cargo xtask new-step NN-name`.
pub fn new_step(root: &Path, spec: &str) -> Result<()> {
    let new = parse(root, spec)?;
    let steps = steps::all(root)?;
    let previous = steps.last().context("there is no step to copy")?;
    if new.number != previous.number + 1 {
        bail!(
            "the next step is number {:02} (after {}), not {:02}",
            previous.number + 1,
            previous.name,
            new.number
        );
    }
    let chapter = root.join(format!("book/src/{}.md", new.name));
    for path in [&new.dir, &chapter] {
        if path.exists() {
            bail!("{} exists already", path.display());
        }
    }
    // The shared files' edits are worked out before anything is written,
    // so a refusal leaves the repo as it was.
    let manifest_path = root.join("Cargo.toml");
    let summary_path = root.join("book/src/SUMMARY.md");
    let manifest = with_member(&fs::read_to_string(&manifest_path)?, previous, &new)?;
    let summary = with_chapter(&fs::read_to_string(&summary_path)?, previous, &new)?;

    steps::copy_dir(&previous.dir, &new.dir, &["target"])?;
    rename_files(previous, &new)?;
    empty_exercises(&new)?;
    fs::write(&chapter, chapter_stub(&new))?;
    fs::write(&manifest_path, manifest)?;
    fs::write(&summary_path, summary)?;

    let made = [
        (
            format!("{}/", new.name),
            "a copy, with the previous step's names changed",
        ),
        (
            format!("{}/exercises/", new.name),
            "emptied: tests.rs and README.md are stubs",
        ),
        (
            "Cargo.toml".to_string(),
            "the new step added to the workspace members",
        ),
        (
            format!("book/src/{}.md", new.name),
            "a chapter stub, listed in SUMMARY.md",
        ),
    ];
    println!("made {} from {}:", new.name, previous.name);
    let width = made.iter().map(|(path, _)| path.len()).max().unwrap_or(0);
    for (path, what) in &made {
        println!("  {path:<width$}  {what}");
    }
    println!(
        "next:\n\
         \x20 1. describe the step: `description` in {new}/Cargo.toml (`cargo xtask check`\n\
         \x20    fails while it says TODO) and the title in {new}/src/lib.rs\n\
         \x20 2. make the change the step is about, with its tests\n\
         \x20 3. `cargo xtask diffs` and `cargo xtask transcripts` for the chapter's includes\n\
         \x20 4. write the chapter; `cargo xtask book-check` lists the anchors copied from\n\
         \x20    {old} that it does not include yet",
        new = new.name,
        old = previous.name,
    );
    Ok(())
}

/// `05-async` as a step under `root`: two digits, a dash, and a name of
/// lowercase letters, digits and dashes (it becomes a directory, a package
/// and, with `_` for `-`, a crate name).
fn parse(root: &Path, spec: &str) -> Result<Step> {
    let shape = Regex::new(r"^(\d\d)-([a-z][a-z0-9]*(-[a-z0-9]+)*)$")?;
    let Some(parts) = shape.captures(spec) else {
        bail!("expected NN-name, e.g. `05-async`, not `{spec}`");
    };
    let name = format!("step{spec}");
    Ok(Step {
        number: parts[1].parse()?,
        dir: root.join(&name),
        name,
    })
}

/// `Step 5: async`: the chapter's title until the author finds a better one.
fn title(step: &Step) -> String {
    let words = step.name.split_once('-').map_or("", |(_, words)| words);
    format!("Step {}: {}", step.number, words.replace('-', " "))
}

/// Reads every text file of the fresh copy with `old`'s names changed to
/// `new`'s, and gives the manifest a TODO description.
fn rename_files(old: &Step, new: &Step) -> Result<()> {
    for file in steps::files_under(&new.dir, &[])? {
        let path = new.dir.join(&file);
        // Not UTF-8: not text, so nothing in it names the step.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let mut renamed = steps::renamed(&text, old, new);
        if file == Path::new("Cargo.toml") {
            renamed = with_todo_description(&renamed, new.number)?;
        }
        if renamed != text {
            fs::write(&path, renamed)?;
        }
    }
    Ok(())
}

/// The manifest with its `description` replaced by one the author must
/// write (see `steps::check_descriptions`).
fn with_todo_description(manifest: &str, number: u32) -> Result<String> {
    let description = Regex::new(r"(?m)^description\s*=.*$")?;
    if !description.is_match(manifest) {
        bail!("the copied Cargo.toml has no `description` line");
    }
    let todo = format!("description = \"Step {number}: TODO describe\"");
    Ok(description
        .replacen(manifest, 1, NoExpand(&todo))
        .into_owned())
}

/// Leaves the copy's `exercises/` with no exercise: the patches go, and
/// `tests.rs` keeps only its doc header and the `common` module, so the
/// `exercises` test target still builds.
fn empty_exercises(step: &Step) -> Result<()> {
    let dir = step.dir.join("exercises");
    fs::create_dir_all(&dir)?;
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "patch") {
            fs::remove_file(&path)?;
        }
    }
    let tests = dir.join("tests.rs");
    let old = fs::read_to_string(&tests).unwrap_or_default();
    let mut stub: String = old
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .map(|line| format!("{line}\n"))
        .collect();
    stub.push_str("\n#[path = \"../tests/common/mod.rs\"]\nmod common;\n");
    fs::write(&tests, stub)?;
    fs::write(
        dir.join("README.md"),
        format!(
            "# Step {} exercises: reference solutions\n\n\
             TODO: the chapter's exercises. Each is an `#[ignore]`d test `fn NAME` in\n\
             `tests.rs` beside this file, a reference solution `NAME.patch`, and at\n\
             least one plausible wrong solution `NAME.wrong.patch`. `cargo xtask\n\
             exercises` proves each test fails unsolved and wrongly solved, and\n\
             passes solved.\n",
            step.number
        ),
    )?;
    Ok(())
}

/// The workspace manifest with `new` in `members` right after `previous`.
fn with_member(manifest: &str, previous: &Step, new: &Step) -> Result<String> {
    let entry = format!("\"{}\",", previous.name);
    insert_after(
        manifest,
        |line| line.trim() == entry,
        |line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            format!("{indent}\"{}\",\n", new.name)
        },
    )
    .with_context(|| format!("Cargo.toml: no `{entry}` line in `members`"))
}

/// The book's `SUMMARY.md` with `new`'s chapter right after `previous`'s.
fn with_chapter(summary: &str, previous: &Step, new: &Step) -> Result<String> {
    let link = format!("]({}.md)", previous.name);
    insert_after(
        summary,
        |line| line.contains(&link),
        |line| {
            let bullet = &line[..line.find('[').unwrap_or(0)];
            format!("{bullet}[{}]({}.md)\n", title(new), new.name)
        },
    )
    .with_context(|| format!("SUMMARY.md: no line links to {}.md", previous.name))
}

/// `text` with `line_for(line)` inserted after the first line that `is_it`;
/// `None` if no line is.
fn insert_after(
    text: &str,
    is_it: impl Fn(&str) -> bool,
    line_for: impl Fn(&str) -> String,
) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 80);
    let mut found = false;
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if !found && is_it(line.trim_end()) {
            found = true;
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&line_for(line.trim_end()));
        }
    }
    found.then_some(out)
}

/// A chapter with the sections every chapter has, and the includes of the
/// generated diff and transcript that `cargo xtask diffs` and `transcripts`
/// will write.
fn chapter_stub(step: &Step) -> String {
    format!(
        "# {title}\n\n\
         TODO: what the previous step cannot do, and what this step adds.\n\n\
         ## The problem\n\n\
         ## The idea\n\n\
         ## The diff, file by file\n\n\
         ### The whole diff\n\n\
         ```diff\n{{{{#include diffs/{name}.diff}}}}\n```\n\n\
         ## Run it\n\n\
         `cargo xtask tour --step {number}` runs the server and the client and prints:\n\n\
         ```text\n{{{{#include transcripts/{name}.txt}}}}\n```\n\n\
         ## What can still go wrong\n\n\
         ## Exercises\n\n\
         Run them with `cargo test -p {name} --test exercises -- --ignored`.\n\n\
         ## How production systems do it\n",
        title = title(step),
        name = step.name,
        number = step.number,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path, text) under `root`.
    fn write(root: &Path, files: &[(&str, &str)]) {
        for (file, text) in files {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
    }

    const STEP_MANIFEST: &str = "[package]\nname = \"step02-b\"\n\
        description = \"Step 2: something\"\n\n\
        [[bin]]\nname = \"step02-server\"\npath = \"src/bin/server.rs\"\n\n\
        [dev-dependencies]\ntestkit.workspace = true\n";

    /// A workspace of two steps, the second with exercises and build output.
    fn workspace(root: &Path) {
        write(
            root,
            &[
                (
                    "Cargo.toml",
                    "[workspace]\nmembers = [\n    \"step01-a\",\n    \"step02-b\",\n    \
                     \"testkit\",\n]\n",
                ),
                (
                    "book/src/SUMMARY.md",
                    "# Summary\n\n- [Step 1: a](step01-a.md)\n- [Step 2: b](step02-b.md)\n\n\
                     ---\n\n- [Glossary](glossary.md)\n",
                ),
                ("step01-a/Cargo.toml", "[package]\nname = \"step01-a\"\n"),
                ("step02-b/Cargo.toml", STEP_MANIFEST),
                ("step02-b/src/bin/server.rs", "use step02_b::server;\n"),
                (
                    "step02-b/tests/common/mod.rs",
                    "pub use step02_b as rpc;\npub use testkit::cargo_bin;\n",
                ),
                (
                    "step02-b/exercises/tests.rs",
                    "//! Exercises: `cargo test -p step02-b --test exercises`.\n\n\
                     #[path = \"../tests/common/mod.rs\"]\nmod common;\n\n\
                     #[test]\n#[ignore]\nfn x() {}\n",
                ),
                ("step02-b/exercises/x.patch", "solution"),
                ("step02-b/exercises/x.wrong.patch", "wrong"),
                ("step02-b/exercises/README.md", "the exercises"),
                ("step02-b/target/debug/junk", "build output"),
            ],
        );
    }

    #[test]
    fn only_the_next_number_with_a_plain_name_is_accepted() {
        let root = steps::temp_dir("new-step-refused");
        workspace(&root);
        for (spec, why) in [
            ("3-c", "expected NN-name"),
            ("03-C", "expected NN-name"),
            ("03-c-", "expected NN-name"),
            ("02-b", "the next step is number 03"),
            ("04-d", "the next step is number 03"),
        ] {
            let err = new_step(&root, spec).unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
        // (A step directory that exists is the last step, refused above.)
        fs::write(root.join("book/src/step03-c.md"), "a chapter").unwrap();
        let err = new_step(&root, "03-c").unwrap_err().to_string();
        assert!(err.contains("step03-c.md exists already"), "{err}");
        assert!(!root.join("step03-c").exists(), "nothing was made");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_new_step_is_the_previous_one_renamed_with_no_exercises() {
        let root = steps::temp_dir("new-step");
        workspace(&root);
        new_step(&root, "03-c-d").unwrap();
        let read = |file: &str| fs::read_to_string(root.join(file)).unwrap();

        let manifest = read("step03-c-d/Cargo.toml");
        assert_eq!(
            manifest,
            STEP_MANIFEST
                .replace("step02-b", "step03-c-d")
                .replace("step02-server", "step03-server")
                .replace("Step 2: something", "Step 3: TODO describe")
        );
        assert_eq!(
            read("step03-c-d/src/bin/server.rs"),
            "use step03_c_d::server;\n"
        );
        // Other crates' names (testkit) are not the step's to rename.
        assert_eq!(
            read("step03-c-d/tests/common/mod.rs"),
            "pub use step03_c_d as rpc;\npub use testkit::cargo_bin;\n"
        );
        assert_eq!(
            read("step03-c-d/exercises/tests.rs"),
            "//! Exercises: `cargo test -p step03-c-d --test exercises`.\n\n\
             #[path = \"../tests/common/mod.rs\"]\nmod common;\n"
        );
        assert!(read("step03-c-d/exercises/README.md").starts_with("# Step 3 exercises"));
        let copied = steps::files_under(&root.join("step03-c-d"), &[]).unwrap();
        assert_eq!(copied.len(), 5, "no patches, no target/: {copied:?}");

        assert!(
            read("Cargo.toml").contains("    \"step02-b\",\n    \"step03-c-d\",\n    \"testkit\",")
        );
        assert!(
            read("book/src/SUMMARY.md")
                .contains("- [Step 2: b](step02-b.md)\n- [Step 3: c d](step03-c-d.md)\n\n---")
        );
        let chapter = read("book/src/step03-c-d.md");
        assert!(chapter.starts_with("# Step 3: c d\n"), "{chapter}");
        for section in [
            "The problem",
            "The idea",
            "The diff",
            "Run it",
            "What can still go wrong",
            "Exercises",
            "How production systems do it",
        ] {
            assert!(chapter.contains(&format!("\n## {section}")), "{section}");
        }
        assert!(chapter.contains("{{#include diffs/step03-c-d.diff}}"));

        // The stub cannot land until the author describes the step.
        let err = steps::check_descriptions(&root).unwrap_err().to_string();
        assert!(err.contains("step03-c-d"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }
}
