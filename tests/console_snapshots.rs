//! Snapshot tests of the console: each screen is rendered from a plain `App` value into a
//! `TestBackend` and compared with the text checked in under `tests/snapshots/console_*.txt`,
//! plus assertions on the pieces that matter (substrings, highlight and grey-out styles).
//!
//! To accept an intended change of the screens: `UPDATE_SNAPSHOTS=1 cargo test --test
//! console_snapshots`, then review the diff of `tests/snapshots/`.

use std::path::PathBuf;

use cutover::api::{EnvStats, Envs, Event, GateView, RunState, Status};
use cutover::console::{update, Action, App, Conn, Failure, Feed, Mode, Request};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

/// 2026-01-01 00:00:00 UTC.
const T0: u64 = 1_767_225_600_000;

fn render(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| f.render_widget(app, f.area())).unwrap();
    terminal.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    let area = buf.area;
    (area.top()..area.bottom())
        .map(|y| {
            (area.left()..area.right())
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn text(buf: &Buffer) -> String {
    lines(buf).join("\n") + "\n"
}

/// Compares with the checked-in snapshot (or writes it with `UPDATE_SNAPSHOTS=1`).
fn assert_snapshot(name: &str, buf: &Buffer) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("console_{name}.txt"));
    let actual = text(buf);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("missing snapshot {path:?}; run with UPDATE_SNAPSHOTS=1 and review it")
    });
    if expected != actual {
        panic!(
            "screen `{name}` differs from {path:?}\n--- expected\n{expected}--- actual\n{actual}\
             (if the change is intended: UPDATE_SNAPSHOTS=1 cargo test --test console_snapshots)"
        );
    }
}

/// Position of the first occurrence of `needle` on screen, as (x, y) of its first cell.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for (y, line) in lines(buf).iter().enumerate() {
        let cells: Vec<String> = line.chars().map(String::from).collect();
        let want: Vec<String> = needle.chars().map(String::from).collect();
        if let Some(x) = cells.windows(want.len()).position(|w| w == want.as_slice()) {
            return Some((x as u16, y as u16));
        }
    }
    None
}

/// In the env table's column headed `head`, the row of scope `hot` is highlighted as a breach
/// and the row of scope `cold` is not.
fn assert_highlighted(buf: &Buffer, head: &str, hot: &str, cold: &str) {
    let (col, _) = find(buf, head).unwrap();
    let highlighted = |scope: &str| {
        let row = find(buf, &format!("│{scope} ")).unwrap().1;
        (col..col + 6).any(|x| buf[(x, row)].bg == Color::Red)
    };
    let screen = text(buf);
    assert!(
        highlighted(hot),
        "{hot} not highlighted under{head}\n{screen}"
    );
    assert!(
        !highlighted(cold),
        "{cold} wrongly highlighted under{head}\n{screen}"
    );
}

fn stats(rps: f64, err: f64, p50: f64, p99: f64, active: u64, share: f64) -> EnvStats {
    EnvStats {
        rps,
        error_rate: err,
        p50_ms: p50,
        p99_ms: p99,
        active,
        share,
        probe_success: None,
        requests: (rps * 10.0) as u64,
        shed_rate: 0.0,
    }
}

/// A word of the API's vocabulary from its wire spelling (`"ok"`, `"rollback"`, `"start"`).
fn wire<T: serde::de::DeserializeOwned>(word: &str) -> T {
    serde_json::from_value(serde_json::json!(word)).expect("a word of the API")
}

fn gate(name: &str, metric: &str, threshold: &str, value: f64, verdict: &str, n: u32) -> GateView {
    GateView {
        name: name.into(),
        metric: metric.into(),
        query: false,
        threshold: threshold.into(),
        value: Some(value),
        verdict: wire(verdict),
        failing_for: n,
        after: 2,
        on_fail: wire("rollback"),
    }
}

fn healthy_status() -> Status {
    let mut new = stats(75.0, 0.002, 21.0, 88.0, 40, 0.25);
    new.probe_success = Some(1.0);
    Status {
        state: RunState::Running,
        plan: Some("gateway-to-k8s".into()),
        plan_hash: Some("ab12".into()),
        run_id: Some(3),
        step: 2,
        steps: 4,
        step_weights: vec![5.0, 25.0, 50.0, 100.0],
        weight: 25.0,
        reason: Some("step 2 applied: hold 2m healthy".into()),
        hold_remaining_s: Some(42.0),
        envs: Envs {
            old: stats(225.0, 0.001, 25.0, 120.0, 130, 0.75),
            new,
            fallback: stats(0.0, 0.0, 0.0, 0.0, 0, 0.0),
            users: stats(300.0, 0.0012, 24.0, 110.0, 170, 1.0),
        },
        gates: vec![
            gate("new errors", "new.error_rate", "<= 0.02", 0.002, "ok", 0),
            gate(
                "new slower than old",
                "new.p99_ms",
                "<= 2.0 x old.p99_ms",
                88.0,
                "ok",
                0,
            ),
        ],
        last_event_id: 4,
        ..Status::default()
    }
}

