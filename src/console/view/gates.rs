//! The gates panel: each gate of the plan with its last value, its rule (metric and threshold)
//! and verdict (`ok`, `failing n of m`, `not enough traffic`).

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Widget};

use super::format::{breach_style, metric_value};
use crate::api::{GateVerdict, GateView};
use crate::console::app::App;

/// Rows the panel would like: borders, a header row and one row per gate (at least one line).
pub fn rows(app: &App) -> u16 {
    let gates = app.status.as_ref().map_or(0, |s| s.gates.len());
    gates.max(1) as u16 + 3
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(" gates ");
    let gates = app
        .status
        .as_ref()
        .map(|s| s.gates.as_slice())
        .unwrap_or_default();
    if gates.is_empty() {
        let text = if app.status.is_some() {
            "no gates: steps advance on time alone"
        } else {
            ""
        };
        Paragraph::new(text)
            .style(Style::new().fg(Color::Gray))
            .block(block)
            .render(area, buf);
        return;
    }
    let header = Row::new(["gate", "value", "rule", "verdict"])
        .style(Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD));
    let rows = gates.iter().map(row);
    // The name column is as wide as the longest name (within reason); the rule gets the rest.
    let name_w = gates
        .iter()
        .map(|g| g.name.chars().count())
        .max()
        .unwrap_or(4);
    let widths = [
        Constraint::Length(name_w.clamp(4, 28) as u16),
        Constraint::Length(8),
        Constraint::Fill(1),
        Constraint::Length(18),
    ];
    Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block)
        .render(area, buf);
}

fn row(g: &GateView) -> Row<'static> {
    let failing = g.verdict == GateVerdict::Failing;
    let value = g
        .value
        .map_or_else(|| "—".to_owned(), |v| metric_value(&g.metric, v));
    let value = Cell::new(Line::from(value).right_aligned());
    let (verdict, style) = verdict(g);
    Row::new(vec![
        Cell::new(g.name.clone()),
        if failing {
            value.style(breach_style())
        } else {
            value
        },
        Cell::new(format!("{} {}", g.metric, g.threshold)),
        Cell::new(verdict).style(style),
    ])
}

fn verdict(g: &GateView) -> (String, Style) {
    match g.verdict {
        GateVerdict::Ok => ("ok".to_owned(), Style::new().fg(Color::Green)),
        GateVerdict::Failing => (
            format!("failing {} of {}", g.failing_for, g.after),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        GateVerdict::NotEnoughTraffic => (
            "not enough traffic".to_owned(),
            Style::new().fg(Color::Yellow),
        ),
        // Prometheus did not answer: the run holds, then pauses; not the service's fault.
        GateVerdict::NoAnswer => (
            "no answer".to_owned(),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
    }
}
