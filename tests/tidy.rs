//! Keeps the docs honest about the code, and the house in order. Every module of `src/` is named in README's
//! "Where things live" and in ARCHITECTURE.md's code map; every path the two documents name exists; every
//! invariant in ARCHITECTURE.md names a test that exists; only `vision/model/` names tract, as the invariant
//! says; no source file is over 700 lines (unit-test files aside) and no function over 100.
//!
//! Reads files only; builds nothing and runs nothing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The text of a Markdown section: from its heading line to the next heading of the same or a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = doc.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("no section {heading:?}"));
    let body = &doc[start + heading.len() + 2..];
    let end = body
        .match_indices("\n#")
        .find(|&(i, _)| body[i + 1..].chars().take_while(|&c| c == '#').count() <= level)
        .map_or(body.len(), |(i, _)| i);
    &body[..end]
}

/// Every `.rs` file under `dir`, relative to `src/`.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(root().join("src")).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// The modules of the library as they are named in the docs: `store/` for `store/mod.rs`, `store/counts.rs`
/// for a file. `main.rs`, `lib.rs` and the unit-test files (`tests.rs`) are not modules a reader looks for.
fn modules() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files
        .into_iter()
        .filter(|f| f != "main.rs" && f != "lib.rs" && !f.ends_with("/tests.rs"))
        .map(|f| f.strip_suffix("mod.rs").map_or(f.clone(), str::to_owned))
        .collect()
}

#[test]
fn every_module_is_in_the_code_map_and_the_readme() {
    let modules = modules();
    assert!(modules.len() > 40, "found only {} modules: is this the facegate tree?", modules.len());
    let architecture = read("ARCHITECTURE.md");
    let code_map = section(&architecture, "## Code map");
    let missing: Vec<_> = modules.iter().filter(|m| !code_map.contains(&format!("`{m}`"))).collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map does not name (in backticks): {missing:?}");

    // README: one row per top-level module (`src/x/` or `src/x.rs`), and that row names every file inside it.
    let readme = read("README.md");
    let table = section(&readme, "## Where things live");
    let mut missing = Vec::new();
    for module in &modules {
        let (top, inner) = match module.split_once('/') {
            Some((top, inner)) => (format!("src/{top}/"), inner),
            None => (format!("src/{module}"), ""),
        };
        let rows: Vec<&str> = table.lines().filter(|row| row.contains(&format!("`{top}`"))).collect();
        let named =
            !rows.is_empty() && (inner.is_empty() || rows.iter().any(|row| row.contains(&format!("`{inner}`"))));
        if !named {
            missing.push(module.clone());
        }
    }
    assert!(missing.is_empty(), "README's \"Where things live\" does not name: {missing:?}");
}

#[test]
fn every_path_the_docs_name_exists() {
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let text = read(doc);
        let stale: BTreeSet<_> = named_paths(&text)
            .into_iter()
            .map(|p| p.trim_end_matches(['.', ')', ',']).to_owned())
            .filter(|p| !root().join(p).exists())
            .collect();
        assert!(stale.is_empty(), "{doc} names paths that do not exist: {stale:?}");
    }
}

#[test]
fn every_invariant_names_a_test_that_exists() {
    let architecture = read("ARCHITECTURE.md");
    let invariants = section(&architecture, "## Invariants");
    let blocks: Vec<&str> = invariants.split("**Architecture Invariant:").skip(1).collect();
    assert!(blocks.len() >= 15, "only {} invariants found", blocks.len());
    for block in blocks {
        let title = block.split("**").next().unwrap_or(block).trim();
        let references = test_references(block);
        assert!(!references.is_empty(), "invariant {title:?} names no test");
        for reference in references {
            if let Err(why) = check_reference(&reference) {
                panic!("invariant {title:?} names {reference:?}, which {why}");
            }
        }
    }
}

#[test]
fn only_the_model_module_names_tract() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let naming: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with("vision/model/"))
        .filter(|f| {
            let text = read(&format!("src/{f}"));
            ["tract_onnx", "tract_core", "tract_ndarray", "tract_hir"]
                .iter()
                .any(|name| text.contains(&format!("{name}::")))
        })
        .collect();
    assert!(naming.is_empty(), "tract named outside vision/model/: {naming:?}");
}

