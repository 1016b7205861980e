//! Reading `cutover.toml` into its raw shape with every problem of key and type at once.
//!
//! Owns: the loop that turns serde's one-error-at-a-time into a full report. serde stops at the
//! first unknown key or value of the wrong type; here each such problem is recorded with its
//! key, position and a "did you mean", the offending entry is blanked out of a working copy of
//! the text (replaced by spaces, so every byte offset — and so every position reported later by
//! the section checks — stays that of the file as written), and the copy is read again, until
//! it reads. The raw structs stay the one list of keys and types: a key added to a section is
//! checked here without being listed twice. Must not touch: what any one key means (the
//! sections' checks do that, on the raw shape this returns).

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, TableLike, Value};

use crate::diag::did_you_mean;

/// One problem found while reading, at a byte offset of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) at: usize,
    pub(super) key: String,
    pub(super) message: String,
    pub(super) hint: String,
}

/// What reading gave: the raw config when the text (with its bad entries blanked) reads, every
/// problem found on the way, and the dotted keys that were blanked (a check must not then
/// report them missing too).
pub(super) struct Collected<T> {
    pub(super) raw: Option<T>,
    pub(super) found: Vec<Found>,
    pub(super) blanked: Vec<String>,
}

/// One `key = value` or `[table]` of the document: its dotted key, where its key is, and the
/// bytes that hold it.
#[derive(Debug)]
struct Entry {
    path: String,
    key_at: usize,
    /// From the key to the end of the value (a `key = value`), or the header (a table).
    span: Range<usize>,
}

/// Read `text` as `T`, collecting every problem of key and type (see the module doc).
pub(super) fn collect<T: DeserializeOwned>(text: &str) -> Collected<T> {
    let mut out = Collected {
        raw: None,
        found: Vec::new(),
        blanked: Vec::new(),
    };
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            out.found.push(syntax(&e));
            return out;
        }
    };
    let mut entries = Vec::new();
    walk(doc.as_table(), "", &mut entries);
    let mut work = text.as_bytes().to_vec();
    // Each round blanks one entry, so this ends; the bound only guards against a surprise.
    for _ in 0..=entries.len() {
        let Ok(now) = std::str::from_utf8(&work) else {
            break;
        };
        let err = match toml::from_str::<T>(now) {
            Ok(raw) => {
                out.raw = Some(raw);
                return out;
            }
            Err(err) => err,
        };
        let at = err.span().map_or(0, |s| s.start);
        let entry = innermost(&entries, at).filter(|e| !out.blanked.contains(&e.path));
        let Some(entry) = entry else {
            // Nothing left to blank here (a problem of the whole document): report it alone.
            out.found.push(Found {
                at,
                key: String::new(),
                message: err.message().trim().to_owned(),
                hint: String::new(),
            });
            return out;
        };
        out.found.push(explain(err.message(), entry));
        let path = entry.path.clone();
        for e in entries.iter().filter(|e| within(&e.path, &path)) {
            blank(&mut work, e.span.clone());
        }
        out.blanked.push(path);
    }
    out
}

/// Keys people write where they are not, and where they belong.
const ELSEWHERE: [(&str, &str); 1] = [(
    "mirror_methods",
    "the methods shadow traffic may copy are a key of the [mirror] table: write \
     `[mirror]` and under it `methods = [\"GET\", \"HEAD\", \"OPTIONS\", ...]`",
)];

