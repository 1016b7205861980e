//! The environments table: one row per scope (old, new, fallback, users, and the mirror while
//! shadow traffic is copied) with the window's numbers and sparklines of error rate and p99
//! over the last minutes (each row scaled to its own peak). A value a failing gate judges
//! (`<scope>.<metric>`) is highlighted; the title says what shadow traffic was not copied and
//! how many compared answers differed.
//!
//! On a narrow terminal whole columns are left out (least important first) rather than cut:
//! a right-aligned `120ms` cut to `20ms` would be a lie.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Table, Widget};

use super::format::{breach_style, ms, pct, rate, spark};
use crate::api::{EnvStats, GateVerdict, Status};
use crate::console::app::{App, EnvRow, Series};

/// Borders, a header row and one row per shown scope.
pub fn rows(app: &App) -> u16 {
    let scopes = app.status.as_ref().map_or(4, |s| EnvRow::shown(s).count());
    3 + scopes as u16
}

/// A numeric column: header, width, and the metric name gates use for it.
struct Col {
    head: &'static str,
    width: u16,
    metric: &'static str,
}

const SCOPE_WIDTH: u16 = 8;
const COLS: [Col; 7] = [
    col("rps", 6, "rps"),
    col("err", 6, "error_rate"),
    col("p50", 6, "p50_ms"),
    col("p99", 6, "p99_ms"),
    col("active", 6, "active"),
    col("share", 6, "share"),
    col("probe", 6, "probe_success"),
];
/// Which columns go first when the table does not fit.
const DROP_ORDER: [&str; 5] = ["probe_success", "active", "share", "p50_ms", "rps"];
/// Narrowest sparkline worth drawing.
const MIN_SPARK: u16 = 3;
/// Sparklines never scale below these, so noise stays low (1% errors, 100 ms).
const ERROR_FLOOR: f64 = 0.01;
const P99_FLOOR_MS: f64 = 100.0;

const fn col(head: &'static str, width: u16, metric: &'static str) -> Col {
    Col {
        head,
        width,
        metric,
    }
}

/// The columns that fit in `width`, and the width left for each of the two sparklines.
fn layout(width: u16) -> (Vec<&'static Col>, u16) {
    let mut cols: Vec<&Col> = COLS.iter().collect();
    let used = |cols: &[&Col]| SCOPE_WIDTH + cols.iter().map(|c| c.width + 1).sum::<u16>();
    for metric in DROP_ORDER {
        if used(&cols) <= width {
            break;
        }
        cols.retain(|c| c.metric != metric);
    }
    let spark = width.saturating_sub(used(&cols) + 2) / 2;
    (cols, if spark >= MIN_SPARK { spark } else { 0 })
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(title(app.status.as_ref()));
    let (cols, spark_w) = layout(block.inner(area).width);
    let sparks: &[&str] = if spark_w > 0 {
        &["err trend", "p99 trend"]
    } else {
        &[]
    };

    let header = Row::new(
        std::iter::once(Line::from("env"))
            .chain(cols.iter().map(|c| Line::from(c.head).right_aligned()))
            .chain(sparks.iter().map(|h| Line::from(*h))),
    )
    .style(Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD));

    let rows: Vec<Row> = match &app.status {
        None => Vec::new(),
        Some(status) => EnvRow::shown(status)
            .map(|scope| row(app, status, scope, &cols, spark_w))
            .collect(),
    };
    let widths = std::iter::once(SCOPE_WIDTH)
        .chain(cols.iter().map(|c| c.width))
        .chain(sparks.iter().map(|_| spark_w))
        .map(Constraint::Length);
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
        let p = &s.protection;
        if p.shed > 0 {
            t.push_str(&format!("· shed {} ", p.shed));
            if p.waiting_room > 0 {
                t.push_str(&format!("({} waiting room) ", p.waiting_room));
            }
        }
        if p.tunnels_drained > 0 {
            t.push_str(&format!("· drained {} ", p.tunnels_drained));
        }
        if p.budget_exhausted > 0 {
            t.push_str(&format!(
                "· retry budget spent ({} refused) ",
                p.budget_exhausted
            ));
        }
        let m = &s.mirror;
        if m.percent > 0.0 || m.dropped + m.skipped > 0 {
            t.push_str(&format!("· shadow {} ", pct(m.percent / 100.0)));
            if m.dropped + m.skipped > 0 {
                t.push_str(&format!(
                    "({} dropped, {} not copied) ",
                    m.dropped, m.skipped
                ));
            }
        }
        if m.compared > 0 {
            t.push_str(&format!(
                "· {} of {} compared differed ",
                m.mismatches, m.compared
            ));
        }
    }
    Line::from(t)
}

