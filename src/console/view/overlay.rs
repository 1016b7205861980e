//! Everything drawn around or over the panels: the disconnected banner, the flash line, the
//! footer's key help, and the help, confirmation and weight-entry pop-ups.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use super::centered;
use super::format::{duration, num};
use crate::console::app::{App, Confirm, Conn, Flash, FlashLevel};
use crate::console::keys::BINDINGS;

const KEY_STYLE: Style = Style::new().fg(Color::Black).bg(Color::Gray);
const FOOTER: &[(&str, &str)] = &[
    ("p", "pause"),
    ("r", "resume"),
    ("a", "approve"),
    ("b", "rollback"),
    ("x", "abort"),
    ("w", "weight"),
    ("?", "help"),
    ("q", "quit"),
];

fn banner_text(app: &App) -> Option<String> {
    match &app.conn {
        Conn::Lost { since_ms, error } => Some(format!(
            "connection to {} lost: {} — retrying ({})",
            app.admin_url,
            error,
            duration(app.now_ms.saturating_sub(*since_ms) as f64 / 1000.0)
        )),
        _ => None,
    }
}

/// Rows the banner needs at this width (0 when connected); at most three.
pub fn banner_rows(app: &App, width: u16) -> u16 {
    match banner_text(app) {
        None => 0,
        Some(t) => {
            let width = usize::from(width.max(1));
            t.chars().count().div_ceil(width).clamp(1, 3) as u16
        }
    }
}

pub fn render_banner(app: &App, area: Rect, buf: &mut Buffer) {
    if let Some(text) = banner_text(app) {
        Paragraph::new(text)
            .style(
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            )
            .wrap(Wrap { trim: false })
            .render(area, buf);
    }
}

/// Rows the flash line needs at this width: one, or up to three for a long error and hint.
pub fn flash_rows(app: &App, width: u16) -> u16 {
    let len = app.flash.as_ref().map_or(0, |f| flash_line(f).width());
    len.div_ceil(usize::from(width.max(1))).clamp(1, 3) as u16
}

pub fn render_flash(app: &App, area: Rect, buf: &mut Buffer) {
    if let Some(flash) = &app.flash {
        Paragraph::new(flash_line(flash))
            .wrap(Wrap { trim: false })
            .render(area, buf);
    }
}

fn flash_line(flash: &Flash) -> Line<'static> {
    match flash.level {
        FlashLevel::Info => Line::from(Span::styled(
            flash.text.clone(),
            Style::new().fg(Color::Green),
        )),
        FlashLevel::Error => {
            let mut spans = vec![Span::styled(
                format!("✗ {}", flash.text),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )];
            if let Some(hint) = &flash.hint {
                spans.push(Span::styled(
                    format!(" — hint: {hint}"),
                    Style::new().fg(Color::Yellow),
                ));
            }
            Line::from(spans)
        }
    }
}

pub fn render_footer(_app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    for (key, what) in FOOTER {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            *key,
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

fn popup(area: Rect, buf: &mut Buffer, title: &str, lines: Vec<Line<'static>>, border: Color) {
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 4;
    let height = lines.len() as u16 + 2;
    let rect = centered(area, width.max(title.chars().count() as u16 + 4), height);
    Clear.render(rect, buf);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(
            Block::bordered()
                .title(format!(" {title} "))
                .border_style(Style::new().fg(border).add_modifier(Modifier::BOLD))
                .padding(ratatui::widgets::Padding::horizontal(1)),
        )
        .render(rect, buf);
}

pub fn render_help(area: Rect, buf: &mut Buffer) {
    let mut lines: Vec<Line> = BINDINGS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                format!("{k:>12}").bold(),
                Span::raw(format!("  {what}")),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("every action goes through the control API").fg(Color::Gray));
    lines.push(Line::from("any key closes this help").fg(Color::Gray));
    popup(area, buf, "keys", lines, Color::Cyan);
}

pub fn render_confirm(app: &App, what: Confirm, area: Rect, buf: &mut Buffer) {
    let weight = app.status.as_ref().map_or(0.0, |s| s.weight);
    let (title, question) = match what {
        Confirm::Rollback => (
            "roll back?",
            format!(
                "Roll back from {}% on NEW to 0% (at the plan's ramp)?",
                num(weight)
            ),
        ),
        Confirm::Abort => (
            "abort?",
            format!("Abort the run and leave the weight at {}%?", num(weight)),
        ),
    };
    let lines = vec![
        Line::from(question),
        Line::from(""),
        Line::from(vec![
            Span::styled(" y ", KEY_STYLE),
            Span::raw(" yes, send it    "),
            Span::styled(" any other key ", KEY_STYLE),
            Span::raw(" cancel"),
        ]),
    ];
    popup(area, buf, title, lines, Color::Red);
}

pub fn render_weight_input(app: &App, text: &str, area: Rect, buf: &mut Buffer) {
    let current = app.status.as_ref().map_or(0.0, |s| s.weight);
    let lines = vec![
        Line::from(format!(
            "Percent of users on NEW (0..100), now {}%:",
            num(current)
        )),
        Line::from(vec![
            Span::raw("> "),
            Span::styled(
                format!("{text}█"),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        ]),
        Line::from(""),
        Line::from(vec![
            Span::styled(" Enter ", KEY_STYLE),
            Span::raw(" send    "),
            Span::styled(" Esc ", KEY_STYLE),
            Span::raw(" cancel"),
        ]),
        Line::from("During a run this also pauses it at that weight.").fg(Color::Gray),
    ];
    popup(area, buf, "set weight", lines, Color::Yellow);
}