/// The problem serde reported, in the words the rest of the config uses.
fn explain(message: &str, entry: &Entry) -> Found {
    let message = message.trim();
    let key = entry.path.clone();
    let (message, hint) = if let Some(rest) = message.strip_prefix("unknown field ") {
        let name = ticked(rest).first().copied().unwrap_or("");
        let allowed = match rest.split_once("expected") {
            Some((_, list)) => ticked(list),
            None => Vec::new(),
        };
        let table = key.rsplit_once('.').map_or("the top level", |(t, _)| t);
        let table = if table == "the top level" {
            table.to_owned()
        } else {
            format!("[{table}]")
        };
        let moved = ELSEWHERE.iter().find(|(n, _)| *n == name);
        let hint = match did_you_mean(name, &allowed) {
            _ if moved.is_some() => moved.map_or(String::new(), |(_, h)| (*h).to_owned()),
            Some(near) => format!("did you mean `{near}`?"),
            None if allowed.is_empty() => "remove it (docs/config.md lists every key)".into(),
            None => format!("keys allowed here: {}", allowed.join(", ")),
        };
        (format!("unknown key `{name}` in {table}"), hint)
    } else {
        let hint = type_hint(message, key.rsplit('.').next().unwrap_or(&key));
        (message.to_owned(), hint)
    };
    Found {
        at: entry.key_at,
        key,
        message,
        hint,
    }
}

/// How to write a value of the type serde expected.
fn type_hint(message: &str, key: &str) -> String {
    let expected = message.rsplit("expected ").next().unwrap_or("");
    if expected.contains("boolean") {
        format!("write `{key} = true` or `{key} = false`")
    } else if expected.contains("string") {
        format!("write it in quotes, e.g. `{key} = \"...\"`")
    } else if expected.contains("integer") || expected.contains("i64") || expected.contains("u64") {
        format!("write a whole number without quotes, e.g. `{key} = 10`")
    } else if expected.contains("f64") || expected.contains("float") {
        format!("write a number without quotes, e.g. `{key} = 2.5`")
    } else if expected.contains("sequence") {
        format!("write a list in brackets, e.g. `{key} = [\"...\"]`")
    } else if expected.contains("struct") || expected.contains("map") {
        format!("write it as a `[{key}]` table")
    } else {
        "docs/config.md gives each key's type".to_owned()
    }
}

/// The names in backticks in `s`.
fn ticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// `path` is `table` or lies inside it.
fn within(path: &str, table: &str) -> bool {
    path == table || path.strip_prefix(table).is_some_and(|r| r.starts_with('.'))
}

/// The smallest entry whose key or value holds byte `at`.
fn innermost(entries: &[Entry], at: usize) -> Option<&Entry> {
    entries
        .iter()
        .filter(|e| e.span.contains(&at) || e.key_at == at)
        .min_by_key(|e| e.span.len())
}

/// Replace the bytes of `span` by spaces, keeping line ends (so positions do not move).
fn blank(work: &mut [u8], span: Range<usize>) {
    let end = span.end.min(work.len());
    for b in &mut work[span.start.min(end)..end] {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
        }
    }
}

fn walk(table: &dyn TableLike, prefix: &str, out: &mut Vec<Entry>) {
    for (key, item) in table.iter() {
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        let key_span = table.key(key).and_then(|k| k.span());
        match item {
            Item::Table(t) => {
                if let Some(s) = t.span() {
                    out.push(Entry {
                        path: path.clone(),
                        key_at: key_span.map_or(s.start, |k| k.start),
                        span: s,
                    });
                }
                walk(t, &path, out);
            }
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    if let Some(s) = t.span() {
                        out.push(Entry {
                            path: path.clone(),
                            key_at: key_span.clone().map_or(s.start, |k| k.start),
                            span: s,
                        });
                    }
                    walk(t, &path, out);
                }
            }
            Item::Value(v) => {
                let Some(k) = key_span else { continue };
                let end = v.span().map_or(k.end, |s| s.end);
                out.push(Entry {
                    path: path.clone(),
                    key_at: k.start,
                    span: k.start..end,
                });
                if let Value::InlineTable(t) = v {
                    walk(t, &path, out);
                }
            }
            Item::None => {}
        }
    }
}

fn syntax(e: &toml_edit::TomlError) -> Found {
    let what = e.message().trim().replace('\n', "; ");
    let hint = if what.contains("duplicate key") {
        "each key may appear only once per table; remove or rename one of them"
    } else {
        "fix the TOML syntax here: `key = value`, strings in quotes, tables as `[name]`"
    };
    Found {
        at: e.span().map_or(0, |s| s.start),
        key: String::new(),
        message: format!("not valid TOML: {what}"),
        hint: hint.to_owned(),
    }
}
