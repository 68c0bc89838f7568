//! No file-level import cycles inside a crate.
//!
//! Two top-level modules of one crate that reach each other through code references
//! (`use crate::x::..`, `crate::x::` paths, `super::x` between sibling files) are a cycle: neither
//! can be read, moved or tested without the other. This test walks every `crates/*/src` of the
//! workspace, builds each crate's graph of references between its top-level modules and fails
//! listing every cycle that is not on [`ALLOWED`]. Comments (doc comments included) and
//! `#[cfg(test)]` test modules do not count: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Cycles left on purpose: (crate, modules in the cycle, sorted), each with the reason why
/// breaking it needs a redesign rather than moving items.
const ALLOWED: &[(&str, &[&str], &str)] = &[];

/// One source file: its path relative to `src`, with `/` separators, and its text.
type SourceFile = (String, String);

#[test]
fn workspace_crates_have_no_file_level_import_cycles() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for krate in crate_dirs(&crates_dir) {
        let name = krate
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files = read_sources(&krate.join("src"));
        for cycle in cycles(&files) {
            let allowed = ALLOWED.iter().any(|(c, mods, _)| {
                *c == name && mods.iter().copied().eq(cycle.iter().map(String::as_str))
            });
            if !allowed {
                found.push(format!("{name}: {}", cycle.join(" <-> ")));
            }
        }
    }
    assert!(
        found.is_empty(),
        "file-level import cycles (move the shared items to the module that owns them, or into a \
         small module both sides depend on):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn every_allowed_cycle_still_exists() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (krate, mods, _) in ALLOWED {
        let found = cycles(&read_sources(&crates_dir.join(krate).join("src")));
        let still = found
            .iter()
            .any(|c| mods.iter().copied().eq(c.iter().map(String::as_str)));
        assert!(
            still,
            "allowed cycle {krate}: {mods:?} is gone; drop it from ALLOWED"
        );
    }
}

#[test]
fn a_cycle_between_sibling_files_is_reported() {
    let files = crate_of(&[
        ("lib.rs", "pub mod proxy;\npub mod server;\npub mod util;\n"),
        (
            "server.rs",
            "use crate::proxy::Proxy;\npub struct Server;\n",
        ),
        (
            "proxy.rs",
            "use super::{util, server::Server};\npub struct Proxy(Server);\n",
        ),
        ("util.rs", "/// See [`crate::server`].\npub fn f() {}\n"),
    ]);
    assert_eq!(
        cycles(&files),
        vec![vec!["proxy".to_owned(), "server".to_owned()]]
    );
}

#[test]
fn a_crate_without_cycles_passes() {
    let files = crate_of(&[
        ("lib.rs", "pub mod node;\npub mod api;\npub mod store;\n"),
        (
            "api/mod.rs",
            "mod routes;\nuse crate::node::Node; // crate::api is fine\n",
        ),
        (
            "api/routes.rs",
            "use super::super::node::Node;\nuse super::Api;\n",
        ),
        (
            "node.rs",
            "use crate::store::Store;\nlet url = \"http://x\";\n// use crate::api;\n\
             #[cfg(test)]\nmod tests {\n    use crate::api::Api;\n}\n",
        ),
        (
            "store.rs",
            "#[cfg(test)]\n#[path = \"store_tests.rs\"]\nmod tests;\n",
        ),
        ("store_tests.rs", "use crate::node::Node;\n"),
    ]);
    assert_eq!(cycles(&files), Vec::<Vec<String>>::new());
}

fn crate_of(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
        .collect()
}

