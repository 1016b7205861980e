//! Key handling and feed folding as plain state changes: keys → actions → `update` → requests.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Conn, EnvRow, Failure, Feed, FlashLevel, Mode, Series, HISTORY_SPAN_MS};
use super::update::{parse_weight, Request, PAGE};
use super::Confirm;
use crate::api::{Event, EventAction, RunState, Status};

fn app() -> App {
    App::new("http://127.0.0.1:9900", 1_000)
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Types `keys` (characters; `\n` is Enter, `\x1b` is Esc) and collects the requests made.
fn type_keys(app: &mut App, keys: &str) -> Vec<Request> {
    keys.chars()
        .filter_map(|c| {
            let code = match c {
                '\n' => KeyCode::Enter,
                '\x1b' => KeyCode::Esc,
                '\x08' => KeyCode::Backspace,
                c => KeyCode::Char(c),
            };
            app.on_key(key(code))
        })
        .collect()
}

fn event(id: u64) -> Event {
    Event {
        id,
        at_ms: id * 1000,
        actor: "orchestrator".into(),
        action: EventAction::Advance,
        reason: format!("event {id}"),
        run_id: Some(1),
        state: RunState::Running,
        weight: 5.0,
        data: serde_json::Value::Null,
    }
}

#[test]
fn p_pauses_at_once() {
    let mut a = app();
    assert_eq!(type_keys(&mut a, "p"), vec![Request::Pause]);
    assert_eq!(a.mode, Mode::Normal);
    assert!(a.flash.as_ref().unwrap().text.contains("pause: sending"));
    assert_eq!(type_keys(&mut a, "r"), vec![Request::Resume]);
    assert_eq!(type_keys(&mut a, "a"), vec![Request::Approve]);
}

#[test]
fn b_then_y_rolls_back() {
    let mut a = app();
    assert_eq!(type_keys(&mut a, "b"), vec![]);
    assert_eq!(a.mode, Mode::Confirm(Confirm::Rollback));
    assert_eq!(type_keys(&mut a, "y"), vec![Request::Rollback]);
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn b_then_anything_else_cancels_and_sends_nothing() {
    for other in ["n", "\x1b", "\n", "b", "p", "q"] {
        let mut a = app();
        assert_eq!(
            type_keys(&mut a, &format!("b{other}")),
            vec![],
            "b then {other:?}"
        );
        assert_eq!(a.mode, Mode::Normal);
        assert!(
            !a.should_quit,
            "`{other:?}` in a confirmation must not quit"
        );
        assert!(a
            .flash
            .as_ref()
            .unwrap()
            .text
            .contains("rollback cancelled"));
    }
}

#[test]
fn x_then_y_aborts() {
    let mut a = app();
    assert_eq!(type_keys(&mut a, "xy"), vec![Request::Abort]);
    assert_eq!(type_keys(&mut a, "xn"), vec![]);
}

#[test]
fn w_30_enter_sets_the_weight() {
    let mut a = app();
    assert_eq!(type_keys(&mut a, "w30\n"), vec![Request::SetWeight(30.0)]);
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(type_keys(&mut a, "w12.5\n"), vec![Request::SetWeight(12.5)]);
    assert_eq!(
        type_keys(&mut a, "w45\x08\n"),
        vec![Request::SetWeight(4.0)]
    );
}

#[test]
fn w_abc_enter_is_an_error_and_sends_nothing() {
    let mut a = app();
    assert_eq!(type_keys(&mut a, "wabc\n"), vec![]);
    let flash = a.flash.clone().unwrap();
    assert_eq!(flash.level, FlashLevel::Error);
    assert!(flash.text.contains("`abc` is not a number"), "{flash:?}");
    // Still typing, so the operator can fix it; Esc leaves without sending.
    assert_eq!(a.mode, Mode::WeightInput("abc".into()));
    assert_eq!(type_keys(&mut a, "\x1b"), vec![]);
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn weights_outside_0_to_100_are_refused() {
    for bad in ["150", "-1", "", "nan", "inf", "1e3"] {
        let mut a = app();
        assert_eq!(type_keys(&mut a, &format!("w{bad}\n")), vec![], "{bad:?}");
        assert!(matches!(a.mode, Mode::WeightInput(_)));
    }
    assert_eq!(parse_weight("0"), Ok(0.0));
    assert_eq!(parse_weight(" 100% "), Ok(100.0));
}

#[test]
fn q_quits_but_only_outside_the_weight_field() {
    let mut a = app();
    type_keys(&mut a, "wq");
    assert!(!a.should_quit);
    assert_eq!(a.mode, Mode::WeightInput("q".into()));
    type_keys(&mut a, "\x1bq");
    assert!(a.should_quit);
}

#[test]
fn help_opens_on_question_mark_and_any_key_closes_it_without_acting() {
    let mut a = app();
    type_keys(&mut a, "?");
    assert_eq!(a.mode, Mode::Help);
    assert_eq!(type_keys(&mut a, "p"), vec![]);
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn scrolling_is_clamped_and_stays_put_when_new_events_arrive() {
    let mut a = app();
    a.add_events((1..=30).map(event).collect());
    a.on_key(key(KeyCode::Up));
    assert_eq!(a.scroll, 0);
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::PageDown));
    assert_eq!(a.scroll, 1 + PAGE);
    for _ in 0..5 {
        a.on_key(key(KeyCode::PageDown));
    }
    assert_eq!(a.scroll, 29);
    a.on_key(key(KeyCode::PageUp));
    assert_eq!(a.scroll, 29 - PAGE);
    // Two newer events: the same entry stays at the top of the view.
    let top = a.events[a.scroll].id;
    a.add_events(vec![event(31), event(32)]);
    assert_eq!(a.events[a.scroll].id, top);
}

#[test]
fn events_are_newest_first_without_duplicates() {
    let mut a = app();
    a.add_events(vec![event(1), event(2)]);
    a.add_events(vec![event(2), event(3)]);
    let ids: Vec<u64> = a.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![3, 2, 1]);
    assert_eq!(a.last_event_id(), 3);
}

#[test]
fn an_api_error_changes_nothing_but_the_flash() {
    let mut a = app();
    a.apply(Feed::Status(Status::default()), 2_000);
    a.add_events(vec![event(1)]);
    let before = a.clone();
    a.apply(
        Feed::Reply {
            request: Request::Rollback,
            result: Err(Failure {
                error: "409: nothing to roll back".into(),
                hint: Some("start a run first".into()),
            }),
        },
        2_000,
    );
    let flash = a.flash.take().unwrap();
    assert_eq!(flash.level, FlashLevel::Error);
    assert_eq!(flash.hint.as_deref(), Some("start a run first"));
    assert!(flash
        .text
        .contains("rollback refused: 409: nothing to roll back"));
    assert_eq!(
        a,
        App {
            flash: None,
            ..before
        }
    );
}

#[test]
fn an_accepted_request_shows_the_new_state() {
    let mut a = app();
    let paused = Status {
        state: RunState::Paused,
        ..Status::default()
    };
    a.apply(
        Feed::Reply {
            request: Request::Pause,
            result: Ok(paused.clone()),
        },
        2_000,
    );
    assert_eq!(a.status, Some(paused));
    assert_eq!(a.flash.unwrap().text, "pause accepted: now paused");
}

#[test]
fn a_lost_link_keeps_data_and_the_first_failure_time() {
    let mut a = app();
    a.apply(Feed::Status(Status::default()), 2_000);
    a.apply(Feed::StatusFailed("refused".into()), 3_000);
    a.apply(Feed::StatusFailed("timed out".into()), 9_000);
    assert_eq!(
        a.conn,
        Conn::Lost {
            since_ms: 3_000,
            error: "timed out".into()
        }
    );
    assert!(a.status.is_some());
    a.apply(Feed::Status(Status::default()), 10_000);
    assert_eq!(a.conn, Conn::Live);
}

#[test]
fn history_keeps_the_span_and_bins_the_worst_value() {
    let mut a = app();
    let mut s = Status::default();
    for i in 0..400u64 {
        s.envs.new.error_rate = if i == 399 { 0.5 } else { 0.01 };
        s.envs.new.p99_ms = i as f64;
        a.apply(Feed::Status(s.clone()), 1_000 + i * 1000);
    }
    // Only the last HISTORY_SPAN_MS (plus the sample at its edge) is kept.
    assert_eq!(a.history.len() as u64, HISTORY_SPAN_MS / 1000 + 1);
    let bins = a
        .history
        .binned(EnvRow::New, Series::ErrorRate, a.now_ms, 10);
    assert_eq!(bins.len(), 10);
    assert_eq!(bins[9], Some(0.5));
    assert!(bins[..9].iter().all(|b| *b == Some(0.01)), "{bins:?}");
    let p99 = a.history.binned(EnvRow::New, Series::P99, a.now_ms, 10);
    assert!(p99.windows(2).all(|w| w[0] < w[1]), "{p99:?}");
    assert_eq!(p99[9], Some(399.0));
}

#[test]
fn sparse_history_has_no_holes() {
    let mut a = app();
    let mut s = Status::default();
    for (i, err) in [0.1, 0.2, 0.3].into_iter().enumerate() {
        s.envs.old.error_rate = err;
        a.apply(Feed::Status(s.clone()), 10_000 + 1_000 * i as u64);
    }
    let bins = a.history.binned(EnvRow::Old, Series::ErrorRate, 12_000, 8);
    assert_eq!(bins.first(), Some(&Some(0.1)));
    assert_eq!(bins.last(), Some(&Some(0.3)));
    assert!(bins.iter().all(Option::is_some), "{bins:?}");
    assert!(bins.windows(2).all(|w| w[0] <= w[1]), "{bins:?}");
    // Before any sample there is nothing to draw.
    assert!(app()
        .history
        .binned(EnvRow::Old, Series::ErrorRate, 5_000, 4)
        .iter()
        .all(Option::is_none));
}
