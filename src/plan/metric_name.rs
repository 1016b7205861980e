//! `<scope>.<metric>` names in plans, with the nearest valid name suggested for a typo.

use super::reader::{Field, Reader};
use crate::diag::did_you_mean;
use crate::metrics::{MetricKind, MetricRef, Scope};

/// A `<scope>.<metric>` name, suggesting the nearest valid one.
pub(super) fn read_metric(r: &mut Reader<'_>, f: &Field<'_>) -> Option<MetricRef> {
    let name = r.string(f)?;
    if let Some(m) = MetricRef::parse(name) {
        if m.metric.mirror_only() && m.scope != Scope::Mirror {
            r.error(
                f.at,
                format!("`{}` is a metric of shadow traffic only", m.metric.as_str()),
                format!("write `mirror.{}`", m.metric.as_str()),
            );
            return None;
        }
        return Some(m);
    }
    let hint = match suggest_metric(name) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!(
            "write `<scope>.<metric>` with a scope of {} and a metric of {}",
            Scope::NAMES.join(", "),
            MetricKind::NAMES.join(", ")
        ),
    };
    r.error(
        f.at,
        format!("unknown metric \"{name}\" in `{}`", f.key),
        hint,
    );
    None
}

/// The nearest valid `<scope>.<metric>`: when one half is valid, the nearest name for the
/// other half (a looser match than `did_you_mean`, since the valid half already narrows it);
/// otherwise a close match of the whole name.
fn suggest_metric(name: &str) -> Option<String> {
    if let Some((scope, metric)) = name.split_once('.') {
        match (Scope::parse(scope), MetricKind::parse(metric)) {
            (Some(s), None) => {
                return nearest(metric, &MetricKind::NAMES).map(|m| format!("{}.{m}", s.as_str()))
            }
            (None, Some(m)) => {
                return nearest(scope, &Scope::NAMES).map(|s| format!("{s}.{}", m.as_str()))
            }
            _ => {}
        }
    }
    let all: Vec<String> = Scope::ALL
        .iter()
        .flat_map(|s| {
            MetricKind::ALL.iter().map(move |m| {
                MetricRef {
                    scope: *s,
                    metric: *m,
                }
                .to_string()
            })
        })
        .collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    did_you_mean(name, &refs).map(str::to_owned)
}

fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            // Jaro-Winkler favours shared prefixes; Damerau-Levenshtein catches swapped letters
            // in short words ("nwe" for "new").
            let score =
                strsim::jaro_winkler(word, c).max(strsim::normalized_damerau_levenshtein(word, c));
            (score, *c)
        })
        .filter(|(score, _)| *score > 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