/// Every crate directory under `crates/` that has a `src`.
fn crate_dirs(crates_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(crates_dir)
        .expect("read crates/")
        .map(|e| e.expect("crates/ entry").path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Every `.rs` file under `src`, paths relative to it.
fn read_sources(src: &Path) -> Vec<SourceFile> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("src entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.push((rel, fs::read_to_string(&path).expect("read source")));
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file (`foo/bar.rs` is `["foo", "bar"]`, `foo/mod.rs` is `["foo"]`,
/// `lib.rs` and `main.rs` are the crate root `[]`).
fn module_path(rel: &str) -> Vec<String> {
    let stem = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod")
        || (parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main"))
    {
        parts.pop();
    }
    parts
}

/// The cycles between top-level modules of one crate: each strongly connected component of more
/// than one module, sorted, in sorted order.
fn cycles(files: &[SourceFile]) -> Vec<Vec<String>> {
    let mut code = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for (rel, text) in files {
        let (kept, tests) = split_tests(&strip_comments(text));
        let dir = rel
            .rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default();
        for p in path_attributes(&tests) {
            test_only.insert(format!("{dir}{p}"));
        }
        code.insert(rel.clone(), kept);
    }
    let top: BTreeSet<String> = code
        .keys()
        .filter(|rel| !test_only.contains(*rel))
        .filter_map(|rel| module_path(rel).first().cloned())
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &code {
        if test_only.contains(rel) {
            continue;
        }
        let path = module_path(rel);
        let Some(from) = path.first() else { continue };
        for to in references(&path, text) {
            if to != *from && top.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    strongly_connected(&top, &edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect()
}

/// The text without `//` and `/* */` comments; string and char literals are kept as they are.
fn strip_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
            out.extend(&chars[start..i]);
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal such as '"' or '\''; a lifetime has no closing quote.
            let start = i;
            i += if next == Some('\\') { 3 } else { 2 };
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
            out.extend(&chars[start..i]);
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Splits at the first `#[cfg(test)]` line that starts a test module: (code, tests).
fn split_tests(text: &str) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "#[cfg(test)]" {
            continue;
        }
        let item = lines[i + 1..]
            .iter()
            .map(|l| l.trim())
            .find(|l| !l.is_empty() && !l.starts_with("#["));
        let starts_module = item.is_some_and(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            l.starts_with("mod ")
        });
        if starts_module {
            return (lines[..i].join("\n"), lines[i..].join("\n"));
        }
    }
    (text.to_owned(), String::new())
}

/// The files named by `#[path = "..."]` attributes.
fn path_attributes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("#[path = \""))
        .filter_map(|l| l.split_once('"').map(|(p, _)| p.to_owned()))
        .collect()
}

/// The top-level modules that the code of the module at `path` names through `crate::` and
/// `super::` paths, groups (`crate::{a, b::c}`) included.
fn references(path: &[String], text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0 || !is_ident(bytes[i - 1]);
        let Some(rest) = text.get(i..) else {
            i += 1;
            continue;
        };
        let base = if !at_word {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            let mut base = path.to_vec();
            let mut len = 0;
            while text[i + len..].starts_with("super::") {
                base.pop();
                len += "super::".len();
            }
            Some((base, len))
        } else {
            None
        };
        let Some((base, len)) = base else {
            i += 1;
            continue;
        };
        i += len;
        if !base.is_empty() {
            // Below the crate root every name resolves inside the same top-level module.
            continue;
        }
        if rest[len..].starts_with('{') {
            out.extend(group_heads(&rest[len + 1..]));
        } else {
            out.insert(ident_at(&rest[len..]));
        }
    }
    out.remove("");
    out
}

/// The first identifier of each item of a `{a, b::c, d::{e}}` group (the text after `{`).
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                heads.push(ident_at(&text[i..]));
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

fn ident_at(text: &str) -> String {
    text.bytes()
        .take_while(|b| is_ident(*b))
        .map(char::from)
        .collect()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Tarjan's strongly connected components, each sorted, in sorted order.
fn strongly_connected(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on_stack.insert(v);
        for to in w.edges.get(v).into_iter().flatten() {
            let to = to.as_str();
            if !w.index.contains_key(to) {
                visit(w, to);
                let low = w.low[v].min(w.low[to]);
                w.low.insert(v, low);
            } else if w.on_stack.contains(to) {
                let low = w.low[v].min(w.index[to]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(u) = w.stack.pop() {
                w.on_stack.remove(u);
                component.push(u.to_owned());
                if u == v {
                    break;
                }
            }
            component.sort();
            w.out.push(component);
        }
    }
    let mut w = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.out.sort();
    w.out
}
