//! The house rules, checked on `src/**.rs` with plain Rust (no tool to install): no import
//! circle between top-level modules, no file over 800 non-test lines, no function over 80
//! lines. Run it alone with `cargo test --test house`; CI runs it with every other test.
//!
//! A reference is `crate::X` (or `super::` reaching the crate root) in code outside
//! `#[cfg(test)]` items; comments and string literals do not count. A file's count is its lines
//! outside `#[cfg(test)]` items; a function's is from its `fn` line to its closing brace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 80;

/// Files over the limit that are being split right now: (path under src/, non-test lines
/// today). The check fails when an entry grows, and when it is within the limit (then delete
/// the entry): this list only shrinks.
const FILE_ALLOW: &[(&str, usize)] = &[];

/// Functions over the limit, likewise: (path under src/, fn name, lines today).
const FN_ALLOW: &[(&str, &str, usize)] = &[];

/// References that still close an import circle, left out of the circle check: (from, to,
/// references today). The check fails when an entry gains references, when it has none left,
/// and when it no longer closes a circle (then delete the entry): this list only shrinks.
const EDGE_ALLOW: &[(&str, &str, usize)] = &[];

/// One source file: its path under `src/` (with `/`) and its text.
#[derive(Clone)]
struct Source {
    path: String,
    text: String,
}

/// A source file read for checking: code with comments and literal contents blanked (same
/// lines and columns), and which lines belong to `#[cfg(test)]` items.
struct Lexed<'a> {
    path: &'a str,
    code: String,
    /// Byte offset of the start of each line in `code`.
    starts: Vec<usize>,
    test: Vec<bool>,
}

