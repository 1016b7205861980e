//! `--headless` output: one progress line per second, a line per decision as it happens, and
//! the scenario's own narration. Plain text, one line each, readable in a CI log.
//!
//! Must not touch: anything but the status and events it is given — these are pure formatters.

use crate::analyzer::judge::pct;
use crate::api::{EnvStats, Event, Status};

/// `[ 12.0s] running      2/4  25% │ old 310/s 0%  new 105/s 0%  fallback 0/s 0%  users 415/s 0% │ reason`
pub fn progress_line(t: f64, st: &Status) -> String {
    let scope =
        |name: &str, s: &EnvStats| format!("{name} {:>3.0}/s {:>4}%", s.rps, pct(s.error_rate));
    let reason = st.reason.as_deref().unwrap_or("");
    // Shadow traffic gets a scope of its own while users are, or were, copied.
    let mirror = if st.mirror.in_play() {
        format!("  {}", scope("mirror", &st.mirror.stats))
    } else {
        String::new()
    };
    format!(
        "[{t:>5.1}s] {:<12} {}/{} {:>4}% │ {}  {}  {}  {}{mirror} │ {}",
        st.state.as_str(),
        st.step,
        st.steps,
        weight(st.weight),
        scope("old", &st.envs.old),
        scope("new", &st.envs.new),
        scope("fallback", &st.envs.fallback),
        scope("users", &st.envs.users),
        shorten(reason, 100)
    )
}

/// A weight for people: `25`, `2.5`, `33.33`.
pub fn weight(w: f64) -> String {
    let s = format!("{w:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `[ 14.5s] ▶ pause by analyzer at 50%: gate "…" failed 2x: …`
pub fn event_line(t: f64, e: &Event) -> String {
    format!(
        "[{t:>5.1}s] ▶ {} by {} at {}%: {}",
        e.action,
        e.actor,
        weight(e.weight),
        e.reason
    )
}

/// `[  9.0s] ── words`
pub fn note_line(t: f64, words: &str) -> String {
    format!("[{t:>5.1}s] ── {words}")
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::RunState;

    #[test]
    fn a_progress_line_has_time_state_step_weight_scopes_and_reason() {
        let mut st = Status {
            state: RunState::Running,
            step: 2,
            steps: 4,
            weight: 25.0,
            reason: Some("step 1 held 4s healthy; advancing to 25%".into()),
            ..Default::default()
        };
        st.envs.new.rps = 105.0;
        st.envs.fallback.error_rate = 0.125;
        let line = progress_line(12.04, &st);
        for part in [
            "[ 12.0s]",
            "running",
            "2/4",
            "25%",
            "new 105/s",
            "fallback   0/s 12.5%",
            "users",
            "advancing to 25%",
        ] {
            assert!(line.contains(part), "{part:?} missing in {line}");
        }
        assert!(!line.contains('\n'));
        assert!(!line.contains("mirror"), "{line}");
        st.mirror.percent = 40.0;
        st.mirror.stats.rps = 170.0;
        st.mirror.stats.error_rate = 0.5;
        let line = progress_line(12.04, &st);
        assert!(line.contains("mirror 170/s   50%"), "{line}");
    }

    #[test]
    fn weights_lose_trailing_zeros() {
        assert_eq!(weight(25.0), "25");
        assert_eq!(weight(2.5), "2.5");
        assert_eq!(weight(33.333), "33.33");
        assert_eq!(weight(0.0), "0");
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let s = "é".repeat(300);
        let cut = shorten(&s, 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }
}
