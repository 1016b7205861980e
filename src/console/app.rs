//! The console's model: everything on screen is drawn from one plain [`App`] value.
//!
//! Owns: the last known [`Status`], the link state (live, connecting, lost), the client-side
//! history behind the sparklines, the event log, the input mode and the flash message, and how
//! background results ([`Feed`]) fold into them. Must not touch: the terminal, the network or a
//! clock — time arrives as `now_ms` arguments, so every state here can be built in a test.

use std::collections::VecDeque;

use crate::api::{Event, Status};
use crate::client::ClientError;

pub use super::history::{EnvRow, History, Series, HISTORY_SPAN_MS};
use super::update::Request;

/// Upper bound on events kept in memory; older ones drop off the end of the log.
pub const EVENTS_MAX: usize = 1_000;

/// Whether the control API is answering.
#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    /// No status received yet.
    Connecting,
    Live,
    /// The last status poll failed; the screen keeps the last known data, greyed out.
    Lost {
        since_ms: u64,
        error: String,
    },
}

/// What the keyboard is doing right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// A destructive action waiting for `y`.
    Confirm(Confirm),
    /// Typing a weight; the text as typed so far.
    WeightInput(String),
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Rollback,
    Abort,
}

/// One line of feedback about the last thing the operator did.
#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub level: FlashLevel,
    pub text: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashLevel {
    Info,
    Error,
}

impl Flash {
    pub fn info(text: impl Into<String>) -> Self {
        Flash {
            level: FlashLevel::Info,
            text: text.into(),
            hint: None,
        }
    }

    pub fn error(text: impl Into<String>, hint: Option<String>) -> Self {
        Flash {
            level: FlashLevel::Error,
            text: text.into(),
            hint,
        }
    }
}

/// A failed API call, reduced to what the screen shows (the server's `error` and `hint`).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    pub hint: Option<String>,
}

impl From<&ClientError> for Failure {
    fn from(e: &ClientError) -> Self {
        match e {
            ClientError::Api { status, body } => Failure {
                error: format!("{status}: {}", body.error),
                hint: (!body.hint.is_empty()).then(|| body.hint.clone()),
            },
            other => Failure {
                error: other.to_string(),
                hint: None,
            },
        }
    }
}

/// What the background tasks report to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    Status(Status),
    StatusFailed(String),
    /// New events, oldest first (as the API lists them).
    Events(Vec<Event>),
    /// The answer to a request the operator made.
    Reply {
        request: Request,
        result: Result<Status, Failure>,
    },
}

/// The whole console state.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The control API's URL, for the title and the disconnected banner.
    pub admin_url: String,
    pub conn: Conn,
    /// The last status received (kept while disconnected).
    pub status: Option<Status>,
    pub history: History,
    /// Newest first.
    pub events: VecDeque<Event>,
    /// How many of the newest events are scrolled off the top of the log.
    pub scroll: usize,
    pub mode: Mode,
    pub flash: Option<Flash>,
    /// Wall-clock time of the latest tick or feed, for "lost for 12s" and the sparklines.
    pub now_ms: u64,
    pub should_quit: bool,
}

impl App {
    pub fn new(admin_url: impl Into<String>, now_ms: u64) -> Self {
        App {
            admin_url: admin_url.into(),
            conn: Conn::Connecting,
            status: None,
            history: History::default(),
            events: VecDeque::new(),
            scroll: 0,
            mode: Mode::Normal,
            flash: None,
            now_ms,
            should_quit: false,
        }
    }

    /// Advances the clock the view reads (sparkline bins, "lost for").
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Folds one background result into the state.
    pub fn apply(&mut self, feed: Feed, now_ms: u64) {
        self.tick(now_ms);
        match feed {
            Feed::Status(status) => self.set_status(status),
            Feed::StatusFailed(error) => {
                self.conn = match &self.conn {
                    // Keep the first moment of the outage; refresh the reason.
                    Conn::Lost { since_ms, .. } => Conn::Lost {
                        since_ms: *since_ms,
                        error,
                    },
                    _ => Conn::Lost {
                        since_ms: self.now_ms,
                        error,
                    },
                };
            }
            Feed::Events(events) => self.add_events(events),
            Feed::Reply { request, result } => match result {
                Ok(status) => {
                    self.flash = Some(Flash::info(format!(
                        "{} accepted: now {}",
                        request.label(),
                        status.state
                    )));
                    self.set_status(status);
                }
                // An error changes nothing but the flash line.
                Err(f) => {
                    self.flash = Some(Flash::error(
                        format!("{} refused: {}", request.label(), f.error),
                        f.hint,
                    ))
                }
            },
        }
    }

    fn set_status(&mut self, status: Status) {
        self.history.record(self.now_ms, &status);
        self.status = Some(status);
        self.conn = Conn::Live;
    }

    /// Adds events newer than the newest known one (a reconnect may repeat some), keeping the
    /// operator's scroll position steady when they are looking at older entries.
    pub fn add_events(&mut self, events: Vec<Event>) {
        let mut newest = self.events.front().map_or(0, |e| e.id);
        for ev in events {
            if ev.id <= newest {
                continue;
            }
            newest = ev.id;
            self.events.push_front(ev);
            if self.scroll > 0 {
                self.scroll += 1;
            }
        }
        self.events.truncate(EVENTS_MAX);
        self.scroll = self.scroll.min(self.events.len().saturating_sub(1));
    }

    /// The id to resume the event stream after.
    pub fn last_event_id(&self) -> u64 {
        self.events.front().map_or(0, |e| e.id)
    }

    pub fn is_live(&self) -> bool {
        self.conn == Conn::Live
    }
}
