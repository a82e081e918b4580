//! `ConfigError`, and how an error finds its place: the line of a span, the dotted path of a
//! key, and the value as written. Syntax, type and semantic errors all read
//! `file:line: path = value: message`.

use std::ops::Range;
use std::path::Path;

/// A config that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `field` is the dotted path of the key, e.g. `subnet[0].pool_start`; `value` is the value
    /// as written in the file (quotes included), when the error is about one value.
    #[error("{path}:{line}: {field}{}: {message}", shown(.value))]
    Invalid {
        path: String,
        line: usize,
        field: String,
        value: Option<String>,
        message: String,
    },
}

/// ` = VALUE`, or nothing.
fn shown(value: &Option<String>) -> String {
    value
        .as_ref()
        .map(|v| format!(" = {v}"))
        .unwrap_or_default()
}

/// 1-based line number of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The text of `span` when it is one value on one line (not a table, not empty).
fn value_at(text: &str, span: &Range<usize>) -> Option<String> {
    let v = text.get(span.clone())?.trim();
    let header = v.starts_with("[[")
        || (v.starts_with('[')
            && v.ends_with(']')
            && !v.contains(['"', ','])
            && v.contains(char::is_alphabetic)
            && !v.contains("true")
            && !v.contains("false"));
    (!v.is_empty() && !v.contains('\n') && !header).then(|| v.to_string())
}

/// The line holding `offset`, without its end.
fn line_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    text[start..].lines().next().unwrap_or("")
}

/// What follows `key =` on the line holding `offset` (for an unknown key or a syntax error).
fn value_after_key(text: &str, offset: usize) -> Option<String> {
    let (_, v) = line_at(text, offset).split_once('=')?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// The dotted path of the key on the line holding `offset`, from the table headers above it:
/// `[[subnet]]` twice then `pool_start = ..` is `subnet[1].pool_start`. For syntax errors,
/// where serde never ran and so cannot say.
fn path_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    // Header name -> its concrete path now ("subnet" -> "subnet[1]"), and array lengths by
    // concrete path ("subnet[1].option" -> 3).
    let mut concrete: std::collections::HashMap<String, String> = Default::default();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut table = String::new();
    for line in text[..offset].lines() {
        let l = line.trim();
        let (name, array) = match l.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            Some((n, _)) => (n.trim(), true),
            None => match l.strip_prefix('[').and_then(|r| r.split_once(']')) {
                Some((n, _)) => (n.trim(), false),
                None => continue,
            },
        };
        let (parent, last) = name.rsplit_once('.').unwrap_or(("", name));
        let base = match concrete.get(parent) {
            Some(p) => format!("{p}.{last}"),
            None => name.to_string(),
        };
        table = if array {
            let n = counts.entry(base.clone()).or_default();
            *n += 1;
            format!("{base}[{}]", *n - 1)
        } else {
            base
        };
        concrete.insert(name.to_string(), table.clone());
    }
    let line = line_at(text, offset).trim();
    let key = match line.split_once('=') {
        Some((k, _)) if !line.starts_with('[') => k.trim(),
        _ => "",
    };
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Marks the value inside a `toml::Spanned` in a serde path; not a key of the file.
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";

/// A serde path as the file spells it: `subnet[0].routes[1].gateway`.
fn dotted(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key == SPANNED_VALUE => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// `name` in a serde message like "missing field `name`".
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').nth(1)
}

/// A syntax error (serde never ran) or a type error (`serde` says where): an `Invalid` naming
/// the line, the dotted path and the value as written.
pub(super) fn from_toml(
    text: &str,
    file: &Path,
    serde_path: Option<&serde_path_to_error::Path>,
    e: &toml::de::Error,
) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim();
    let mut field = match serde_path {
        Some(p) => dotted(p),
        None => path_at(text, span.start),
    };
    let mut value = value_at(text, &span);
    let mut message = message.to_string();
    if let Some(missing) = quoted_after(&message, "missing field ") {
        field = if field.is_empty() {
            missing.to_string()
        } else {
            format!("{field}.{missing}")
        };
        (value, message) = (None, "is required and missing".to_string());
    } else if message.starts_with("unknown field ") || serde_path.is_none() {
        value = value_after_key(text, span.start).or(value);
    } else if message.starts_with("invalid type: map, expected a sequence") {
        let hint = format!("; a list of tables is written [[{field}]], with double brackets");
        message.push_str(&hint);
    }
    ConfigError::Invalid {
        path: file.display().to_string(),
        line: line_of(text, span.start),
        field: if field.is_empty() {
            "(file)".into()
        } else {
            field
        },
        value,
        message,
    }
}

pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
}

impl Ctx<'_> {
    /// An error about the value at `span` (or, for a table's span, the table).
    pub(super) fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.display().to_string(),
            line: line_of(self.text, span.start),
            field: field.into(),
            value: value_at(self.text, &span),
            message: message.into(),
        }
    }
}