fn event(
    id: u64,
    secs: u64,
    actor: &str,
    action: &str,
    reason: &str,
    state: RunState,
    weight: f64,
) -> Event {
    Event {
        id,
        at_ms: T0 + secs * 1000,
        actor: actor.into(),
        action: wire(action),
        reason: reason.into(),
        run_id: Some(3),
        state,
        weight,
        data: serde_json::Value::Null,
    }
}

fn base_events() -> Vec<Event> {
    vec![
        event(
            1,
            0,
            "cli",
            "start",
            "plan gateway-to-k8s started",
            RunState::Running,
            0.0,
        ),
        event(
            2,
            1,
            "orchestrator",
            "advance",
            "step 1: weight 5%",
            RunState::Running,
            5.0,
        ),
        event(
            3,
            31,
            "orchestrator",
            "advance",
            "step 1 held 30s healthy",
            RunState::Running,
            25.0,
        ),
        event(
            4,
            40,
            "console",
            "weight",
            "manual weight 25% by console",
            RunState::Running,
            25.0,
        ),
    ]
}

/// An app that has seen `statuses` one second apart, ending at `T0 + 120s`.
fn app_with(statuses: Vec<Status>) -> App {
    let end = T0 + 120_000;
    let start = end - 1000 * (statuses.len() as u64 - 1);
    let mut app = App::new("http://127.0.0.1:9900", start);
    for (i, s) in statuses.into_iter().enumerate() {
        app.apply(Feed::Status(s), start + 1000 * i as u64);
    }
    app.apply(Feed::Events(base_events()), end);
    app
}

/// 60 seconds of a healthy run, with NEW's p99 drifting up a little.
fn healthy_app() -> App {
    let statuses = (0..60)
        .map(|i| {
            let mut s = healthy_status();
            s.envs.new.p99_ms = 60.0 + f64::from(i);
            s.envs.new.p99_ms = s.envs.new.p99_ms.min(88.0);
            s
        })
        .collect();
    app_with(statuses)
}

/// 30 seconds healthy, then 5 of `then`.
fn healthy_then(then: fn() -> Status) -> App {
    let mut statuses: Vec<Status> = (0..30).map(|_| healthy_status()).collect();
    statuses.extend((0..5).map(|_| then()));
    app_with(statuses)
}

fn paused_status() -> Status {
    let mut s = healthy_status();
    s.state = RunState::Paused;
    s.hold_remaining_s = None;
    s.envs.new.error_rate = 0.041;
    s.reason = Some("gate `new errors` failing: new.error_rate 4.10% > 2.00% (2 of 2)".into());
    s.gates[0] = GateView {
        on_fail: wire("pause"),
        ..gate(
            "new errors",
            "new.error_rate",
            "<= 0.02",
            0.041,
            "failing",
            2,
        )
    };
    s
}

#[test]
fn running_and_healthy() {
    let app = healthy_app();
    let buf = render(&app, 100, 30);
    let screen = text(&buf);
    for want in [
        "gateway-to-k8s",
        "● RUNNING",
        "step 2 of 4",
        "hold 42s left",
        "NEW  25% ",
        " 75% OLD",
        "reason: step 2 applied: hold 2m healthy",
        "new errors",
        "ok",
        "00:00:40 console",
        "q quit",
    ] {
        assert!(screen.contains(want), "missing `{want}` in\n{screen}");
    }
    // The state is green, and nothing is flagged as a breach.
    let (x, y) = find(&buf, "● RUNNING").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Green);
    assert!(buf.content().iter().all(|c| c.bg != Color::Red));
    // Newest event first.
    let newest = find(&buf, "00:00:40").unwrap();
    let oldest = find(&buf, "00:00:00").unwrap();
    assert!(newest.1 < oldest.1);
    assert_snapshot("running_healthy", &buf);
}

#[test]
fn paused_by_a_gate_shows_its_reason_and_highlights_the_value() {
    let app = healthy_then(paused_status);
    let buf = render(&app, 100, 30);
    let screen = text(&buf);
    assert!(screen.contains("● PAUSED"), "{screen}");
    assert!(screen.contains("press r to resume"), "{screen}");
    assert!(
        screen.contains("reason: gate `new errors` failing: new.error_rate 4.10% > 2.00% (2 of 2)"),
        "{screen}"
    );
    assert!(screen.contains("failing 2 of 2"), "{screen}");
    let (x, y) = find(&buf, "● PAUSED").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    // NEW's error rate in the env table is highlighted; OLD's is not.
    assert_highlighted(&buf, " err ", "new", "old");
    assert_snapshot("paused_by_gate", &buf);
}

