//! The environments table: one row per scope (old, new, fallback, users) with the window's
//! numbers and sparklines of error rate and p99 over the last minutes (each row scaled to its own
//! peak). A value a failing gate
//! judges (`<scope>.<metric>`) is highlighted.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Table, Widget};

use super::format::{breach_style, ms, pct, rate, spark};
use crate::api::{EnvStats, Status};
use crate::console::app::{App, Scope, Series};

/// Borders, a header row and four scopes.
pub const ROWS: u16 = 7;

/// Fixed columns: scope, rps, err, p50, p99, active, share, probe.
const FIXED: [u16; 8] = [8, 6, 6, 6, 6, 6, 6, 6];
/// Sparklines never scale below these, so noise stays low (1% errors, 100 ms).
const ERROR_FLOOR: f64 = 0.01;
const P99_FLOOR_MS: f64 = 100.0;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(title(app.status.as_ref()));
    let inner = block.inner(area);
    let fixed: u16 = FIXED.iter().sum::<u16>() + FIXED.len() as u16 + 1;
    let spark_w = inner.width.saturating_sub(fixed) / 2;

    let header = Row::new(
        [
            "env", "rps", "err", "p50", "p99", "active", "share", "probe",
        ]
        .into_iter()
        .enumerate()
        .map(|(i, h)| right_if(i > 0, h.to_owned()))
        .chain(["err trend", "p99 trend"].map(Line::from)),
    )
    .style(Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD));

    let rows: Vec<Row> = match &app.status {
        None => Vec::new(),
        Some(status) => Scope::ALL
            .into_iter()
            .map(|scope| {
                row(
                    app,
                    status,
                    scope,
                    scope.stats(&status.envs),
                    spark_w as usize,
                )
            })
            .collect(),
    };
    let widths = FIXED
        .iter()
        .map(|w| Constraint::Length(*w))
        .chain([Constraint::Length(spark_w), Constraint::Length(spark_w)]);
    Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block)
        .render(area, buf);
}

fn title(status: Option<&Status>) -> Line<'static> {
    let mut t = " environments ".to_owned();
    if let Some(s) = status {
        if s.displaced.to_fallback + s.displaced.failed > 0 {
            t.push_str(&format!(
                "· displaced {} ({} to fallback, {} failed) ",
                pct(s.displaced.rate),
                s.displaced.to_fallback,
                s.displaced.failed
            ));
        }
        if s.tunnels_to_move > 0 {
            t.push_str(&format!("· {} tunnels to move ", s.tunnels_to_move));
        }
    }
    Line::from(t)
}

fn row<'a>(app: &App, status: &Status, scope: Scope, st: &EnvStats, spark_w: usize) -> Row<'a> {
    let breach = |metric: &str| {
        let full = format!("{}.{metric}", scope.name());
        status
            .gates
            .iter()
            .any(|g| g.verdict == "failing" && g.metric == full)
    };
    let num_cell = |metric: &str, text: String| {
        let cell = Cell::new(right_if(true, text));
        if breach(metric) {
            cell.style(breach_style())
        } else {
            cell
        }
    };
    let history = |series| app.history.binned(scope, series, app.now_ms, spark_w);
    Row::new(vec![
        Cell::new(scope.name()).style(scope_style(scope)),
        num_cell("rps", rate(st.rps)),
        num_cell("error_rate", pct(st.error_rate)),
        num_cell("p50_ms", ms(st.p50_ms)),
        num_cell("p99_ms", ms(st.p99_ms)),
        num_cell("active", st.active.to_string()),
        num_cell("share", pct(st.share)),
        num_cell(
            "probe_success",
            st.probe_success.map_or_else(|| "—".to_owned(), pct),
        ),
        Cell::new(spark(&history(Series::ErrorRate), ERROR_FLOOR))
            .style(Style::new().fg(Color::Red)),
        Cell::new(spark(&history(Series::P99), P99_FLOOR_MS)).style(Style::new().fg(Color::Cyan)),
    ])
}

fn right_if(right: bool, text: String) -> Line<'static> {
    let line = Line::from(text);
    if right {
        line.alignment(Alignment::Right)
    } else {
        line
    }
}

fn scope_style(scope: Scope) -> Style {
    let s = Style::new().add_modifier(Modifier::BOLD);
    match scope {
        Scope::Old => s.fg(Color::Blue),
        Scope::New => s.fg(Color::Green),
        Scope::Fallback => s.fg(Color::Magenta),
        Scope::Users => s,
    }
}
