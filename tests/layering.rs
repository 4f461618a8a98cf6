//! The library's layering (ARCHITECTURE.md, "Layers"): a module uses only modules of lower layers,
//! and an operation in `src/ops` uses only the shared helpers beside it, never another
//! operation's file. This reads every source file and fails naming the file, line and import
//! that break the rule.

use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its layer, lowest first. A module may use modules of lower
/// layers only (not of its own layer, which keeps modules of one layer independent).
const LAYERS: [(&str, u32); 14] = [
    ("lzo", 0),
    ("error", 1),
    ("store", 2),
    ("config", 3),
    ("catalog", 3),
    ("ingest", 4),
    ("session", 4),
    ("lake", 5),
    ("migrate", 6),
    ("ops", 6),
    ("ml", 7),
    ("serve", 8),
    ("pipeline", 8),
    ("lib", 9),
];

/// Files of `src/ops` every operation may use (besides the types `ops/mod.rs` re-exports).
const OPS_HELPERS: [&str; 2] = ["target", "dedupe"];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module paths named after `crate::` on a line of code (comments excluded).
fn crate_paths(line: &str) -> Vec<Vec<String>> {
    let code = line.split("//").next().unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        let after = &rest[i + "crate::".len()..];
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            let path: Vec<String> = after
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty())
                .collect();
            out.push(path);
        }
        rest = after;
    }
    out
}

/// Violations of the layering in the library's sources.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "main.rs" || rel.starts_with("cli/") {
            continue; // the binary uses the library's public API
        }
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = layer(&top) else {
            out.push(format!(
                "{rel}: module {top} has no layer in tests/layering.rs"
            ));
            continue;
        };
        let op_file = rel
            .strip_prefix("ops/")
            .map(|f| f.trim_end_matches(".rs").to_string());
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for path in crate_paths(line) {
                let Some(first) = path.first() else { continue };
                let Some(theirs) = layer(first) else { continue };
                if *first != top && theirs >= own {
                    out.push(format!(
                        "{rel}:{}: {top} (layer {own}) uses crate::{first} (layer {theirs})",
                        n + 1
                    ));
                }
                if let (Some(op), true) = (&op_file, first == "ops")
                    && let Some(second) = path.get(1)
                    && second != op
                    && op != "mod"
                    && second.starts_with(|c: char| c.is_ascii_lowercase())
                    && !OPS_HELPERS.contains(&second.as_str())
                {
                    out.push(format!(
                        "{rel}:{}: the operation {op} uses crate::ops::{second}, another operation's file",
                        n + 1
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

/// The check itself catches what it is for.
#[test]
fn the_check_finds_upward_and_sideways_imports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("ops")).unwrap();
    std::fs::create_dir_all(src.join("lake")).unwrap();
    std::fs::write(
        src.join("lake/mod.rs"),
        "use crate::ml::At;\n// crate::ops::x in a comment\nuse crate::catalog::TableId;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("ops/gold.rs"),
        "use crate::ops::refresh::session;\nuse crate::ops::target::Target;\nuse crate::session::df;\n",
    )
    .unwrap();
    let found = violations(src);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("lake/mod.rs:1") || found[1].contains("lake/mod.rs:1"),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|v| v.contains("ops/gold.rs:1") && v.contains("another operation"))
    );
}
