//! The event log panel: newest first, scrolled by the app's offset, one line per event with its
//! time (UTC), actor, action and reason.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use super::format::hms;
use crate::api::{Event, EventAction};
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
        Span::styled(format!("{:<9.9}", ev.action), action_style(ev.action)),
        Span::raw(" "),
        Span::raw(ev.reason.clone()),
    ])
}

fn action_style(action: EventAction) -> Style {
    use EventAction as A;
    let s = Style::new().add_modifier(Modifier::BOLD);
    match action {
        A::Rollback | A::Abort | A::RolledBack => s.fg(Color::Red),
        A::Pause => s.fg(Color::Yellow),
        A::Start | A::Advance | A::Resume | A::Approve | A::Complete => s.fg(Color::Green),
        A::Weight => s.fg(Color::Cyan),
        A::ChecksPassed
        | A::ChecksFailed
        | A::AwaitApproval
        | A::Ramp
        | A::Reload
        | A::ReloadRejected
        | A::MirrorMismatch => s,
    }
}