fn value(metric: &str, st: &EnvStats) -> String {
    match metric {
        "rps" => rate(st.rps),
        "error_rate" => pct(st.error_rate),
        "p50_ms" => ms(st.p50_ms),
        "p99_ms" => ms(st.p99_ms),
        "active" => st.active.to_string(),
        "share" => pct(st.share),
        "probe_success" => st.probe_success.map_or_else(|| "—".to_owned(), pct),
        _ => String::new(),
    }
}

fn row(app: &App, status: &Status, scope: EnvRow, cols: &[&Col], spark_w: u16) -> Row<'static> {
    let st = scope.stats(status);
    let breach = |metric: &str| {
        let full = format!("{}.{metric}", scope.name());
        status
            .gates
            .iter()
            .any(|g| g.verdict == GateVerdict::Failing && g.metric == full)
    };
    let mut cells = vec![Cell::new(scope.name()).style(scope_style(scope))];
    cells.extend(cols.iter().map(|c| {
        let cell = Cell::new(Line::from(value(c.metric, st)).right_aligned());
        if breach(c.metric) {
            cell.style(breach_style())
        } else {
            cell
        }
    }));
    if spark_w > 0 {
        let history = |series| {
            app.history
                .binned(scope, series, app.now_ms, usize::from(spark_w))
        };
        cells.push(
            Cell::new(spark(&history(Series::ErrorRate), ERROR_FLOOR))
                .style(Style::new().fg(Color::Red)),
        );
        cells.push(
            Cell::new(spark(&history(Series::P99), P99_FLOOR_MS))
                .style(Style::new().fg(Color::Cyan)),
        );
    }
    Row::new(cells)
}

fn scope_style(scope: EnvRow) -> Style {
    let s = Style::new().add_modifier(Modifier::BOLD);
    match scope {
        EnvRow::Old => s.fg(Color::Blue),
        EnvRow::New => s.fg(Color::Green),
        EnvRow::Fallback => s.fg(Color::Magenta),
        EnvRow::Users => s,
        EnvRow::Mirror => s.fg(Color::Yellow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(width: u16) -> Vec<&'static str> {
        layout(width).0.iter().map(|c| c.head).collect()
    }

    #[test]
    fn narrow_tables_drop_whole_columns_least_important_first() {
        assert_eq!(heads(78).len(), 7);
        assert_eq!(layout(78).1, 9);
        assert_eq!(
            heads(60),
            ["rps", "err", "p50", "p99", "active", "share", "probe"]
        );
        assert_eq!(layout(60).1, 0);
        assert_eq!(heads(48), ["rps", "err", "p50", "p99", "share"]);
        assert_eq!(heads(20), ["err", "p99"]);
        // Whatever fits, fits entirely.
        for w in 22..120 {
            let (cols, spark) = layout(w);
            let used = SCOPE_WIDTH + cols.iter().map(|c| c.width + 1).sum::<u16>();
            assert!(
                used + if spark > 0 { 2 * spark + 2 } else { 0 } <= w,
                "width {w}"
            );
        }
    }

    #[test]
    fn the_title_shows_what_herd_protection_did() {
        let quiet = Status::default();
        assert_eq!(title(Some(&quiet)).to_string(), " environments ");
        let mut s = Status {
            tunnels_to_move: 12,
            ..Status::default()
        };
        s.protection.shed = 40;
        s.protection.waiting_room = 7;
        s.protection.tunnels_drained = 3;
        s.protection.budget_exhausted = 2;
        assert_eq!(
            title(Some(&s)).to_string(),
            " environments · 12 tunnels to move · shed 40 (7 waiting room) · drained 3 \
             · retry budget spent (2 refused) "
        );
    }
}
