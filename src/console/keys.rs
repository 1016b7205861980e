//! Key bindings: a crossterm key press, read in the current [`Mode`], becomes an [`Action`].
//!
//! Owns: which key means what in each mode. Must not touch: the app state — the mapping is a pure
//! function so the bindings, the footer and the help overlay can be checked against each other.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{App, Mode};
use super::update::{update, Action, Request};

/// Key help for the footer and the help overlay: (keys, what they do).
pub const BINDINGS: &[(&str, &str)] = &[
    ("p", "pause (at once)"),
    ("r", "resume"),
    ("a", "approve the next step"),
    ("b", "roll back (asks y)"),
    ("x", "abort (asks y)"),
    ("w", "set the weight on NEW"),
    ("↑↓ PgUp PgDn", "scroll events"),
    ("?", "help"),
    ("q", "quit"),
];

/// The action a key press stands for in `mode`; `None` for keys that mean nothing there.
pub fn action_for(mode: &Mode, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match mode {
        Mode::Normal => normal(key.code),
        // Anything but `y` cancels: a stray key must never roll back.
        Mode::Confirm(_) => Some(match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Action::Confirm,
            _ => Action::Cancel,
        }),
        Mode::WeightInput(_) => match key.code {
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc => Some(Action::Cancel),
            KeyCode::Backspace => Some(Action::Backspace),
            KeyCode::Char(c) => Some(Action::Input(c)),
            _ => None,
        },
        Mode::Help => Some(Action::Cancel),
    }
}

fn normal(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('r') => Action::Resume,
        KeyCode::Char('a') => Action::Approve,
        KeyCode::Char('b') => Action::AskRollback,
        KeyCode::Char('x') => Action::AskAbort,
        KeyCode::Char('w') => Action::AskWeight,
        KeyCode::Char('?') | KeyCode::F(1) => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc => Action::Cancel,
        KeyCode::Up | KeyCode::Char('k') => Action::ScrollUp,
        KeyCode::Down | KeyCode::Char('j') => Action::ScrollDown,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        _ => return None,
    })
}

impl App {
    /// Maps a key press and applies it; returns the API call to make, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Request> {
        let action = action_for(&self.mode, key)?;
        update(self, action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn every_bound_letter_maps_in_normal_mode() {
        for (keys, _) in BINDINGS {
            if let [c] = keys.chars().collect::<Vec<_>>()[..] {
                assert!(action_for(&Mode::Normal, press(c)).is_some(), "key {c}");
            }
        }
    }

    #[test]
    fn releases_are_ignored_and_ctrl_c_quits_anywhere() {
        let mut release = press('p');
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(&Mode::Normal, release), None);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [Mode::Normal, Mode::Help, Mode::WeightInput(String::new())] {
            assert_eq!(action_for(&mode, ctrl_c), Some(Action::Quit));
        }
    }

    #[test]
    fn weight_mode_types_letters_instead_of_acting() {
        let mode = Mode::WeightInput(String::new());
        assert_eq!(action_for(&mode, press('p')), Some(Action::Input('p')));
        assert_eq!(action_for(&mode, press('q')), Some(Action::Input('q')));
    }
}