impl<'a> Lexed<'a> {
    fn new(src: &'a Source) -> Lexed<'a> {
        let code = blank_comments_and_literals(&src.text);
        let mut starts = vec![0];
        starts.extend(code.match_indices('\n').map(|(i, _)| i + 1));
        let test = test_lines(&code, &starts);
        Lexed {
            path: &src.path,
            code,
            starts,
            test,
        }
    }

    /// The 0-based line of byte offset `at`.
    fn line_of(&self, at: usize) -> usize {
        self.starts.partition_point(|&s| s <= at) - 1
    }

    fn non_test_lines(&self) -> usize {
        let lines = self.code.lines().count();
        (0..lines).filter(|&l| !self.test[l]).count()
    }
}

/// `text` with every comment and the inside of every string and char literal replaced by
/// spaces (newlines kept), so braces and paths in them are not seen.
fn blank_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let starts_token = i == 0 || !ident(b[i - 1]);
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if starts_token && let Some((open, hashes)) = raw_string_at(&b[i..]) {
            let close: Vec<u8> = std::iter::once(b'"').chain(vec![b'#'; hashes]).collect();
            let body = i + open;
            let end = find(&b[body..], &close).map_or(b.len(), |p| body + p);
            blank(&mut out, body, end);
            i = (end + close.len()).min(b.len());
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            i = skip_char_literal(b, &mut out, i, &blank);
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// At a char literal (`'x'`, `'\n'`, `'\u{7b}'`): blank its inside and return the offset after
/// it; at a lifetime (`'a`) return the next offset.
fn skip_char_literal(
    b: &[u8],
    out: &mut Vec<u8>,
    i: usize,
    blank: &dyn Fn(&mut Vec<u8>, usize, usize),
) -> usize {
    if b.get(i + 1) == Some(&b'\\') {
        let mut j = i + 2;
        while j < b.len() && b[j] != b'\'' {
            j += 1;
        }
        blank(out, i + 1, j.min(b.len()));
        return j + 1;
    }
    // One character, possibly several bytes long.
    let len = std::str::from_utf8(&b[i + 1..(i + 5).min(b.len())])
        .map(|s| s.chars().next().map_or(1, char::len_utf8))
        .unwrap_or_else(|e| {
            let s = std::str::from_utf8(&b[i + 1..i + 1 + e.valid_up_to()]).unwrap_or("");
            s.chars().next().map_or(1, char::len_utf8)
        });
    if b.get(i + 1 + len) == Some(&b'\'') {
        blank(out, i + 1, i + 1 + len);
        return i + 2 + len;
    }
    i + 1
}

/// At `r"`, `r#"`, `br#"`...: the length of the opening and the number of `#`.
fn raw_string_at(b: &[u8]) -> Option<(usize, usize)> {
    let after_b = if b.first() == Some(&b'b') { 1 } else { 0 };
    if b.get(after_b) != Some(&b'r') {
        return None;
    }
    let hashes = b[after_b + 1..].iter().take_while(|&&c| c == b'#').count();
    let quote = after_b + 1 + hashes;
    (b.get(quote) == Some(&b'"')).then_some((quote + 1, hashes))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The offset of the `}` matching the `{` at `open` (or the end of the code).
fn matching_brace(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    code.len().saturating_sub(1)
}

/// The first `{` or `;` from `from` on (the body or end of an item).
fn item_end(code: &[u8], from: usize) -> usize {
    let Some(p) = code[from..].iter().position(|&c| c == b'{' || c == b';') else {
        return code.len().saturating_sub(1);
    };
    match code[from + p] {
        b'{' => matching_brace(code, from + p),
        _ => from + p,
    }
}

/// Which lines belong to an item under `#[cfg(test)]` (the attribute line to the item's end).
fn test_lines(code: &str, starts: &[usize]) -> Vec<bool> {
    let line_of = |at: usize| starts.partition_point(|&s| s <= at) - 1;
    let mut test = vec![false; starts.len()];
    for (at, _) in code.match_indices("#[cfg(test)]") {
        let end = item_end(code.as_bytes(), at + "#[cfg(test)]".len());
        for flag in &mut test[line_of(at)..=line_of(end)] {
            *flag = true;
        }
    }
    test
}

/// The module path of a file under src/ (`dns/names.rs` is `[dns, names]`); None for the crate
/// roots (`lib.rs`, `main.rs`, which is another crate).
fn module_path(path: &str) -> Option<Vec<String>> {
    let stem = path.strip_suffix(".rs")?;
    if stem == "lib" || stem == "main" || stem.starts_with("bin/") {
        return None;
    }
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    Some(stem.split('/').map(String::from).collect())
}

fn ident_at(code: &[u8], at: usize) -> &str {
    let len = code[at..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    std::str::from_utf8(&code[at..at + len]).unwrap_or("")
}

/// The top-level modules a file refers to outside test code, with the 1-based line of each
/// reference: `crate::X`, `crate::{X, Y::..}` and `super::` chains that reach the root.
fn references(lexed: &Lexed) -> Vec<(String, usize)> {
    let Some(module) = module_path(lexed.path) else {
        return Vec::new();
    };
    let code = lexed.code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let token = i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == b':');
        let rest = &code[i..];
        let root = if token && rest.starts_with(b"crate::") {
            Some(i + "crate::".len())
        } else if token && rest.starts_with(b"super::") {
            let mut j = i;
            let mut ups = 0;
            while code[j..].starts_with(b"super::") {
                j += "super::".len();
                ups += 1;
            }
            (ups >= module.len()).then_some(j)
        } else {
            None
        };
        let Some(at) = root else {
            i += 1;
            continue;
        };
        let line = lexed.line_of(i);
        if !lexed.test[line] {
            for name in root_names(code, at) {
                out.push((name, line + 1));
            }
        }
        i = at;
    }
    out
}

/// The first path segments after `crate::` at `at`: one name, or each name of a `{..}` group.
fn root_names(code: &[u8], at: usize) -> Vec<String> {
    if code.get(at) != Some(&b'{') {
        return vec![ident_at(code, at).to_string()];
    }
    let end = matching_brace(code, at);
    let group = String::from_utf8_lossy(&code[at + 1..end]).into_owned();
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && (c.is_alphanumeric() || c == '_') => {
                names.push(ident_at(group.as_bytes(), k).to_string());
                start = false;
            }
            _ => {}
        }
    }
    names
}

/// Every function outside test code: (name, 1-based line of `fn`, lines to its closing brace).
fn functions(lexed: &Lexed) -> Vec<(String, usize, usize)> {
    let code = lexed.code.as_bytes();
    let mut out = Vec::new();
    for (at, _) in lexed.code.match_indices("fn ") {
        let token = at == 0 || !(code[at - 1].is_ascii_alphanumeric() || code[at - 1] == b'_');
        let name_at = at + 3 + code[at + 3..].iter().take_while(|c| **c == b' ').count();
        let name = ident_at(code, name_at);
        let line = lexed.line_of(at);
        if !token || name.is_empty() || lexed.test[line] {
            continue;
        }
        let Some(p) = code[name_at..].iter().position(|&c| c == b'{' || c == b';') else {
            continue;
        };
        if code[name_at + p] == b';' {
            continue; // a declaration without a body
        }
        let end = matching_brace(code, name_at + p);
        out.push((name.to_string(), line + 1, lexed.line_of(end) - line + 1));
    }
    out
}

