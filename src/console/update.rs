//! The console's update step: an operator [`Action`] changes the [`App`] and may ask for one
//! control API call ([`Request`]).
//!
//! Owns: the rules of the input modes (confirmations, weight entry and its validation, help,
//! scrolling, quit). Must not touch: the network — the caller performs the returned request and
//! feeds its answer back as [`super::app::Feed::Reply`]. Kept pure so every key sequence can be
//! tested as plain state changes.

use super::app::{App, Confirm, Flash, Mode};
use crate::api::Verb;

/// Events the log scrolls by on PgUp/PgDn.
pub const PAGE: usize = 10;
/// Longest weight text accepted while typing.
const WEIGHT_INPUT_MAX: usize = 12;

/// Something the operator asked for, already decoded from the key and the mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Pause,
    Resume,
    Approve,
    /// `b`: ask to confirm a rollback.
    AskRollback,
    /// `x`: ask to confirm an abort.
    AskAbort,
    /// `w`: start typing a weight.
    AskWeight,
    /// A character typed into the weight field.
    Input(char),
    Backspace,
    /// Enter in the weight field.
    Submit,
    /// `y` in a confirmation.
    Confirm,
    /// Esc, or any other key in a confirmation or the help overlay.
    Cancel,
    Help,
    ScrollUp,
    ScrollDown,
    PageUp,
    PageDown,
    Quit,
}

/// A control API call to make on the operator's behalf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Request {
    Pause,
    Resume,
    Approve,
    Rollback,
    Abort,
    SetWeight(f64),
}

impl Request {
    /// The API verb it sends; `None` for `SetWeight`, which has a route of its own.
    pub fn verb(self) -> Option<Verb> {
        match self {
            Request::Pause => Some(Verb::Pause),
            Request::Resume => Some(Verb::Resume),
            Request::Approve => Some(Verb::Approve),
            Request::Rollback => Some(Verb::Rollback),
            Request::Abort => Some(Verb::Abort),
            Request::SetWeight(_) => None,
        }
    }

    /// The control API route: `/v1/{route}`.
    pub fn route(self) -> &'static str {
        self.verb().map_or("weight", Verb::route)
    }

    /// How the flash line names the request.
    pub fn label(self) -> String {
        match self {
            Request::SetWeight(w) => format!("set weight {}%", super::view::format::num(w)),
            other => other.route().to_owned(),
        }
    }
}

/// Applies one action; returns the API call it asks for, if any.
pub fn update(app: &mut App, action: Action) -> Option<Request> {
    if action == Action::Quit {
        app.should_quit = true;
        return None;
    }
    match std::mem::replace(&mut app.mode, Mode::Normal) {
        Mode::Normal => normal(app, action),
        Mode::Help => None,
        Mode::Confirm(what) => match action {
            Action::Confirm => Some(sent(
                app,
                match what {
                    Confirm::Rollback => Request::Rollback,
                    Confirm::Abort => Request::Abort,
                },
            )),
            _ => {
                let name = match what {
                    Confirm::Rollback => "rollback",
                    Confirm::Abort => "abort",
                };
                app.flash = Some(Flash::info(format!("{name} cancelled: nothing sent")));
                None
            }
        },
        Mode::WeightInput(text) => weight_input(app, text, action),
    }
}

fn normal(app: &mut App, action: Action) -> Option<Request> {
    match action {
        Action::Pause => return Some(sent(app, Request::Pause)),
        Action::Resume => return Some(sent(app, Request::Resume)),
        Action::Approve => return Some(sent(app, Request::Approve)),
        Action::AskRollback => app.mode = Mode::Confirm(Confirm::Rollback),
        Action::AskAbort => app.mode = Mode::Confirm(Confirm::Abort),
        Action::AskWeight => app.mode = Mode::WeightInput(String::new()),
        Action::Help => app.mode = Mode::Help,
        Action::Cancel => app.flash = None,
        Action::ScrollUp => app.scroll = app.scroll.saturating_sub(1),
        Action::PageUp => app.scroll = app.scroll.saturating_sub(PAGE),
        Action::ScrollDown => app.scroll = clamp_scroll(app, app.scroll + 1),
        Action::PageDown => app.scroll = clamp_scroll(app, app.scroll + PAGE),
        Action::Input(_) | Action::Backspace | Action::Submit | Action::Confirm | Action::Quit => {}
    }
    None
}

fn weight_input(app: &mut App, mut text: String, action: Action) -> Option<Request> {
    match action {
        Action::Cancel => {
            app.flash = Some(Flash::info("set weight cancelled: nothing sent"));
            return None;
        }
        Action::Submit => match parse_weight(&text) {
            Ok(w) => return Some(sent(app, Request::SetWeight(w))),
            Err(e) => app.flash = Some(Flash::error(e, Some("Esc cancels".to_owned()))),
        },
        Action::Backspace => {
            text.pop();
        }
        Action::Input(c) if !c.is_control() && text.chars().count() < WEIGHT_INPUT_MAX => {
            text.push(c)
        }
        _ => {}
    }
    app.mode = Mode::WeightInput(text);
    None
}

/// A weight as typed: a number from 0 to 100 (percent of users on NEW).
pub fn parse_weight(text: &str) -> Result<f64, String> {
    let t = text.trim().trim_end_matches('%').trim();
    if t.is_empty() {
        return Err("type a weight: a percentage from 0 to 100".to_owned());
    }
    match t.parse::<f64>() {
        Ok(w) if w.is_finite() && (0.0..=100.0).contains(&w) => Ok(w),
        Ok(_) => Err(format!(
            "`{t}` is out of range: the weight is a percentage from 0 to 100"
        )),
        Err(_) => Err(format!(
            "`{t}` is not a number: type a percentage from 0 to 100"
        )),
    }
}

fn sent(app: &mut App, request: Request) -> Request {
    app.flash = Some(Flash::info(format!("{}: sending…", request.label())));
    request
}

fn clamp_scroll(app: &App, wanted: usize) -> usize {
    wanted.min(app.events.len().saturating_sub(1))
}
