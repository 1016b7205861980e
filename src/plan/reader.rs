//! Typed, positioned access to a parsed TOML document, collecting every problem on the way.
//!
//! Owns: "this key must be a number/duration/..." checks with the position of the offending
//! key or value, unknown-key detection with "did you mean", and the list of diagnostics. Knows
//! nothing of what a plan means; `parse`, `steps` and `gates` say which keys exist.
//!
//! Why not serde: serde stops at the first error and loses positions of values it has already
//! converted; walking a `toml_edit` document keeps a span for every key and value, so one run of
//! `cutover plan check` reports every problem with its own `line:col`.

use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::diagnostic::Diagnostic;
use crate::diag::{did_you_mean, line_col};

/// Collects diagnostics for one document.
pub(super) struct Reader<'t> {
    text: &'t str,
    diags: Vec<Diagnostic>,
}

impl<'t> Reader<'t> {
    pub fn new(text: &'t str) -> Self {
        Reader {
            text,
            diags: Vec::new(),
        }
    }

    /// Records a problem at byte offset `at`.
    pub fn error(&mut self, at: usize, message: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::at(self.text, at, message, hint));
    }

    pub fn has_errors(&self) -> bool {
        !self.diags.is_empty()
    }

    /// 1-based line of byte offset `at`.
    pub fn line_of(&self, at: usize) -> usize {
        line_col(self.text, at).0
    }

    /// Every diagnostic, in document order.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| (d.line, d.col));
        self.diags
    }

    pub fn string<'a>(&mut self, f: &Field<'a>) -> Option<&'a str> {
        match f.item.as_str() {
            Some(s) => Some(s),
            None => {
                let hint = format!("write it in quotes, e.g. `{} = \"...\"`", f.key);
                self.wrong_type(f, "a string", hint)
            }
        }
    }

    /// A non-empty (after trimming) string.
    pub fn nonempty_string<'a>(&mut self, f: &Field<'a>, example: &str) -> Option<&'a str> {
        let s = self.string(f)?;
        if s.trim().is_empty() {
            let hint = format!("give it a value, e.g. `{} = \"{example}\"`", f.key);
            self.error(f.at, format!("`{}` must not be empty", f.key), hint);
            return None;
        }
        Some(s)
    }

    /// An integer or a float; `example` is used in the hint (e.g. `"5"`).
    pub fn number(&mut self, f: &Field<'_>, example: &str) -> Option<f64> {
        let n = match f.item.as_value() {
            Some(Value::Integer(i)) => *i.value() as f64,
            Some(Value::Float(x)) => *x.value(),
            _ => {
                let hint = match f.item.as_str().map(str::trim) {
                    Some(s) if s.parse::<f64>().is_ok() => {
                        format!("remove the quotes: `{} = {s}`", f.key)
                    }
                    _ => format!("write a number, e.g. `{} = {example}`", f.key),
                };
                return self.wrong_type(f, "a number", hint);
            }
        };
        if !n.is_finite() {
            let hint = format!("write a number, e.g. `{} = {example}`", f.key);
            self.error(f.at, format!("`{}` must be a finite number", f.key), hint);
            return None;
        }
        Some(n)
    }

    /// A whole number.
    pub fn integer(&mut self, f: &Field<'_>, example: &str) -> Option<i64> {
        if let Some(i) = f.item.as_integer() {
            return Some(i);
        }
        let hint = format!("write a whole number, e.g. `{} = {example}`", f.key);
        self.wrong_type(f, "a whole number", hint)
    }

    pub fn boolean(&mut self, f: &Field<'_>) -> Option<bool> {
        if let Some(b) = f.item.as_bool() {
            return Some(b);
        }
        let hint = match f.item.as_str() {
            Some(s @ ("true" | "false")) => format!("remove the quotes: `{} = {s}`", f.key),
            _ => format!("write `{} = true` or `{} = false`", f.key, f.key),
        };
        self.wrong_type(f, "true or false", hint)
    }

    /// A duration string such as `"500ms"`, `"30s"`, `"5m"` or `"1h"`.
    pub fn duration(&mut self, f: &Field<'_>) -> Option<Duration> {
        let Some(s) = f.item.as_str() else {
            let hint = match f.item.as_integer() {
                Some(n) => format!("durations are strings with a unit: `{} = \"{n}s\"`", f.key),
                None => format!("write a duration in quotes, e.g. `{} = \"30s\"`", f.key),
            };
            return self.wrong_type(f, "a duration", hint);
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    f.at,
                    format!("`{}` is not a duration: {e}", f.key),
                    "use a number and a unit, e.g. \"500ms\", \"30s\", \"5m\" or \"1h\"",
                );
                None
            }
        }
    }

    /// A duration in `min..=max`, reported at the value when outside it.
    pub fn bounded_duration(
        &mut self,
        f: &Field<'_>,
        min: Duration,
        max: Duration,
        example: &str,
    ) -> Option<Duration> {
        let d = self.duration(f)?;
        if d.is_zero() && !min.is_zero() {
            self.error(
                f.at,
                format!("`{}` must be longer than 0s", f.key),
                format!("e.g. `{} = \"{example}\"`", f.key),
            );
            return None;
        }
        if d < min || d > max {
            let fmt = |d: Duration| humantime::format_duration(d).to_string();
            let range = if min.is_zero() {
                format!("from 0s to {}", fmt(max))
            } else {
                format!("from {} to {}", fmt(min), fmt(max))
            };
            self.error(
                f.at,
                format!("`{}` is {}, outside its range {range}", f.key, fmt(d)),
                format!(
                    "e.g. `{} = \"{example}\"` (docs/plans.md lists every range)",
                    f.key
                ),
            );
            return None;
        }
        Some(d)
    }

    /// A `[table]` or an inline `{ ... }` table.
    pub fn table<'a>(&mut self, f: &Field<'a>, name: &'static str) -> Option<Section<'a>> {
        match f.item {
            Item::Table(t) => Some(Section::new(t, start(t.span()).unwrap_or(f.key_at), name)),
            Item::Value(Value::InlineTable(t)) => Some(Section::new(t, f.at, name)),
            _ => {
                let hint = format!("write it as a `{name}` table or `{} = {{ ... }}`", f.key);
                self.wrong_type(f, "a table", hint)
            }
        }
    }

    /// An array of tables: `[[name]]` headers or an array of inline tables.
    pub fn tables<'a>(&mut self, f: &Field<'a>, name: &'static str) -> Option<Vec<Section<'a>>> {
        match f.item {
            Item::ArrayOfTables(a) => Some(
                a.iter()
                    .map(|t| Section::new(t, start(t.span()).unwrap_or(f.at), name))
                    .collect(),
            ),
            Item::Value(Value::Array(a)) => {
                let mut out = Vec::new();
                for v in a.iter() {
                    match v {
                        Value::InlineTable(t) => {
                            out.push(Section::new(t, start(v.span()).unwrap_or(f.at), name))
                        }
                        other => self.error(
                            start(other.span()).unwrap_or(f.at),
                            format!(
                                "each entry of `{}` must be a table, found {}",
                                f.key,
                                other.type_name()
                            ),
                            format!("write each one as a `{name}` table"),
                        ),
                    }
                }
                Some(out)
            }
            _ => {
                let hint = format!("write each one as a `{name}` table (double brackets)");
                self.wrong_type(f, "an array of tables", hint)
            }
        }
    }

    fn wrong_type<T>(&mut self, f: &Field<'_>, expected: &str, hint: String) -> Option<T> {
        let found = f.item.type_name();
        self.error(
            f.at,
            format!("`{}` must be {expected}, found {found}", f.key),
            hint,
        );
        None
    }
}

