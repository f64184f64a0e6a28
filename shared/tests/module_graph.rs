//! The crate's top-level modules import each other without a cycle: data flows one way
//! (model <- dead_letter <- ingest <- relay <- the platform adapters).
//!
//! The graph is read from the source: every `crate::<module>` path (including the heads of
//! `use crate::{a::X, b}` groups) in non-test code, per top-level module. Run alone with
//! `cargo test -p logrelay-core --test module_graph -- --nocapture` to print the graph.

#![allow(clippy::unwrap_used)] // Helpers outside #[test] fns are test code too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The file's text without `//` comment lines and without items marked `#[cfg(test)]`.
fn non_test_code(path: &Path) -> String {
    if path.file_name().is_some_and(|name| name == "tests.rs") {
        return String::new();
    }
    let text = fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect();
    let mut kept = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("#[cfg(test)]") {
            // Skip the marked item: through its `;`, or through its matching `}`.
            i += 1;
            let mut depth = 0i64;
            let mut opened = false;
            while i < lines.len() {
                let line = lines[i];
                depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
                opened |= line.contains('{');
                i += 1;
                if (opened && depth <= 0) || (!opened && line.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        kept.push_str(lines[i]);
        kept.push('\n');
        i += 1;
    }
    kept
}

fn ident_at(text: &str) -> Option<String> {
    let ident: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty() && ident.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'))
        .then_some(ident)
}

/// Modules named by `crate::x` paths and `use crate::{x::.., y}` groups.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.extend(ident_at(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            names.extend(ident_at(&item));
        } else {
            names.extend(ident_at(rest));
        }
    }
    names
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let names = named_modules(&non_test_code(&file));
        graph
            .entry(module.clone())
            .or_default()
            .extend(names.into_iter().filter(|name| *name != module));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for targets in graph.values_mut() {
        targets.retain(|target| modules.contains(target));
    }
    graph
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let last = path.last().cloned().unwrap_or_default();
        for next in graph.get(&last).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_two_modules_of_the_crate_import_each_other_even_through_others() {
    let graph = graph();
    for (module, targets) in &graph {
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        println!("{module:12} -> {}", targets.join(", "));
    }
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|module| cycle_from(&graph, module))
        .map(|cycle| cycle.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_graph_reader_sees_paths_groups_and_skips_test_code() {
    let names =
        named_modules("use crate::{auth::{A, B}, model::Row, Error};\nlet x = crate::ingest::f();");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["auth", "ingest", "model"]
    );
    // A known cycle is found (a -> b -> a), a chain is not.
    let mut graph = Graph::new();
    graph.insert("a".into(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".into(), BTreeSet::from(["a".to_string()]));
    graph.insert("c".into(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_from(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(cycle_from(&graph, "c"), None);
}
