//! Text forms of numbers, times and states, shared by the console's panels.
//!
//! Owns: units and rounding on screen, the state colours, the text sparkline. Pure functions of
//! their arguments (times are UTC so the screen never depends on the machine's time zone).

use ratatui::style::{Color, Modifier, Style};

use crate::api::RunState;

/// A number without needless decimals: `30`, `2.5`, `0.25`.
pub fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A fraction as a percentage: `0.0123` → `1.23%`.
pub fn pct(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p == 0.0 {
        "0%".to_owned()
    } else if p < 10.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Milliseconds: `0.4ms`, `87ms`, `1.25s`.
pub fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}ms")
    } else if v < 1000.0 {
        format!("{v:.0}ms")
    } else {
        format!("{:.2}s", v / 1000.0)
    }
}

/// Requests per second: `12.5`, `840`, `12.3k`.
pub fn rate(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else if v < 10_000.0 {
        format!("{v:.0}")
    } else {
        format!("{:.1}k", v / 1000.0)
    }
}

/// A metric's value in the unit its name implies (`error_rate`, `p99_ms`, `share`, ...).
pub fn metric_value(metric: &str, v: f64) -> String {
    let name = metric.rsplit('.').next().unwrap_or(metric);
    match name {
        "error_rate" | "share" | "probe_success" => pct(v),
        n if n.ends_with("_ms") => ms(v),
        "rps" => rate(v),
        _ => num(v),
    }
}

/// Seconds as `45s`, `2m05s`, `1h02m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).ceil() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn hms(at_ms: u64) -> String {
    let s = (at_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A one-line sparkline; empty bins are blanks. Heights are relative to the largest value, but
/// never to less than `floor`, so a flat, tiny error rate stays low instead of filling the cell.
pub fn spark(values: &[Option<f64>], floor: f64) -> String {
    let top = values.iter().flatten().fold(floor, |m, v| m.max(*v));
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if top <= 0.0 => BARS[0],
            Some(v) => {
                let i = ((v / top) * (BARS.len() - 1) as f64).round() as usize;
                BARS[i.min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// The state's colour: running green, paused/awaiting yellow, rolling back red, done blue.
pub fn state_style(state: RunState) -> Style {
    let color = match state {
        RunState::Running => Color::Green,
        RunState::Paused | RunState::AwaitingApproval => Color::Yellow,
        RunState::RollingBack | RunState::RolledBack => Color::Red,
        RunState::Completed => Color::Blue,
        RunState::Aborted => Color::Magenta,
        RunState::Idle => Color::Gray,
    };
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}

/// How a failing value is marked wherever it appears.
pub fn breach_style() -> Style {
    Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(num(30.0), "30");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(pct(0.0123), "1.23%");
        assert_eq!(pct(0.5), "50.0%");
        assert_eq!(ms(87.2), "87ms");
        assert_eq!(ms(1250.0), "1.25s");
        assert_eq!(metric_value("new.p99_ms", 300.0), "300ms");
        assert_eq!(metric_value("users.error_rate", 0.02), "2.00%");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(hms(3_723_000), "01:02:03");
    }

    #[test]
    fn sparkline_scales_to_the_floor() {
        assert_eq!(spark(&[Some(0.0), None, Some(1.0)], 1.0), "▁ █");
        assert_eq!(spark(&[Some(0.001), Some(0.001)], 0.01), "▂▂");
    }
}
