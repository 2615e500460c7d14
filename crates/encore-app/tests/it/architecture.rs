//! The rules of the house (`docs/ARCHITECTURE.md`) that can be read off the source, checked on
//! every crate of the workspace: a rule written there and broken here fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crates() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(_, p)| p.join("src").is_dir())
        .collect();
    out.sort();
    out
}

/// `.rs` files under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests` block.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // a `//` inside a string literal (a URL) is rare in these files; the line is kept
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A source file's module path within its crate (`commands::serve`; the root is "").
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts.join("::")
}

/// Paths that start with `crate::` in `text`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(i) = text[at..].find("crate::") {
        let start = at + i;
        at = start + 7;
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let rest = &text[at..];
        if let Some(inner) = rest.strip_prefix('{') {
            // `use crate::{a::B, c}`
            let end = inner.find('}').unwrap_or(inner.len());
            out.extend(inner[..end].split(',').map(|s| s.trim().to_owned()));
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].trim_end_matches(':').to_owned());
    }
    out
}

/// The longest module of `known` that `path` names ("" for an item of the root).
fn resolve(known: &BTreeSet<String>, path: &str) -> String {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .map(|n| parts[..n].join("::"))
        .rfind(|m| known.contains(m))
        .unwrap_or_default()
}

fn related(a: &str, b: &str) -> bool {
    a == b
        || (!a.is_empty() && b.starts_with(&format!("{a}::")))
        || (!b.is_empty() && a.starts_with(&format!("{b}::")))
}

/// The module graph of one crate: an edge for every use of another module's item. The root's
/// `pub use` re-exports are not uses.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(src);
    let known: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(src, f);
        let mut text = code(f);
        let mut paths = crate_paths(&text);
        if m.is_empty() {
            text = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("pub use") && !l.contains(" mod "))
                .collect::<Vec<_>>()
                .join("\n");
            // the root names its modules without `crate::`
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
                if let Some((first, _)) = word.split_once("::")
                    && known.contains(first)
                {
                    paths.push(word.to_owned());
                }
            }
        }
        for p in paths {
            let t = resolve(&known, &p);
            if !related(&m, &t) {
                graph.entry(m.clone()).or_default().insert(t);
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        u: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(u.to_owned(), 1);
        stack.push(u.to_owned());
        for v in g.get(u).into_iter().flatten() {
            match state.get(v) {
                Some(1) => {
                    let at = stack.iter().position(|x| x == v).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(v.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(g, v, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(u.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in graph.keys() {
        if !state.contains_key(u)
            && let Some(c) = visit(graph, u, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let mut circles = Vec::new();
    for (name, dir) in crates() {
        if let Some(c) = find_cycle(&module_graph(&dir.join("src"))) {
            let c: Vec<&str> = c
                .iter()
                .map(|m| if m.is_empty() { "<root>" } else { m.as_str() })
                .collect();
            circles.push(format!("{name}: {}", c.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_planted_circle() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::c::C);\n").unwrap();
    std::fs::write(
        src.join("c.rs"),
        "pub struct C;\nfn f() -> crate::a::A { crate::a::A }\n",
    )
    .unwrap();
    let c = find_cycle(&module_graph(src)).expect("a -> b -> c -> a");
    assert_eq!(c.len(), 4, "{c:?}");
    std::fs::write(src.join("c.rs"), "pub struct C;\n").unwrap();
    assert_eq!(find_cycle(&module_graph(src)), None);
}

#[test]
fn the_server_starts_no_thread() {
    let src = workspace().join("crates/encore-server/src");
    let spawners: Vec<String> = sources(&src)
        .iter()
        .filter(|f| {
            let c = code(f);
            c.contains("thread::spawn") || c.contains("thread::Builder")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        spawners.is_empty(),
        "background work belongs in encore-app (worker::BatchWriter, worker::every): {spawners:?}"
    );
}

/// Body lines of every `async fn` of `file` that takes the server state (a handler).
fn handler_lengths(file: &Path) -> Vec<(String, usize)> {
    let text = code(file);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        let is_fn = l.starts_with("pub(crate) async fn ")
            || l.starts_with("pub async fn ")
            || l.starts_with("async fn ");
        if !is_fn {
            i += 1;
            continue;
        }
        let name = l
            .split("fn ")
            .nth(1)
            .and_then(|r| r.split(['(', '<']).next())
            .unwrap_or("?")
            .to_owned();
        // the signature runs to the line that opens the body
        let mut j = i;
        let mut signature = String::new();
        while j < lines.len() {
            signature.push_str(lines[j]);
            if lines[j].trim_end().ends_with('{') {
                break;
            }
            j += 1;
        }
        let start = j + 1;
        let mut end = start;
        while end < lines.len() && lines[end] != "}" {
            end += 1;
        }
        if signature.contains("State(") {
            let body = lines[start..end]
                .iter()
                .filter(|l| !l.trim().is_empty())
                .count();
            out.push((name, body));
        }
        i = end + 1;
    }
    out
}

#[test]
fn handlers_stay_short() {
    const MOST: usize = 32;
    let src = workspace().join("crates/encore-server/src");
    let long: Vec<String> = sources(&src)
        .iter()
        .flat_map(|f| {
            let file = f.file_name().unwrap().to_string_lossy().into_owned();
            handler_lengths(f)
                .into_iter()
                .filter(|(_, n)| *n > MOST)
                .map(move |(name, n)| format!("{file}: {name} has {n} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "a handler parses, calls one operation and renders (at most {MOST} lines):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_cli_uses_the_server_only_to_start_it() {
    let src = workspace().join("crates/encore-cli/src");
    let users: Vec<String> = sources(&src)
        .iter()
        .filter(|f| code(f).contains("encore_server"))
        .map(|f| f.strip_prefix(&src).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        users,
        ["commands/serve.rs"],
        "encore_server is named in {users:?}"
    );
}

/// Public functions whose error is a bare `String` (a caller cannot tell one failure from
/// another, nor map it to a code).
fn stringly(file: &Path) -> Vec<String> {
    let text = code(file);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("pub fn ") {
        let after = &rest[i..];
        let sig_end = after.find('{').unwrap_or(after.len());
        let sig: String = after[..sig_end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let ret = sig.rsplit_once("->").map_or("", |(_, r)| r.trim());
        let ret = ret.split(" where ").next().unwrap_or(ret).trim();
        if ret.starts_with("Result<") && ret.ends_with(", String>") {
            out.push(sig.split('(').next().unwrap_or("").to_owned());
        }
        rest = &after[7..];
    }
    out
}

#[test]
fn no_public_function_fails_with_a_bare_string() {
    let mut found = Vec::new();
    for (name, dir) in crates() {
        for f in sources(&dir.join("src")) {
            for s in stringly(&f) {
                found.push(format!(
                    "{name}/{}: {s}",
                    f.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "public functions returning Result<_, String>:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_storage_crate_names_a_storage_engine() {
    const ENGINES: [&str; 7] = [
        "rusqlite",
        "redb",
        "postgres",
        "tokio-postgres",
        "redis",
        "async-nats",
        "object_store",
    ];
    let mut found = Vec::new();
    for (name, dir) in crates() {
        if name == "encore-storage" {
            continue;
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        // dev-dependencies may tamper with a store's file in a test
        let deps = manifest
            .split("[dev-dependencies]")
            .next()
            .unwrap_or_default();
        for e in ENGINES {
            if deps.lines().any(|l| l.trim_start().starts_with(e)) {
                found.push(format!("{name} depends on {e}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "domain crates take a storage trait (house rule 3): {found:?}"
    );
}