#[test]
fn no_file_over_700_lines_and_no_function_over_100() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut long_files = Vec::new();
    let mut long_functions = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
        let text = read(&format!("src/{file}"));
        let lines = text.lines().count();
        if lines > 700 {
            long_files.push(format!("{file} ({lines})"));
        }
        for (name, start, length) in function_lengths(&text) {
            if length > 100 {
                long_functions.push(format!("{file}:{start} {name} ({length})"));
            }
        }
    }
    assert!(long_files.is_empty(), "split these files (700 lines at most): {long_files:?}");
    assert!(long_functions.is_empty(), "split these functions (100 lines at most): {long_functions:?}");
}

/// Every function with a body: its name, first line (1-based) and length in lines, signature to closing
/// brace. Braces inside strings, character literals and `//` comments are not counted.
fn function_lengths(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(name) = function_name(line) else { continue };
        let mut depth = 0i64;
        let mut opened = false;
        let mut end = None;
        'scan: for (i, later) in lines.iter().enumerate().skip(start) {
            for c in code_of(later).chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened => break 'scan,
                    _ => {}
                }
                if opened && depth == 0 {
                    end = Some(i);
                    break 'scan;
                }
            }
        }
        if let Some(end) = end {
            found.push((name, start + 1, end - start + 1));
        }
    }
    found
}

fn function_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(&word) = words.peek() {
        if word == "pub" || word.starts_with("pub(") || ["async", "const", "unsafe", "extern"].contains(&word) {
            words.next();
        } else {
            break;
        }
    }
    if words.next() != Some("fn") {
        return None;
    }
    let name: String = words.next()?.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// A line without its string and character literals and its `//` comment.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            // A character literal ('{' or '\''), not a lifetime ('a).
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                }
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

/// The tests a paragraph names: `tests/file.rs`, `tests/file.rs::name`, `module::path::tests::name`, or a
/// `deploy/*.sh` check that CI runs.
fn test_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        let is_test_file =
            quoted.starts_with("tests/") && quoted.split("::").next().is_some_and(|f| f.ends_with(".rs"));
        let is_unit_test = quoted.contains("::tests::");
        let is_check_script = quoted.starts_with("deploy/") && quoted.ends_with(".sh");
        if is_test_file || is_unit_test || is_check_script {
            found.push(quoted.to_owned());
        }
    }
    found
}

fn check_reference(reference: &str) -> Result<(), String> {
    let defines =
        |file: &Path, name: &str| std::fs::read_to_string(file).is_ok_and(|text| text.contains(&format!("fn {name}(")));
    if let Some(rest) = reference.strip_prefix("tests/") {
        let (file, name) = rest.split_once("::").map_or((rest, None), |(f, n)| (f, Some(n)));
        let path = root().join("tests").join(file);
        return match name {
            _ if !path.is_file() => Err("is not a file".into()),
            Some(name) if !defines(&path, name) => Err(format!("has no fn {name}")),
            _ => Ok(()),
        };
    }
    if reference.starts_with("deploy/") {
        return if root().join(reference).is_file() { Ok(()) } else { Err("is not a file".into()) };
    }
    let (module, name) = reference.split_once("::tests::").ok_or("is not a test path")?;
    let dir = root().join("src").join(module.replace("::", "/"));
    let candidates = [dir.with_extension("rs"), dir.join("mod.rs"), dir.join("tests.rs")];
    if candidates.iter().any(|file| defines(file, name)) {
        Ok(())
    } else {
        Err(format!("is not a test of src/{}", module.replace("::", "/")))
    }
}

/// The paths of this repository a document names: a run of path characters starting with one of its folders.
fn named_paths(text: &str) -> Vec<String> {
    {
        let roots = ["src/", "tests/", "benches/", "deploy/", "examples/"];
        let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
        let mut found = Vec::new();
        for (i, _) in text.char_indices() {
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| is_path_char(c) || c == ':') {
                continue;
            }
            if let Some(root) = roots.iter().find(|r| text[i..].starts_with(**r)) {
                let end =
                    text[i + root.len()..].find(|c: char| !is_path_char(c)).map_or(text.len(), |e| i + root.len() + e);
                let path = &text[i..end];
                // A bare root ("src/") or a glob is a folder's name or a pattern, not a claim about a file.
                if path.len() > root.len() && !text[end..].starts_with('*') {
                    found.push(path.to_owned());
                }
            }
        }
        found
    }
}
