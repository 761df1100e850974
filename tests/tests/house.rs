//! Rules of the house that hold for the source itself: no import circle between the modules
//! of shared, the hub, the daemon and xtask; every crate opts into the workspace lints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The source of a crate's top-level modules: `src/x.rs`, or `src/x/mod.rs` with every file
/// under `src/x/` (a module's submodules belong to it). `lib.rs` and `main.rs` are the roots,
/// not modules.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            let mut text = String::new();
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                for f in std::fs::read_dir(&d).unwrap() {
                    let f = f.unwrap().path();
                    if f.is_dir() {
                        stack.push(f);
                    } else if f.extension().is_some_and(|x| x == "rs") {
                        text += &std::fs::read_to_string(&f).unwrap();
                    }
                }
            }
            *out.entry(name).or_default() += &text;
        } else if p.extension().is_some_and(|x| x == "rs") && name != "lib" && name != "main" {
            *out.entry(name).or_default() += &std::fs::read_to_string(&p).unwrap();
        }
    }
    out
}

/// The first path segment of every `crate::` path in `text` (comments left out), braces
/// included: `use crate::{a, b::c}` names `a` and `b`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // the segments at depth 0 of the group
                let (mut depth, mut seg, mut at_start) = (0, String::new(), true);
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            at_start = true;
                            refs.insert(std::mem::take(&mut seg));
                        }
                        c if depth == 0 && at_start && (c.is_alphanumeric() || c == '_') => {
                            seg.push(c)
                        }
                        ':' if depth == 0 => at_start = false,
                        _ => {}
                    }
                }
                refs.insert(seg);
            } else {
                let seg: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                refs.insert(seg);
            }
        }
    }
    refs.remove("");
    refs
}

/// The module graph of a crate: an edge a -> b when a names `crate::b`. The logging macros
/// (`crate::error!` and its kin, exported at the root) count as naming `log`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, text)| {
            let deps = crate_refs(text)
                .into_iter()
                .map(|r| match r.as_str() {
                    "error" | "warn" | "info" | "debug" | "trace" if names.contains("log") => {
                        "log".to_string()
                    }
                    _ => r,
                })
                .filter(|r| r != m && names.contains(r))
                .collect();
            (m.clone(), deps)
        })
        .collect()
}

/// A cycle of the graph, if any (as a path that returns to its start).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|p| p == d).unwrap();
                    let mut c = path[from..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(d, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_checker_sees_paths_groups_and_cycles() {
    let refs = crate_refs(
        "use crate::{a::{X, Y}, b, c::d};\nlet x = crate::e::f(); // crate::g\ncrate::error!(\"\");",
    );
    let want: BTreeSet<String> = ["a", "b", "c", "e", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(refs, want);
    let edge = |a: &str, b: &[&str]| (a.to_string(), b.iter().map(|s| s.to_string()).collect());
    let g: BTreeMap<String, BTreeSet<String>> =
        [edge("a", &["b"]), edge("b", &["c"]), edge("c", &["a"])].into();
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let g: BTreeMap<String, BTreeSet<String>> =
        [edge("a", &["b", "c"]), edge("b", &["c"]), edge("c", &[])].into();
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn no_import_circle_between_modules() {
    for krate in ["shared", "hub", "daemon", "xtask"] {
        let g = graph(&repo().join(krate).join("src"));
        assert!(g.len() > 1, "{krate}: no modules found");
        if let Some(c) = find_cycle(&g) {
            panic!(
                "{krate}: the modules import each other in a circle: {}",
                c.join(" -> ")
            );
        }
    }
}

/// The members of the workspace (`members = [...]` of the root Cargo.toml).
fn members() -> Vec<String> {
    let root = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = root
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("no members in Cargo.toml");
    let list = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Whether a crate's manifest opts into `[workspace.lints]` (`[lints]` with `workspace = true`,
/// or `lints.workspace = true`).
fn uses_workspace_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
            continue;
        }
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if (in_lints && compact == "workspace=true") || compact == "lints.workspace=true" {
            return true;
        }
    }
    false
}

#[test]
fn the_lint_check_reads_both_spellings() {
    assert!(uses_workspace_lints(
        "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"
    ));
    assert!(uses_workspace_lints("[package]\nlints.workspace = true\n"));
    assert!(!uses_workspace_lints(
        "[lints]\n\n[dependencies]\nworkspace = true\n"
    ));
    assert!(!uses_workspace_lints("[package]\nname = \"x\"\n"));
}

#[test]
fn every_crate_opts_into_the_workspace_lints() {
    let members = members();
    assert!(members.len() >= 5, "{members:?}");
    for m in members {
        let manifest = std::fs::read_to_string(repo().join(&m).join("Cargo.toml")).unwrap();
        assert!(
            uses_workspace_lints(&manifest),
            "{m}/Cargo.toml does not opt into [workspace.lints]: add `[lints]` `workspace = true`"
        );
    }
}
