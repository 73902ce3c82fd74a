//! The house reads one way: every top-level module of `src/` imports only
//! from the layers below its own, as README.md's layer table ("How the code
//! is laid out") says, and no source file holds more than 800 lines of code
//! outside its tests.
//!
//! References are read as text, the way a newcomer reads them: `crate::x`,
//! `$crate::x` and each name of a `use crate::{x, y::z}` group. Comment lines
//! and test modules (`#[cfg(test)] mod ...` to the end of the file, and
//! files included only as tests) are left out: a test may build what it
//! checks from any layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_CODE_LINES: usize = 800;

/// Module name -> layer number, from README.md's table.
fn layer_table() -> BTreeMap<String, usize> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("## How the code is laid out")
        .nth(1)
        .expect("README.md has a section `## How the code is laid out`");
    let mut table = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | layer | modules | what they hold |
        if cells.len() < 4 {
            continue;
        }
        let Ok(layer) = cells[1].parse::<usize>() else {
            continue;
        };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                table.insert(module.to_string(), layer).is_none(),
                "README's layer table names `{module}` twice"
            );
        }
    }
    assert!(!table.is_empty(), "README's layer table has no rows");
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file outside its tests, without comment lines.
fn code_of(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut iter = text.lines().peekable();
    while let Some(line) = iter.next() {
        if line.trim() == "#[cfg(test)]" {
            if let Some(next) = iter.peek() {
                let next = next.trim_start();
                if next.starts_with("mod ")
                    || next.starts_with("pub mod ")
                    || next.starts_with("#[path")
                {
                    break;
                }
            }
        }
        lines.push(line);
    }
    lines
}

/// Top-level modules a piece of code refers to.
fn references(code: &str) -> BTreeSet<String> {
    let path = regex::Regex::new(r"\$?\bcrate::([a-z_][a-z0-9_]*)").expect("regex");
    let group = regex::Regex::new(r"(?s)\buse\s+crate::\{(.*?)\};").expect("regex");
    let mut out: BTreeSet<String> = path.captures_iter(code).map(|c| c[1].to_string()).collect();
    for g in group.captures_iter(code) {
        let (mut depth, mut item) = (0usize, String::new());
        for ch in g[1].chars().chain(std::iter::once(',')) {
            match ch {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if ch == ',' && depth == 0 {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
                item.clear();
            } else {
                item.push(ch);
            }
        }
    }
    out.remove("self");
    out.remove("super");
    out
}

#[test]
fn every_import_goes_down_a_layer_and_no_file_is_too_long() {
    let table = layer_table();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    let mut problems = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let name = rel.to_string_lossy();
        let file_name = rel
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        // Test-only files, included under #[cfg(test)].
        if file_name == "tests.rs" || file_name.ends_with("_tests.rs") {
            continue;
        }
        let module = match rel.components().count() {
            1 => file_name.trim_end_matches(".rs").to_string(),
            _ => rel
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .unwrap_or_default(),
        };
        let text = std::fs::read_to_string(file).expect("read source");
        let code = code_of(&text);
        if code.len() > MAX_CODE_LINES {
            problems.push(format!(
                "{name}: {} lines of code outside tests (at most {MAX_CODE_LINES})",
                code.len()
            ));
        }
        if module == "main" || module == "lib" {
            continue;
        }
        seen_modules.insert(module.clone());
        let Some(&own) = table.get(&module) else {
            problems.push(format!(
                "{name}: module `{module}` is not in README's layer table"
            ));
            continue;
        };
        let uncommented: String = code
            .iter()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        for target in references(&uncommented) {
            if target == module {
                continue;
            }
            match table.get(&target) {
                None => problems.push(format!("{name}: refers to `crate::{target}`, which is not in the layer table")),
                Some(&layer) if layer >= own => problems.push(format!(
                    "{name}: `{module}` (layer {own}) imports `{target}` (layer {layer}); imports go down only"
                )),
                Some(_) => {}
            }
        }
    }
    for module in table.keys() {
        if !seen_modules.contains(module) {
            problems.push(format!(
                "README's layer table names `{module}`, which src/ does not have"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layering problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    // Grouped, nested and macro paths are all read.
    let refs =
        references("use crate::{a::X, b::{c, d}};\nfn f() { $crate::e::y(); crate::f::g() }");
    let want: BTreeSet<String> = ["a", "b", "e", "f"].iter().map(|s| s.to_string()).collect();
    assert_eq!(refs, want);
    // A test module at the end is cut off; code before it is kept.
    let code = code_of("use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\n");
    assert_eq!(code, vec!["use crate::a;"]);
}