/// Import circles among top-level modules: each group of modules that reach each other, with
/// every reference (file:line) between members of the group.
fn cycles(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    let reach = |from: &String| reachable(edges, from);
    let nodes: BTreeSet<&String> = edges.keys().map(|(a, _)| a).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for &n in &nodes {
        let from_n = reach(n);
        if done.contains(n) || !from_n.contains(n) {
            continue;
        }
        let group: BTreeSet<String> = from_n
            .into_iter()
            .filter(|m| reach(m).contains(n))
            .collect();
        let steps: Vec<String> = edges
            .iter()
            .filter(|((a, b), _)| group.contains(a) && group.contains(b))
            .map(|((a, b), at)| format!("{a} -> {b} ({at})"))
            .collect();
        out.push(format!("import circle: {}", steps.join(", ")));
        done.extend(group);
    }
    out
}

/// Every module `from` reaches through `edges`.
fn reachable<V>(edges: &BTreeMap<(String, String), V>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        for (_, b) in edges.keys().filter(|(a, _)| *a == n) {
            if seen.insert(b.clone()) {
                todo.push(b.clone());
            }
        }
    }
    seen
}

/// The circle check: every reference between top-level modules, less the allowlisted ones,
/// must form no circle; each allowlisted edge must still exist, not grow, and close a circle.
fn check_circles(
    edges: &BTreeMap<(String, String), (String, usize)>,
    allow: &[(&str, &str, usize)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (from, to, was) in allow {
        let key = (from.to_string(), to.to_string());
        match edges.get(&key) {
            None => out.push(format!(
                "{from} -> {to}: allowlisted but gone; delete its entry"
            )),
            Some((_, n)) if n > was => out.push(format!(
                "{from} -> {to}: {n} references, over its allowlisted {was} (the list only shrinks)"
            )),
            Some(_) if !reachable(edges, to).contains(*from) => out.push(format!(
                "{from} -> {to}: closes no import circle now; delete its allowlist entry"
            )),
            Some(_) => {}
        }
    }
    let kept: BTreeMap<(String, String), String> = edges
        .iter()
        .filter(|((a, b), _)| !allow.iter().any(|(f, t, _)| a == f && b == t))
        .map(|(k, (at, _))| (k.clone(), at.clone()))
        .collect();
    out.extend(cycles(&kept));
    out
}

/// The limits and the allowlists a check runs with.
struct Rules<'a> {
    max_file: usize,
    max_fn: usize,
    file_allow: &'a [(&'a str, usize)],
    fn_allow: &'a [(&'a str, &'a str, usize)],
    edge_allow: &'a [(&'a str, &'a str, usize)],
}

/// Every violation of the rules in `sources`, one line each (empty: the house is in order).
fn check(sources: &[Source], rules: &Rules) -> Vec<String> {
    let lexed: Vec<Lexed> = sources.iter().map(Lexed::new).collect();
    let tops: BTreeSet<String> = sources
        .iter()
        .filter_map(|s| module_path(&s.path).map(|m| m[0].clone()))
        .collect();
    let mut edges: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    let mut out = Vec::new();
    for l in &lexed {
        let Some(module) = module_path(l.path) else {
            continue;
        };
        for (to, line) in references(l) {
            if to != module[0] && tops.contains(&to) {
                let key = (module[0].clone(), to);
                let edge = edges
                    .entry(key)
                    .or_insert_with(|| (format!("{}:{line}", l.path), 0));
                edge.1 += 1;
            }
        }
        let lines = l.non_test_lines();
        let allowed = rules.file_allow.iter().find(|(p, _)| *p == l.path);
        out.extend(over_limit(
            l.path,
            lines,
            rules.max_file,
            allowed.map(|a| a.1),
        ));
        for (name, line, len) in functions(l) {
            let allowed = rules
                .fn_allow
                .iter()
                .find(|(p, f, _)| *p == l.path && *f == name);
            let what = format!("{}:{line} fn {name}", l.path);
            out.extend(over_limit(&what, len, rules.max_fn, allowed.map(|a| a.2)));
        }
    }
    for (path, _) in rules.file_allow {
        if !sources.iter().any(|s| s.path == *path) {
            out.push(format!("{path}: allowlisted but gone; delete its entry"));
        }
    }
    for (path, name, _) in rules.fn_allow {
        let exists = lexed
            .iter()
            .any(|l| l.path == *path && functions(l).iter().any(|f| f.0 == *name));
        if !exists {
            out.push(format!(
                "{path} fn {name}: allowlisted but gone; delete its entry"
            ));
        }
    }
    out.extend(check_circles(&edges, rules.edge_allow));
    out
}

