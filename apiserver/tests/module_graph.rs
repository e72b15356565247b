//! The request flows one way: no file of `apiserver/src` imports, directly or through others, a file that imports
//! it back. Edges are read from `use crate::…`/`use super::…` statements and inline `crate::…`/`super::…` paths,
//! resolved to the deepest module file they name. A module's own files (`x/mod.rs` using `x/y.rs`, which it
//! declares) are one unit seen from the parent down, so only child → parent and cross-module edges count.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file (`registry/store/mod.rs` → [registry, store]; `lib.rs` → []).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The deepest existing module file along `path` (segments from the crate root).
fn resolve(src: &Path, path: &[String]) -> Option<PathBuf> {
    let mut dir = src.to_path_buf();
    let mut found = None;
    for seg in path {
        let file = dir.join(format!("{seg}.rs"));
        let module = dir.join(seg).join("mod.rs");
        if file.exists() {
            found = Some(file);
        } else if module.exists() {
            found = Some(module);
        } else {
            break;
        }
        dir = dir.join(seg);
    }
    found
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (each as segments).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(&tree);
        return vec![path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect()];
    };
    let prefix: Vec<String> = tree[..open].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(|i| expand(i).into_iter().map(|rest| prefix.iter().cloned().chain(rest).collect()))
        .collect()
}

/// The paths a file refers to, as written (`crate::…`, `super::…`).
fn references(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let stmt_start = &rest[at + 4..];
        let end = stmt_start.find(';').unwrap_or(stmt_start.len());
        let stmt = &stmt_start[..end];
        let boundary = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
        if boundary && (stmt.starts_with("crate::") || stmt.starts_with("super::")) {
            out.extend(expand(stmt));
        }
        rest = &stmt_start[end.min(stmt_start.len())..];
    }
    for root in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(root) {
            let tail = &rest[at..];
            let len = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            out.push(tail[..len].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
            rest = &tail[len..];
        }
    }
    out
}

/// The module path a `crate::`/`super::` path names from `module`.
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = module.to_vec();
    let mut segs = path.iter().peekable();
    match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segs.next();
            base.clear();
        }
        Some("super") => {
            // In `x/y.rs` or `x/y/mod.rs` (module x::y), `super` is x.
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                segs.next();
                base.pop()?;
            }
        }
        _ => return None,
    }
    Some(base.into_iter().chain(segs.cloned()).collect())
}

#[test]
fn no_import_cycles_in_apiserver() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for path in references(&text) {
            let Some(abs) = absolute(&module, &path) else { continue };
            let Some(target) = resolve(&src, &abs) else { continue };
            // The file's own submodules (declared by it) are part of it, seen from here.
            if target == *file || module_of(&src, &target).starts_with(&module) {
                continue;
            }
            graph.entry(file.clone()).or_default().insert(target);
        }
    }
    // A cycle is a path back to where it started.
    let rel = |p: &Path| p.strip_prefix(&src).unwrap().display().to_string();
    let mut cycles = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut names: Vec<String> = trail.iter().map(|p| rel(p)).collect();
                    let min = names.iter().enumerate().min_by_key(|(_, n)| (*n).clone()).map(|(i, _)| i).unwrap();
                    names.rotate_left(min);
                    cycles.insert(names.join(" → "));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles in apiserver/src:\n{}",
        cycles.into_iter().collect::<Vec<_>>().join("\n")
    );
}