/// A `weight = 0` step copying 25 % of OLD's users to NEW, paused by a gate on the copies.
fn mirror_paused_status() -> Status {
    let mut s = paused_status();
    s.weight = 0.0;
    s.envs.new = EnvStats::default();
    s.mirror.percent = 25.0;
    s.mirror.compare = true;
    s.mirror.stats = stats(310.0, 0.0, 40.0, 2400.0, 0, 0.0);
    s.mirror.dropped = 12;
    s.mirror.skipped = 3;
    s.mirror.compared = 900;
    s.mirror.mismatches = 2;
    s.reason = Some("gate `mirror p99` failing: mirror.p99_ms 2400ms > 135ms (2 of 2)".into());
    s.gates[0] = GateView {
        on_fail: wire("pause"),
        ..gate(
            "mirror p99",
            "mirror.p99_ms",
            "<= 1.5 x old",
            2400.0,
            "failing",
            2,
        )
    };
    s
}

#[test]
fn shadow_traffic_has_a_row_of_its_own_while_users_are_copied() {
    let app = healthy_then(mirror_paused_status);
    let buf = render(&app, 100, 30);
    let screen = text(&buf);
    for want in [
        "shadow 25.0% (12 dropped, 3 not copied)",
        "2 of 900 compared differed",
        "│mirror ",
    ] {
        assert!(screen.contains(want), "missing `{want}` in\n{screen}");
    }
    // The gate judges the mirror's p99: that cell is highlighted, NEW's is not.
    assert_highlighted(&buf, " p99 ", "mirror", "new");
    assert_snapshot("mirror_paused", &buf);

    // With no shadow traffic the table keeps its four rows.
    let quiet = render(&app_with(vec![healthy_status()]), 100, 30);
    assert!(find(&quiet, "│mirror ").is_none(), "{}", text(&quiet));
}

#[test]
fn rolling_back_is_red() {
    let mut s = paused_status();
    s.state = RunState::RollingBack;
    s.weight = 12.5;
    s.gates[0].on_fail = wire("rollback");
    s.reason = Some("gate `new errors` failing 2 of 2: rolling back over 30s".into());
    let app = app_with(vec![healthy_status(), s]);
    let buf = render(&app, 100, 30);
    let screen = text(&buf);
    assert!(screen.contains("● ROLLING_BACK"), "{screen}");
    assert!(screen.contains("NEW 12.5% "), "{screen}");
    assert!(screen.contains("rolling back over 30s"), "{screen}");
    let (x, y) = find(&buf, "● ROLLING_BACK").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Red);
    assert_snapshot("rolling_back", &buf);
}

#[test]
fn awaiting_approval_asks_for_a() {
    let mut s = healthy_status();
    s.state = RunState::AwaitingApproval;
    s.step = 3;
    s.weight = 50.0;
    s.hold_remaining_s = None;
    s.reason = Some("step 3 held 2m healthy; approval required".into());
    let app = app_with(vec![s]);
    let buf = render(&app, 100, 30);
    let screen = text(&buf);
    assert!(screen.contains("● AWAITING_APPROVAL"), "{screen}");
    assert!(screen.contains("awaiting approval — press a"), "{screen}");
    assert!(screen.contains("step 3 of 4"), "{screen}");
    let (x, y) = find(&buf, "awaiting approval — press a").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    assert_snapshot("awaiting_approval", &buf);
}

#[test]
fn disconnected_shows_a_banner_and_greys_the_last_data() {
    let mut app = healthy_app();
    let lost_at = app.now_ms + 1000;
    app.apply(
        Feed::StatusFailed("tcp connect error: Connection refused (os error 111)".into()),
        lost_at,
    );
    app.apply(
        Feed::StatusFailed("tcp connect error: Connection refused (os error 111)".into()),
        lost_at + 12_000,
    );
    assert!(matches!(app.conn, Conn::Lost { since_ms, .. } if since_ms == lost_at));
    let buf = render(&app, 100, 30);
    let screen = text(&buf);
    assert!(
        screen.contains(
            "connection to http://127.0.0.1:9900 lost: tcp connect error: Connection refused (os error 111) —"
        ),
        "{screen}"
    );
    assert!(screen.contains("retrying (12s)"), "{screen}");
    // The last known numbers are still there, but grey.
    assert!(screen.contains("gateway-to-k8s"), "{screen}");
    let (x, y) = find(&buf, "● RUNNING").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::DarkGray);
    let (x, y) = find(&buf, "connection to").unwrap();
    assert_eq!(buf[(x, y)].bg, Color::Red);
    assert_snapshot("disconnected", &buf);
}