/// The complaint about `what` (`count` lines, limit `max`, allowlisted at `allowed`), if any.
fn over_limit(what: &str, count: usize, max: usize, allowed: Option<usize>) -> Option<String> {
    match allowed {
        None if count > max => Some(format!("{what}: {count} lines, over {max}")),
        Some(_) if count <= max => Some(format!(
            "{what}: {count} lines, within {max} now; delete its allowlist entry"
        )),
        Some(was) if count > was => Some(format!(
            "{what}: {count} lines, over its allowlisted {was} (the list only shrinks)"
        )),
        _ => None,
    }
}

fn read_sources(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rel = path.strip_prefix(root).expect("under src");
            let rel = rel.to_string_lossy().replace('\\', "/");
            out.push(Source { path: rel, text });
        }
    }
}

/// Files that hold only tests: modules declared `#[cfg(test)] mod name;` (path under src/).
/// They are test code as a whole, like `#[cfg(test)]` items inside a file.
fn test_only_files(sources: &[Source]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for src in sources {
        // Where the child modules of this file live: `a/b.rs` and `a/b/mod.rs` -> `a/b/`.
        let dir = match src.path.strip_suffix(".rs") {
            Some(p) if p.ends_with("/mod") || p == "lib" || p == "main" => p
                .rsplit_once('/')
                .map_or(String::new(), |(d, _)| format!("{d}/")),
            Some(p) => format!("{p}/"),
            None => continue,
        };
        let mut rest = src.text.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            rest = &rest[at + "#[cfg(test)]".len()..];
            let item = rest.trim_start();
            let item = item.strip_prefix("pub(crate) ").unwrap_or(item);
            let Some(decl) = item.strip_prefix("mod ") else {
                continue;
            };
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                out.insert(format!("{dir}{name}.rs"));
                out.insert(format!("{dir}{name}/mod.rs"));
            }
        }
    }
    out
}

#[test]
fn test_only_module_files_are_found() {
    let parent = |path: &str, text: &str| Source {
        path: path.into(),
        text: text.into(),
    };
    let found = test_only_files(&[
        parent(
            "lease/journal/mod.rs",
            "mod open;\n#[cfg(test)]\nmod tests;\n",
        ),
        parent(
            "daemon.rs",
            "#[cfg(test)]\nmod loopback_test;\n#[cfg(test)]\nmod tests {}\n",
        ),
    ]);
    assert!(found.contains("lease/journal/tests.rs"), "{found:?}");
    assert!(found.contains("daemon/loopback_test.rs"), "{found:?}");
    assert!(!found.contains("lease/journal/open.rs"), "{found:?}");
    assert!(
        !found.iter().any(|f| f.starts_with("daemon/tests")),
        "{found:?}"
    );
}

#[test]
fn the_house_is_in_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    read_sources(&root, &root, &mut sources);
    let tests = test_only_files(&sources);
    sources.retain(|s| !tests.contains(&s.path));
    assert!(sources.len() > 20, "read {} files", sources.len());
    let rules = Rules {
        max_file: MAX_FILE_LINES,
        max_fn: MAX_FN_LINES,
        file_allow: FILE_ALLOW,
        fn_allow: FN_ALLOW,
        edge_allow: EDGE_ALLOW,
    };
    let found = check(&sources, &rules);
    assert!(
        found.is_empty(),
        "house rules broken:\n{}",
        found.join("\n")
    );
}

// The checker's own tests: each rule fails on a small violation and passes the fixed code.

fn src(path: &str, text: &str) -> Source {
    Source {
        path: path.into(),
        text: text.into(),
    }
}

fn small(file_allow: &'static [(&'static str, usize)]) -> Rules<'static> {
    Rules {
        max_file: 10,
        max_fn: 5,
        file_allow,
        fn_allow: &[],
        edge_allow: &[],
    }
}

