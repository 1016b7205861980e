//! The console's view: draws one [`App`] value into a ratatui buffer.
//!
//! Owns: the screen layout (banner, header, env table, gates, event log, flash line, footer,
//! overlays) and its degradation when the link is lost (last data greyed out under a banner).
//! Must not touch: the app state (render takes `&App`) or any I/O, so every screen can be rendered
//! into a `TestBackend` from a plain value. One file per panel; shared text forms in [`mod@format`].

mod envs;
pub mod format;
mod gates;
mod header;
mod log;
mod overlay;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::widgets::Widget;

use super::app::{App, Conn, Mode};

/// Rows the event log keeps at least, when the gates panel competes for space.
const MIN_LOG_ROWS: u16 = 5;

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let banner_rows = overlay::banner_rows(self, area.width);
        let flash_rows = overlay::flash_rows(self, area.width);
        let [banner, header, envs, rest, flash, footer] = Layout::vertical([
            Constraint::Length(banner_rows),
            Constraint::Length(header::ROWS),
            Constraint::Length(envs::rows(self)),
            Constraint::Fill(1),
            Constraint::Length(flash_rows),
            Constraint::Length(1),
        ])
        .areas(area);
        let gates_rows = gates::rows(self)
            .min(rest.height.saturating_sub(MIN_LOG_ROWS))
            .max(3.min(rest.height));
        let [gates, log] =
            Layout::vertical([Constraint::Length(gates_rows), Constraint::Fill(1)]).areas(rest);

        overlay::render_banner(self, banner, buf);
        header::render(self, header, buf);
        envs::render(self, envs, buf);
        gates::render(self, gates, buf);
        log::render(self, log, buf);
        if matches!(self.conn, Conn::Lost { .. }) {
            for panel in [header, envs, gates, log] {
                grey_out(panel, buf);
            }
        }
        overlay::render_flash(self, flash, buf);
        overlay::render_footer(self, footer, buf);

        match &self.mode {
            Mode::Normal => {}
            Mode::Help => overlay::render_help(area, buf),
            Mode::Confirm(what) => overlay::render_confirm(self, *what, area, buf),
            Mode::WeightInput(text) => overlay::render_weight_input(self, text, area, buf),
        }
    }
}

/// Stale data stays readable but drops every colour and emphasis, so nobody acts on it as live.
fn grey_out(area: Rect, buf: &mut Buffer) {
    let area = area.intersection(buf.area);
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            if let Some(cell) = buf.cell_mut((x, y)) {
                cell.set_fg(Color::DarkGray).set_bg(Color::Reset);
                cell.modifier = Modifier::empty();
            }
        }
    }
}

/// A centred rectangle of at most `width` × `height` inside `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
