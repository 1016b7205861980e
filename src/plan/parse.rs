//! Plan text → validated [`Plan`]: the top-level keys, `[analysis]` and `[rollback]`; steps and
//! gates are read by their sibling modules.
//!
//! Pure: text in, plan or every diagnostic out. Defaults (docs/plans.md) live here and in
//! `Analysis::default` / `Rollback::default`.

use toml_edit::ImDocument;

use super::diagnostic::Diagnostic;
use std::time::Duration;

use super::model::{bounds, Analysis, Plan, Rollback};
use super::reader::{Reader, Section};
use super::{gates, steps};

const TOP_KEYS: &[&str] = &["name", "salt", "analysis", "steps", "gates", "rollback"];
const ANALYSIS_KEYS: &[&str] = &["interval", "window", "min_requests"];
const ROLLBACK_KEYS: &[&str] = &["ramp"];

/// Parses and validates a plan. On failure returns every problem found, in document order; a
/// TOML syntax error is reported alone (nothing after it can be trusted).
pub fn parse(text: &str) -> Result<Plan, Vec<Diagnostic>> {
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => return Err(vec![syntax_error(text, &e)]),
    };
    let mut r = Reader::new(text);
    let root = Section::new(doc.as_table(), 0, "the plan");
    root.check_keys(&mut r, TOP_KEYS);

    let name = match root.field("name") {
        Some(f) => r.nonempty_string(&f, "checkout-to-k8s"),
        None => {
            r.error(
                0,
                "the plan has no `name`",
                "add `name = \"my-cutover\"` at the top",
            );
            None
        }
    };
    let salt = root
        .field("salt")
        .and_then(|f| r.nonempty_string(&f, "my-cutover-2026-01"));
    let analysis = read_analysis(&mut r, &root);
    let rollback = read_rollback(&mut r, &root);
    let steps = steps::read(&mut r, &root);
    let (gates, queries) = gates::read(&mut r, &root);
    super::mirror::check_compared(&mut r, &root, &steps, &gates);

    if r.has_errors() {
        return Err(r.finish());
    }
    let name = name.unwrap_or_default().to_owned();
    Ok(Plan {
        salt: salt.map_or_else(|| name.clone(), str::to_owned),
        name,
        analysis,
        steps,
        gates,
        rollback,
        queries,
    })
}

fn syntax_error(text: &str, e: &toml_edit::TomlError) -> Diagnostic {
    let at = e.span().map_or(0, |s| s.start);
    let what = e.message().trim().replace('\n', "; ");
    let hint = if what.contains("duplicate key") {
        "each key may appear only once per table; remove or rename one of them"
    } else {
        "fix the TOML syntax here: `key = value`, strings in quotes, tables as `[name]` or `[[name]]`"
    };
    Diagnostic::at(text, at, format!("invalid TOML: {what}"), hint)
}

fn read_analysis(r: &mut Reader<'_>, root: &Section<'_>) -> Analysis {
    let mut a = Analysis::default();
    let Some(section) = root
        .field("analysis")
        .and_then(|f| r.table(&f, "[analysis]"))
    else {
        return a;
    };
    section.check_keys(r, ANALYSIS_KEYS);
    let (lo, hi) = bounds::INTERVAL;
    let interval = section
        .field("interval")
        .map_or(Some(a.interval), |f| r.bounded_duration(&f, lo, hi, "1s"));
    let window = section.field("window").map_or(Some(a.window), |f| {
        r.bounded_duration(&f, Duration::from_millis(1), bounds::MAX_WINDOW, "10s")
    });
    if let (Some(interval), Some(window)) = (interval, window) {
        if window < interval {
            let at = section.field("window").map_or(section.at, |f| f.at);
            r.error(
                at,
                format!(
                    "`window` ({}) is shorter than `interval` ({})",
                    humantime::format_duration(window),
                    humantime::format_duration(interval)
                ),
                "the window must cover at least one interval: make `window` >= `interval`",
            );
        }
        a.interval = interval;
        a.window = window;
    }
    if let Some(f) = section.field("min_requests") {
        match r.integer(&f, "50") {
            Some(n) if n >= 1 => a.min_requests = n.unsigned_abs(),
            Some(n) => r.error(
                f.at,
                format!("`min_requests` must be at least 1, found {n}"),
                "a gate needs some traffic to judge; e.g. `min_requests = 50`",
            ),
            None => {}
        }
    }
    a
}

fn read_rollback(r: &mut Reader<'_>, root: &Section<'_>) -> Rollback {
    let mut rb = Rollback::default();
    let Some(section) = root
        .field("rollback")
        .and_then(|f| r.table(&f, "[rollback]"))
    else {
        return rb;
    };
    section.check_keys(r, ROLLBACK_KEYS);
    if let Some(d) = section
        .field("ramp")
        .and_then(|f| r.bounded_duration(&f, Duration::ZERO, bounds::MAX_RAMP, "2m"))
    {
        rb.ramp = d;
    }
    rb
}