#[test]
fn fits_80_by_24() {
    let app = healthy_app();
    let buf = render(&app, 80, 24);
    let screen = text(&buf);
    for want in [
        "● RUNNING",
        "step 2 of 4",
        "hold 42s left",
        "NEW  25%",
        "75% OLD",
        "reason:",
        "│old ",
        "│new ",
        "│fallback",
        "│users",
        "new errors",
        "new slower than old",
        "00:00:40 console",
        "q quit",
    ] {
        assert!(
            screen.contains(want),
            "missing `{want}` at 80x24:\n{screen}"
        );
    }
    assert_snapshot("80x24", &buf);
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut app = healthy_app();
    for (w, h) in [(1, 1), (20, 5), (40, 10), (80, 12), (200, 60)] {
        render(&app, w, h);
    }
    app.mode = Mode::Help;
    render(&app, 30, 8);
}

#[test]
fn confirm_popup_names_the_consequence() {
    let mut app = healthy_app();
    assert_eq!(update(&mut app, Action::AskRollback), None);
    let buf = render(&app, 80, 24);
    let screen = text(&buf);
    assert!(screen.contains("roll back?"), "{screen}");
    assert!(
        screen.contains("Roll back from 25% on NEW to 0%"),
        "{screen}"
    );
    assert!(screen.contains("any other key"), "{screen}");
    assert_snapshot("confirm_rollback", &buf);
}

#[test]
fn weight_popup_shows_what_is_typed_and_the_validation_error() {
    let mut app = healthy_app();
    for a in [
        Action::AskWeight,
        Action::Input('a'),
        Action::Input('b'),
        Action::Submit,
    ] {
        assert_eq!(update(&mut app, a), None);
    }
    let buf = render(&app, 80, 24);
    let screen = text(&buf);
    assert!(screen.contains("> ab█"), "{screen}");
    assert!(screen.contains("✗ `ab` is not a number"), "{screen}");
    assert_snapshot("weight_input_error", &buf);
}

#[test]
fn an_api_error_is_shown_with_its_hint() {
    let mut app = healthy_app();
    let before = app.clone();
    assert_eq!(update(&mut app, Action::Approve), Some(Request::Approve));
    app.apply(
        Feed::Reply {
            request: Request::Approve,
            result: Err(Failure {
                error: "409: approve is not allowed while running".into(),
                hint: Some("approve works only in awaiting_approval".into()),
            }),
        },
        before.now_ms,
    );
    // Nothing but the flash line changed.
    assert_eq!(app.status, before.status);
    assert_eq!(app.events, before.events);
    assert_eq!(app.mode, Mode::Normal);
    let buf = render(&app, 100, 30);
    let screen = text(&buf);
    // Error and hint, wrapped over two rows at this width, right above the footer.
    let rows = lines(&buf);
    let n = rows.len();
    assert_eq!(
        rows[n - 3],
        "✗ approve refused: 409: approve is not allowed while running — hint: approve works only in"
    );
    assert_eq!(rows[n - 2], "awaiting_approval");
    assert!(rows[n - 1].contains("q quit"));
    assert!(screen.contains("00:00:40 console"), "{screen}");
}

#[test]
fn help_overlay_lists_every_key() {
    let mut app = healthy_app();
    update(&mut app, Action::Help);
    let buf = render(&app, 80, 24);
    let screen = text(&buf);
    for (keys, what) in cutover::console::keys::BINDINGS {
        assert!(
            screen.contains(keys.trim()),
            "help misses `{keys}`\n{screen}"
        );
        assert!(screen.contains(what), "help misses `{what}`\n{screen}");
    }
    assert_snapshot("help", &buf);
}

#[test]
fn before_the_first_status_and_with_no_run() {
    let mut app = App::new("http://127.0.0.1:9900", T0);
    let screen = text(&render(&app, 80, 24));
    assert!(
        screen.contains("connecting to http://127.0.0.1:9900…"),
        "{screen}"
    );
    assert!(!screen.contains("lost"), "{screen}");
    app.apply(Feed::Status(Status::default()), T0 + 500);
    let screen = text(&render(&app, 80, 24));
    assert!(screen.contains("no plan  ● IDLE"), "{screen}");
    assert!(screen.contains("no active run"), "{screen}");
    assert!(screen.contains("NEW   0%"), "{screen}");
    assert!(
        screen.contains("no gates: steps advance on time alone"),
        "{screen}"
    );
}
