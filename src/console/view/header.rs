//! The header panel: plan, state, step progress, the weight gauge with the plan's step weights as
//! markers, the hold countdown or the approval prompt, and the reason of the last decision.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use super::format::{duration, num, state_style};
use crate::api::{RunState, Status};
use crate::console::app::{App, Conn};

/// Borders plus three lines.
pub const ROWS: u16 = 5;

const NEW_STYLE: Style = Style::new().fg(Color::Green);
const OLD_STYLE: Style = Style::new().fg(Color::Blue);
const MARKER_STYLE: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(Line::from(vec![
        " cutover ".bold(),
        Span::raw(format!("· {} ", app.admin_url)),
    ]));
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 {
        return;
    }
    let Some(status) = &app.status else {
        let text = match &app.conn {
            Conn::Lost { .. } => "no data yet".to_owned(),
            _ => format!("connecting to {}…", app.admin_url),
        };
        Paragraph::new(text).render(inner, buf);
        return;
    };
    let rows = [0, 1, 2].map(|i| Rect {
        y: inner.y + i,
        height: 1,
        ..inner
    });
    Paragraph::new(title_line(status)).render(rows[0], buf);
    if inner.height > 1 {
        render_gauge(status, rows[1], buf);
    }
    if inner.height > 2 {
        let reason = status.reason.as_deref().unwrap_or("—");
        Paragraph::new(Line::from(vec![
            Span::styled("reason: ", Style::new().fg(Color::Gray)),
            Span::raw(reason.to_owned()),
        ]))
        .render(rows[2], buf);
    }
}

fn title_line(status: &Status) -> Line<'static> {
    let mut spans = vec![
        Span::raw(status.plan.clone().unwrap_or_else(|| "no plan".to_owned())).bold(),
        Span::raw("  "),
        Span::styled(
            format!("● {}", status.state.as_str().to_uppercase()),
            state_style(status.state),
        ),
    ];
    if status.steps > 0 {
        spans.push(Span::raw(format!(
            "  step {} of {}",
            status.step, status.steps
        )));
    }
    let what = match status.state {
        RunState::AwaitingApproval => Some(Span::styled(
            "awaiting approval — press a",
            state_style(RunState::AwaitingApproval),
        )),
        RunState::Paused => Some(Span::raw("press r to resume")),
        RunState::Idle => Some(Span::raw("no active run")),
        RunState::RollingBack => Some(Span::styled(
            "ramping back to 0%",
            state_style(RunState::RollingBack),
        )),
        _ => status
            .hold_remaining_s
            .map(|s| Span::raw(format!("hold {} left", duration(s)))),
    };
    if let Some(what) = what {
        spans.push(Span::raw("  │ "));
        spans.push(what);
    }
    if let Some(f) = &status.fleet {
        spans.push(Span::raw("  │ "));
        spans.extend(fleet_spans(f));
    }
    if let Some(h) = &status.headroom {
        spans.push(Span::raw("  │ "));
        spans.push(headroom_span(h));
    }
    Line::from(spans)
}

/// `fleet 3 · leader a:9901` (who decides), or, loudly, that etcd cannot be reached.
fn fleet_spans(f: &crate::api::FleetView) -> Vec<Span<'static>> {
    if !f.etcd_ok {
        return vec![Span::styled(
            "ETCD UNREACHABLE: serving at the last weight, deciding nothing",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )];
    }
    let leader = f.leader.clone().unwrap_or_else(|| "none".to_owned());
    vec![Span::raw(format!(
        "fleet {} · leader {leader}{}",
        f.instances.len(),
        if f.leader.as_deref() == Some(f.instance.as_str()) {
            " (this one)"
        } else {
            ""
        }
    ))]
}

/// `rollback headroom +320 rps` (green), or `-640 rps` (red) when a rollback now would
/// overload OLD (docs/analyzer.md, "Rollback headroom").
fn headroom_span(h: &crate::api::Headroom) -> Span<'static> {
    let color = if h.headroom_rps >= 0.0 {
        Color::Green
    } else {
        Color::Red
    };
    Span::styled(
        format!("rollback headroom {:+.0} rps", h.headroom_rps),
        Style::new().fg(color),
    )
}

/// `NEW 30% ██████░░░░░░░░░ 70% OLD`: the filled part is the share of users on NEW; each step
/// weight of the plan is a `│` at the edge of the cells it fills.
fn render_gauge(status: &Status, area: Rect, buf: &mut Buffer) {
    let weight = status.weight.clamp(0.0, 100.0);
    let left = format!("NEW {:>3}% ", num(weight));
    let right = format!(" {:>3}% OLD", num(100.0 - weight));
    let labels = (left.chars().count() + right.chars().count()) as u16;
    if area.width <= labels + 2 {
        Paragraph::new(format!("{left}{right}")).render(area, buf);
        return;
    }
    let bar_width = area.width - labels;
    buf.set_string(
        area.x,
        area.y,
        &left,
        NEW_STYLE.add_modifier(Modifier::BOLD),
    );
    let x0 = area.x + left.chars().count() as u16;
    for i in 0..bar_width {
        let centre = (f64::from(i) + 0.5) / f64::from(bar_width) * 100.0;
        let (symbol, style) = if centre < weight {
            ("█", NEW_STYLE)
        } else {
            ("░", OLD_STYLE)
        };
        buf.set_string(x0 + i, area.y, symbol, style);
    }
    for &step in &status.step_weights {
        let cells = (step.clamp(0.0, 100.0) / 100.0 * f64::from(bar_width)).round() as u16;
        let i = cells.clamp(1, bar_width) - 1;
        buf.set_string(x0 + i, area.y, "│", MARKER_STYLE);
    }
    buf.set_string(
        x0 + bar_width,
        area.y,
        &right,
        OLD_STYLE.add_modifier(Modifier::BOLD),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_shows_rollback_headroom_when_old_declares_a_capacity() {
        let text = |s: &Status| {
            title_line(s)
                .spans
                .iter()
                .map(|s| s.content.to_string())
                .collect::<String>()
        };
        let mut s = Status::default();
        assert!(!text(&s).contains("headroom"));
        s.headroom = Some(crate::api::Headroom {
            headroom_rps: -640.0,
            ..Default::default()
        });
        assert!(
            text(&s).contains("rollback headroom -640 rps"),
            "{}",
            text(&s)
        );
    }
}
