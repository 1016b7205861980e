//! The event log panel: newest first, scrolled by the app's offset, one line per event with its
//! time (UTC), actor, action and reason.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use super::format::hms;
use crate::api::Event;
use crate::console::app::App;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let mut title = " events · UTC · newest first · ↑↓ PgUp PgDn ".to_owned();
    if app.scroll > 0 {
        title.push_str(&format!("· ↑ {} newer ", app.scroll));
    }
    let block = Block::bordered().title(title);
    let visible = block.inner(area).height as usize;
    let older = app.events.len().saturating_sub(app.scroll + visible);
    let block = if older > 0 {
        block.title_bottom(format!(" ↓ {older} older "))
    } else {
        block
    };
    let lines: Vec<Line> = app
        .events
        .iter()
        .skip(app.scroll)
        .take(visible)
        .map(line)
        .collect();
    Paragraph::new(lines).block(block).render(area, buf);
}

fn line(ev: &Event) -> Line<'static> {
    Line::from(vec![
        Span::styled(hms(ev.at_ms), Style::new().fg(Color::Gray)),
        Span::raw(" "),
        Span::styled(format!("{:<12.12}", ev.actor), Style::new().fg(Color::Cyan)),
        Span::raw(" "),
        Span::styled(format!("{:<9.9}", ev.action), action_style(&ev.action)),
        Span::raw(" "),
        Span::raw(ev.reason.clone()),
    ])
}

fn action_style(action: &str) -> Style {
    let s = Style::new().add_modifier(Modifier::BOLD);
    match action {
        "rollback" | "abort" | "rolled_back" | "aborted" => s.fg(Color::Red),
        "pause" | "paused" | "await" | "awaiting_approval" => s.fg(Color::Yellow),
        "start" | "advance" | "resume" | "approve" | "completed" | "complete" => s.fg(Color::Green),
        "weight" => s.fg(Color::Cyan),
        _ => s,
    }
}