/// One table of the plan (a `[header]` table or an inline `{ ... }` one).
#[derive(Clone, Copy)]
pub(super) struct Section<'a> {
    table: &'a dyn TableLike,
    /// Byte offset of its header (or opening brace): where "missing key" errors point.
    pub at: usize,
    /// How messages name it, e.g. `[[steps]]`.
    pub name: &'static str,
}

/// One key of a [`Section`] with the positions of the key and of its value.
#[derive(Clone, Copy)]
pub(super) struct Field<'a> {
    pub key: &'a str,
    pub item: &'a Item,
    pub key_at: usize,
    pub at: usize,
}

impl<'a> Section<'a> {
    pub fn new(table: &'a dyn TableLike, at: usize, name: &'static str) -> Self {
        Section { table, at, name }
    }

    pub fn field(&self, key: &str) -> Option<Field<'a>> {
        let (k, item) = self.table.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        let key_at = start(k.span()).unwrap_or(self.at);
        Some(Field {
            key: k.get(),
            item,
            key_at,
            at: start(item.span()).unwrap_or(key_at),
        })
    }

    /// Reports every key not in `allowed`, suggesting the nearest allowed one.
    pub fn check_keys(&self, r: &mut Reader<'_>, allowed: &[&str]) {
        for (key, _) in self.table.iter() {
            if allowed.contains(&key) {
                continue;
            }
            let at = start(self.table.key(key).and_then(|k| k.span())).unwrap_or(self.at);
            let hint = match did_you_mean(key, allowed) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("keys allowed here: {}", allowed.join(", ")),
            };
            r.error(at, format!("unknown key `{key}` in {}", self.name), hint);
        }
    }
}

fn start(span: Option<std::ops::Range<usize>>) -> Option<usize> {
    span.map(|s| s.start)
}