#[test]
fn a_circle_between_top_level_modules_is_found_with_its_references() {
    let sources = [
        src("a.rs", "use crate::b::X;\n"),
        src("b/mod.rs", "pub mod inner;\n"),
        src("b/inner.rs", "fn f() {\n    crate::c::g();\n}\n"),
        src("c.rs", "use crate::{a, d::Y};\n"),
        src("d.rs", "use crate::a::Z;\n"),
    ];
    let found = check(&sources, &small(&[]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("a -> b (a.rs:1)") && found[0].contains("b -> c (b/inner.rs:2)"),
        "{found:?}"
    );
    assert!(found[0].contains("c -> a (c.rs:1)"), "{found:?}");
    // Without the back edge, no circle.
    let fixed = [src("a.rs", ""), src("c.rs", "use crate::d::Y;\n")];
    assert!(check(&fixed, &small(&[])).is_empty());
}

#[test]
fn super_reaching_the_root_counts_and_tests_comments_strings_do_not() {
    let sources = [
        src("a/mod.rs", "pub mod x;\n"),
        src("a/x.rs", "use super::super::b::B;\nuse super::y;\n"),
        src(
            "b.rs",
            "// crate::a::nothing\nconst S: &str = \"crate::a::x\";\n\
             const R: &str = r#\"crate::a\"#;\n#[cfg(test)]\nmod tests {\n    use crate::a::x;\n}\n",
        ),
    ];
    assert!(check(&sources, &small(&[])).is_empty());
    let sources = [
        src("a/x.rs", "use super::super::b::B;\n"),
        src("b.rs", "use super::a;\n"),
    ];
    assert_eq!(check(&sources, &small(&[])).len(), 1);
}

#[test]
fn a_long_file_counts_only_its_non_test_lines() {
    let body = "const A: u8 = 1;\n".repeat(10);
    let tests = "#[cfg(test)]\nmod tests {\n    const S: &str = \"}\";\n    fn t() {}\n}\n";
    let ok = src("a.rs", &format!("{body}{tests}"));
    assert!(check(std::slice::from_ref(&ok), &small(&[])).is_empty());
    let long = src("a.rs", &format!("{body}const B: u8 = 2;\n{tests}"));
    assert_eq!(
        check(&[long], &small(&[])),
        ["a.rs: 11 lines, over 10".to_string()]
    );
}

#[test]
fn a_long_function_is_found_and_braces_in_literals_do_not_end_it() {
    let five = "fn f() {\n    let c = '}';\n    let s = \"}}\";\n    g(c, s)\n}\n";
    let decl = "trait T {\n    fn g();\n}\n";
    assert!(check(&[src("a.rs", &format!("{five}{decl}"))], &small(&[])).is_empty());
    let six = "fn long<'a>(x: &'a str) -> &'a str {\n    // }\n    /* } */\n    x\n\n}\n";
    assert_eq!(
        check(&[src("a.rs", six)], &small(&[])),
        ["a.rs:1 fn long: 6 lines, over 5".to_string()]
    );
}

#[test]
fn the_allowlist_only_shrinks() {
    let eleven = src("a.rs", &"const A: u8 = 1;\n".repeat(11));
    assert!(check(std::slice::from_ref(&eleven), &small(&[("a.rs", 11)])).is_empty());
    // Grown past its entry.
    assert_eq!(
        check(std::slice::from_ref(&eleven), &small(&[("a.rs", 10)])).len(),
        1
    );
    // Within the limit now: the entry must go.
    let ten = src("a.rs", &"const A: u8 = 1;\n".repeat(10));
    let found = check(&[ten], &small(&[("a.rs", 11)]));
    assert!(found[0].contains("delete its allowlist entry"), "{found:?}");
    // Gone altogether.
    assert_eq!(check(&[], &small(&[("a.rs", 11)])).len(), 1);
    // Functions too.
    let rules = Rules {
        fn_allow: &[("a.rs", "f", 6)],
        ..small(&[])
    };
    let short = src("a.rs", "fn f() {\n}\n");
    let found = check(&[short], &rules);
    assert!(
        found[0].contains("a.rs:1 fn f: 2 lines, within 5"),
        "{found:?}"
    );
}

#[test]
fn an_allowlisted_back_edge_is_left_out_until_it_closes_no_circle() {
    let sources = [
        src("a.rs", "use crate::b::X;\n"),
        src(
            "b.rs",
            "use crate::a::Y;\nfn f() {\n    crate::a::g();\n}\n",
        ),
    ];
    let rules = |edge_allow| Rules {
        edge_allow,
        ..small(&[])
    };
    assert!(check(&sources, &rules(&[("b", "a", 2)])).is_empty());
    let grown = check(&sources, &rules(&[("b", "a", 1)]));
    assert!(grown[0].contains("over its allowlisted 1"), "{grown:?}");
    // The forward edge is gone: b -> a closes no circle and its entry must go.
    let fixed = [src("a.rs", ""), sources[1].clone()];
    let found = check(&fixed, &rules(&[("b", "a", 2)]));
    assert!(found[0].contains("closes no import circle"), "{found:?}");
    let gone = [src("a.rs", "use crate::b::X;\n"), src("b.rs", "")];
    let found = check(&gone, &rules(&[("b", "a", 2)]));
    assert!(found[0].contains("allowlisted but gone"), "{found:?}");
}
