//! The analyzer through its public API: gate rules over synthetic windows, the Prometheus text
//! parsed back by a real parser, and probes against a real HTTP server on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::analyzer::{run_probes, Evaluation, GateReport, GateTracker, Health, ProbeTarget};
use cutover::api::{GateVerdict, GateView};
use cutover::config::EnvConfig;
use cutover::metrics::{
    render_prometheus, GateGauge, MetricRef, Metrics, Outcome, RunGauges, Scope, ScopeWindow,
    WindowSnapshot,
};
use cutover::orchestrator::RunState;
use cutover::plan::model::{Analysis, Condition, Gate, OnFail, Plan, Rollback};
use cutover::router::{Env, Weight};

/// Judges at 50 %: every env expected to carry traffic.
fn evaluate(p: &Plan, w: &WindowSnapshot, t: &mut GateTracker) -> Evaluation {
    cutover::analyzer::evaluate(p, w, Weight::from_percent(50.0), t)
}

fn metric(s: &str) -> MetricRef {
    MetricRef::parse(s).unwrap()
}

fn gate(name: &str, m: &str, condition: Condition, after: u32, on_fail: OnFail) -> Gate {
    Gate {
        name: name.into(),
        metric: metric(m),
        condition,
        after,
        on_fail,
    }
}

fn plan(gates: Vec<Gate>) -> Plan {
    Plan {
        name: "t".into(),
        salt: "t".into(),
        analysis: Analysis {
            interval: Duration::from_secs(1),
            window: Duration::from_secs(10),
            min_requests: 50,
        },
        steps: vec![],
        gates,
        rollback: Rollback::default(),
        queries: Vec::new(),
    }
}

/// A window where each listed scope had `requests` with `errors`.
fn snap(scopes: &[(Scope, u64, u64)]) -> WindowSnapshot {
    let mut w = WindowSnapshot {
        window: Duration::from_secs(10),
        ..Default::default()
    };
    for &(s, requests, errors) in scopes {
        w.scopes[s.index()] = ScopeWindow {
            requests,
            errors,
            rps: requests as f64 / 10.0,
            error_rate: errors as f64 / requests.max(1) as f64,
            ..Default::default()
        };
    }
    w
}

fn view<'a>(views: &'a [GateReport], name: &str) -> &'a GateReport {
    views.iter().find(|v| v.name == name).unwrap()
}

#[test]
fn an_absolute_max_gate_fails_with_its_numbers() {
    let p = plan(vec![gate(
        "new errors",
        "new.error_rate",
        Condition::Max(0.02),
        1,
        OnFail::Rollback,
    )]);
    let mut t = GateTracker::new();
    let e = evaluate(&p, &snap(&[(Scope::New, 100, 5)]), &mut t);
    let Health::Rollback { reason, data } = &e.observation.health else {
        panic!("{:?}", e.observation)
    };
    assert_eq!(
        reason,
        "gate \"new errors\" failed 1x: new.error_rate = 0.050 > max 0.020 over 10s"
    );
    assert_eq!(data["gate"], "new errors");
    assert_eq!(data["metric"], "new.error_rate");
    assert_eq!(data["value"], 0.05);
    assert_eq!(data["threshold"], 0.02);
    assert_eq!(data["window_s"], 10.0);
    assert_eq!(data["requests"], 100);
    let v = view(&e.gates, "new errors");
    assert_eq!(
        (v.verdict.as_str(), v.failing_for, v.after),
        ("failing", 1, 1)
    );
    assert_eq!(
        (v.threshold().as_str(), v.on_fail.as_str()),
        ("<= 0.020", "rollback")
    );

    let e = evaluate(&p, &snap(&[(Scope::New, 100, 1)]), &mut t);
    assert_eq!(e.observation.health, Health::Healthy);
    assert_eq!(view(&e.gates, "new errors").verdict, GateVerdict::Ok);
    assert_eq!(t.streak("new errors"), 0);
}

#[test]
fn a_min_gate_on_probes_judges_on_probe_counts() {
    let p = plan(vec![gate(
        "probes",
        "users.probe_success",
        Condition::Min(0.9),
        1,
        OnFail::Pause,
    )]);
    let mut t = GateTracker::new();
    let mut w = snap(&[]);
    let users = &mut w.scopes[Scope::Users.index()];
    (users.probes, users.probe_success) = (10, Some(0.8));
    let e = evaluate(&p, &w, &mut t);
    match &e.observation.health {
        Health::Pause { reason, .. } => {
            assert_eq!(
                reason,
                "gate \"probes\" failed 1x: users.probe_success = 0.80 < min 0.90 over 10s"
            )
        }
        h => panic!("{h:?}"),
    }
    w.scopes[Scope::Users.index()].probes = 2;
    let e = evaluate(&p, &w, &mut t);
    assert_eq!(
        e.observation.health,
        Health::NotJudged {
            reason: "gate \"probes\": not enough probes on users: 2 of 3 probes in 10s".into()
        }
    );
    (
        w.scopes[Scope::Users.index()].probes,
        w.scopes[Scope::Users.index()].probe_success,
    ) = (10, Some(1.0));
    assert_eq!(evaluate(&p, &w, &mut t).observation.health, Health::Healthy);
}

#[test]
fn a_ratio_gate_compares_new_with_old() {
    let cond = Condition::RatioOf {
        of: metric("old.p99_ms"),
        ratio: 2.0,
        confidence: None,
    };
    let p = plan(vec![gate("slower", "new.p99_ms", cond, 1, OnFail::Pause)]);
    let mut t = GateTracker::new();
    let mut w = snap(&[(Scope::New, 100, 0), (Scope::Old, 900, 0)]);
    w.scopes[Scope::New.index()].p99_ms = 250.0;
    w.scopes[Scope::Old.index()].p99_ms = 100.0;
    match evaluate(&p, &w, &mut t).observation.health {
        Health::Pause { reason, data } => {
            assert_eq!(
                reason,
                "gate \"slower\" failed 1x: new.p99_ms = 250 > 2.0 x old.p99_ms (100) = 200 over 10s"
            );
            assert_eq!(
                (data["threshold"].as_f64(), data["of_value"].as_f64()),
                (Some(200.0), Some(100.0))
            );
        }
        h => panic!("{h:?}"),
    }
    w.scopes[Scope::New.index()].p99_ms = 150.0;
    assert_eq!(evaluate(&p, &w, &mut t).observation.health, Health::Healthy);
    // Both sides must have enough traffic.
    w.scopes[Scope::Old.index()].requests = 20;
    match evaluate(&p, &w, &mut t).observation.health {
        Health::NotJudged { reason } => assert!(
            reason.contains("not enough traffic on old: 20 of 50"),
            "{reason}"
        ),
        h => panic!("{h:?}"),
    }
}

#[test]
fn a_statistical_ratio_gate_ignores_noise_and_catches_regressions() {
    let gate_with = |confidence| {
        let cond = Condition::RatioOf {
            of: metric("old.error_rate"),
            ratio: 1.0,
            confidence,
        };
        plan(vec![gate(
            "errors vs old",
            "new.error_rate",
            cond,
            1,
            OnFail::Rollback,
        )])
    };
    let noisy = snap(&[(Scope::New, 100, 2), (Scope::Old, 100, 1)]);
    // The plain ratio fails on one extra error...
    let e = evaluate(&gate_with(None), &noisy, &mut GateTracker::new());
    assert!(
        matches!(e.observation.health, Health::Rollback { .. }),
        "{:?}",
        e.observation
    );
    // ...the test at 95 % does not.
    let e = evaluate(&gate_with(Some(0.95)), &noisy, &mut GateTracker::new());
    assert_eq!(e.observation.health, Health::Healthy);
    assert_eq!(view(&e.gates, "errors vs old").verdict, GateVerdict::Ok);

    let real = snap(&[(Scope::New, 1000, 30), (Scope::Old, 1000, 5)]);
    let e = evaluate(&gate_with(Some(0.95)), &real, &mut GateTracker::new());
    match e.observation.health {
        Health::Rollback { reason, data } => {
            assert!(reason.starts_with("gate \"errors vs old\" failed 1x: new.error_rate = 0.030 > 1.0 x old.error_rate (0.0050) = 0.0050, significant at 95% confidence (z = "), "{reason}");
            assert!(data["p_value"].as_f64().unwrap() < 0.05);
            assert_eq!(data["confidence"], 0.95);
        }
        h => panic!("{h:?}"),
    }
}

#[test]
fn a_gate_acts_only_after_consecutive_failures() {
    let p = plan(vec![gate(
        "p99",
        "users.p99_ms",
        Condition::Max(500.0),
        3,
        OnFail::Pause,
    )]);
    let mut t = GateTracker::new();
    let mut bad = snap(&[(Scope::Users, 100, 0)]);
    bad.scopes[Scope::Users.index()].p99_ms = 900.0;
    let good = snap(&[(Scope::Users, 100, 0)]);
    for n in 1..=2 {
        let e = evaluate(&p, &bad, &mut t);
        match &e.observation.health {
            Health::NotJudged { reason } => assert!(
                reason.contains(&format!("failing {n} of 3 before it acts")),
                "{reason}"
            ),
            h => panic!("{h:?}"),
        }
        assert_eq!(e.gates[0].failing_for, n);
    }
    match evaluate(&p, &bad, &mut t).observation.health {
        Health::Pause { reason, .. } => {
            assert!(reason.starts_with("gate \"p99\" failed 3x:"), "{reason}")
        }
        h => panic!("{h:?}"),
    }
    assert_eq!(evaluate(&p, &good, &mut t).gates[0].failing_for, 0);
    assert_eq!(evaluate(&p, &bad, &mut t).gates[0].failing_for, 1);
}

#[test]
fn too_little_traffic_neither_judges_nor_resets() {
    let p = plan(vec![gate(
        "new errors",
        "new.error_rate",
        Condition::Max(0.02),
        2,
        OnFail::Rollback,
    )]);
    let mut t = GateTracker::new();
    let failing = snap(&[(Scope::New, 100, 10)]);
    let quiet = snap(&[(Scope::New, 12, 12)]);
    evaluate(&p, &failing, &mut t);
    let e = evaluate(&p, &quiet, &mut t);
    assert_eq!(
        e.observation.health,
        Health::NotJudged {
            reason: "gate \"new errors\": not enough traffic on new: 12 of 50 requests in 10s"
                .into()
        }
    );
    let v = &e.gates[0];
    assert_eq!(
        (v.verdict.as_str(), v.failing_for, v.value),
        ("not_enough_traffic", 1, Some(1.0))
    );
    // The earlier failure still counts: the second failing evaluation acts.
    assert!(matches!(
        evaluate(&p, &failing, &mut t).observation.health,
        Health::Rollback { .. }
    ));
}

#[test]
fn rollback_wins_over_pause() {
    let p = plan(vec![
        gate("slow", "new.p50_ms", Condition::Max(10.0), 1, OnFail::Pause),
        gate(
            "errors",
            "new.error_rate",
            Condition::Max(0.01),
            1,
            OnFail::Rollback,
        ),
    ]);
    let mut w = snap(&[(Scope::New, 100, 50)]);
    w.scopes[Scope::New.index()].p50_ms = 80.0;
    match evaluate(&p, &w, &mut GateTracker::new()).observation.health {
        Health::Rollback { reason, data } => {
            assert!(reason.starts_with("gate \"errors\""), "{reason}");
            assert_eq!(data["on_fail"], "rollback");
        }
        h => panic!("{h:?}"),
    }
}

#[test]
fn a_failing_gate_on_old_marks_old_degraded() {
    let p = plan(vec![
        gate(
            "old errors",
            "old.error_rate",
            Condition::Max(0.05),
            3,
            OnFail::Pause,
        ),
        gate(
            "new errors",
            "new.error_rate",
            Condition::Max(0.05),
            1,
            OnFail::Pause,
        ),
    ]);
    let mut t = GateTracker::new();
    let e = evaluate(
        &p,
        &snap(&[(Scope::Old, 200, 20), (Scope::New, 100, 0)]),
        &mut t,
    );
    assert_eq!(
        e.observation.old_degraded.as_deref(),
        Some("gate \"old errors\" failing: old.error_rate = 0.10 > max 0.050 over 10s")
    );
    // Failing 1 of 3: no action yet, and the step must not advance either.
    assert!(matches!(e.observation.health, Health::NotJudged { .. }));
    // A failing NEW gate does not make OLD degraded.
    let e = evaluate(
        &p,
        &snap(&[(Scope::Old, 200, 0), (Scope::New, 100, 50)]),
        &mut t,
    );
    assert_eq!(e.observation.old_degraded, None);
    assert!(matches!(e.observation.health, Health::Pause { .. }));
}

#[test]
fn displaced_load_is_gateable_and_named_in_reasons() {
    let p = plan(vec![
        gate(
            "new displaced",
            "new.displaced_rate",
            Condition::Max(0.05),
            1,
            OnFail::Rollback,
        ),
        gate(
            "fallback share",
            "fallback.share",
            Condition::Max(0.10),
            1,
            OnFail::Pause,
        ),
    ]);
    let mut w = snap(&[(Scope::New, 100, 10), (Scope::Old, 900, 0)]);
    let n = &mut w.scopes[Scope::New.index()];
    (
        n.displaced_to_fallback,
        n.displaced_failed,
        n.displaced_rate,
    ) = (8, 2, 0.10);
    // FALLBACK saw no requests at all: its share gate judges (0 of 1000) rather than waiting.
    let e = evaluate(&p, &w, &mut GateTracker::new());
    assert_eq!(view(&e.gates, "fallback share").verdict, GateVerdict::Ok);
    match e.observation.health {
        Health::Rollback { reason, data } => {
            assert_eq!(
                reason,
                "gate \"new displaced\" failed 1x: new.displaced_rate = 0.10 > max 0.050 over 10s; \
                 displaced from new: 8 to fallback, 2 failed (10% of its requests)"
            );
            assert_eq!(data["displaced"]["new"]["to_fallback"], 8);
        }
        h => panic!("{h:?}"),
    }
}

#[test]
fn the_tracker_persists_and_forgets_removed_gates() {
    let p = plan(vec![gate(
        "a",
        "new.error_rate",
        Condition::Max(0.0),
        5,
        OnFail::Pause,
    )]);
    let mut t = GateTracker::new();
    evaluate(&p, &snap(&[(Scope::New, 100, 1)]), &mut t);
    let json = serde_json::to_string(&t).unwrap();
    let mut back: GateTracker = serde_json::from_str(&json).unwrap();
    assert_eq!(back.streak("a"), 1);
    let e = evaluate(&plan(vec![]), &snap(&[]), &mut back);
    assert_eq!(e.observation.health, Health::Healthy);
    assert_eq!(back.streak("a"), 0);
}

#[test]
fn prometheus_text_parses_and_holds_the_numbers() {
    let m = Metrics::new();
    let now = Instant::now();
    for ms in [3, 7, 20, 2000, 20_000] {
        m.record(Scope::New, Outcome::Ok, Duration::from_millis(ms), now);
    }
    m.record(Scope::New, Outcome::Timeout, Duration::from_secs(1), now);
    m.record(Scope::Users, Outcome::Shed, Duration::ZERO, now);
    m.record_displaced(Env::New, true, now);
    m.record_displaced(Env::New, false, now);
    m.record_retry(now);
    m.record_budget_exhausted(now);
    m.record_budget_exhausted(now);
    m.record_probe(Env::Old, true, now);
    m.record_probe(Env::New, false, now);
    let _tunnel = m.active(Scope::Old);
    let run = RunGauges {
        state: RunState::Paused,
        step: 2,
        weight_percent: 12.5,
        gates: vec![
            GateGauge::from_view(&GateView {
                name: "new errors".into(),
                verdict: GateVerdict::Failing,
                value: Some(0.25),
                ..Default::default()
            }),
            GateGauge::from_view(&GateView {
                name: "quiet".into(),
                verdict: GateVerdict::NotEnoughTraffic,
                ..Default::default()
            }),
        ],
    };
    let text = render_prometheus(&m, &run);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            v => panic!("{v:?}"),
        }
    };
    assert_eq!(get("cutover_requests_total", &[("env", "new")]), 6.0);
    assert_eq!(get("cutover_requests_total", &[("env", "old")]), 0.0);
    assert_eq!(
        get(
            "cutover_errors_total",
            &[("env", "new"), ("kind", "timeout")]
        ),
        1.0
    );
    assert_eq!(get("cutover_user_errors_total", &[("kind", "shed")]), 1.0);
    assert_eq!(get("cutover_user_shed_total", &[]), 1.0);
    assert_eq!(get("cutover_active_connections", &[("env", "old")]), 1.0);
    assert_eq!(get("cutover_fallback_retries_total", &[]), 1.0);
    assert_eq!(get("cutover_retry_budget_exhausted_total", &[]), 2.0);
    assert_eq!(
        get(
            "cutover_displaced_total",
            &[("env", "new"), ("to", "fallback")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "cutover_displaced_total",
            &[("env", "new"), ("to", "failed")]
        ),
        1.0
    );
    assert_eq!(get("cutover_probe_up", &[("env", "old")]), 1.0);
    assert_eq!(get("cutover_probe_up", &[("env", "new")]), 0.0);
    assert!(
        !text.contains("cutover_probe_up{env=\"fallback\"}"),
        "never probed: absent"
    );
    assert_eq!(
        get(
            "cutover_probes_total",
            &[("env", "new"), ("result", "failed")]
        ),
        1.0
    );
    assert_eq!(get("cutover_gate_ok", &[("gate", "new errors")]), 0.0);
    assert_eq!(get("cutover_gate_ok", &[("gate", "quiet")]), 1.0);
    assert_eq!(get("cutover_gate_value", &[("gate", "new errors")]), 0.25);
    assert_eq!(get("cutover_run_state", &[("state", "paused")]), 1.0);
    assert_eq!(get("cutover_run_state", &[("state", "running")]), 0.0);
    assert_eq!(get("cutover_run_step", &[]), 2.0);
    assert_eq!(get("cutover_weight_percent", &[]), 12.5);
    assert_eq!(
        get("cutover_request_duration_seconds_count", &[("env", "new")]),
        6.0
    );
    let sum = get("cutover_request_duration_seconds_sum", &[("env", "new")]);
    assert!((sum - 23.03).abs() < 1e-6, "{sum}");

    let hist = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "cutover_request_duration_seconds" && s.labels.get("env") == Some("new")
        })
        .expect("histogram");
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("{:?}", hist.value)
    };
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
    assert_eq!(
        (at(0.005), at(0.01), at(0.025), at(0.5)),
        (1.0, 2.0, 3.0, 3.0)
    );
    assert_eq!(
        (at(1.0), at(2.5), at(10.0), at(f64::INFINITY)),
        (4.0, 5.0, 5.0, 6.0)
    );

    // Every metric family has its HELP and TYPE.
    for family in [
        "cutover_requests_total",
        "cutover_request_duration_seconds",
        "cutover_gate_ok",
        "cutover_run_state",
    ] {
        assert!(scrape.docs.contains_key(family), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
}

/// A server answering 200 to its first request and 500 to every later one.
async fn flaky_server() -> std::net::SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let status = if n == 0 { 200 } else { 500 };
                        hyper::Response::builder()
                            .status(status)
                            .body(http_body_util::Empty::<bytes::Bytes>::new())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn probes_record_real_answers_and_stop_on_shutdown() {
    let server = flaky_server().await;
    // A port that was just free: connections to it are refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let metrics = Arc::new(Metrics::new());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let targets = vec![
        ProbeTarget {
            env: Env::New,
            config: EnvConfig::plain(&[server]),
            path: "/healthz".into(),
            hosts_file: None,
        },
        ProbeTarget {
            env: Env::Old,
            config: EnvConfig::plain(&[closed]),
            path: "healthz".into(),
            hosts_file: None,
        },
    ];
    let task = tokio::spawn(run_probes(
        targets,
        Duration::from_millis(20),
        Duration::from_secs(2),
        Arc::clone(&metrics),
        rx,
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        let w = metrics.window(Instant::now(), Duration::from_secs(60));
        if w.scope(Scope::New).probes >= 3 && w.scope(Scope::Old).probes >= 2 {
            break w;
        }
        assert!(Instant::now() < deadline, "probes did not arrive: {w:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let new = w.scope(Scope::New);
    assert_eq!(
        new.probe_success,
        Some(1.0 / new.probes as f64),
        "one 200, then 500s"
    );
    assert_eq!(w.scope(Scope::Old).probe_success, Some(0.0));
    assert_eq!(w.scope(Scope::Fallback).probe_success, None);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("probe task stops on shutdown")
        .unwrap();
}

/// Issue 19 §1: a scope the plan left empty passes (saying so); one that must carry traffic
/// still needs `min_requests`.
#[test]
fn a_scope_empty_by_design_passes_and_one_that_must_carry_traffic_waits() {
    let p = plan(vec![
        gate(
            "fallback errors",
            "fallback.error_rate",
            Condition::Max(0.02),
            1,
            OnFail::Rollback,
        ),
        gate(
            "old errors",
            "old.error_rate",
            Condition::Max(0.02),
            1,
            OnFail::Pause,
        ),
        gate(
            "new slower",
            "new.p99_ms",
            Condition::RatioOf {
                of: metric("old.p99_ms"),
                ratio: 1.5,
                confidence: None,
            },
            1,
            OnFail::Pause,
        ),
        gate(
            "users errors",
            "users.error_rate",
            Condition::Max(0.02),
            1,
            OnFail::Rollback,
        ),
    ]);
    let at = |w: &WindowSnapshot, pct: f64| {
        cutover::analyzer::evaluate(&p, w, Weight::from_percent(pct), &mut GateTracker::new())
    };
    // 100 %: OLD has no users, FALLBACK nothing displaced: healthy, and the notes say why.
    let full = snap(&[
        (Scope::New, 500, 0),
        (Scope::Users, 500, 0),
        (Scope::Old, 3, 0),
    ]);
    let e = at(&full, 100.0);
    assert_eq!(e.observation.health, Health::Healthy, "{e:?}");
    let notes = e.observation.notes.join(" | ");
    assert!(notes.contains("\"fallback errors\" passes without traffic by design: nothing was displaced to fallback"), "{notes}");
    assert!(
        notes.contains(
            "\"old errors\" passes without traffic by design: old has no users at weight 100%"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("\"new slower\" passes without traffic by design"),
        "{notes}"
    );
    // 90 %: OLD must carry traffic, so the same window cannot judge it.
    match at(&full, 90.0).observation.health {
        Health::NotJudged { reason } => {
            assert!(
                reason.contains("not enough traffic on old: 3 of 50"),
                "{reason}"
            );
            assert!(!reason.contains("fallback"), "{reason}");
        }
        h => panic!("{h:?}"),
    }
    // Something displaced to FALLBACK: its few requests are now evidence it lacks.
    let mut displaced = full.clone();
    displaced.scopes[Scope::New.index()].displaced_to_fallback = 4;
    displaced.scopes[Scope::Fallback.index()].requests = 4;
    match at(&displaced, 100.0).observation.health {
        Health::NotJudged { reason } => {
            assert!(
                reason.contains("not enough traffic on fallback: 4 of 50"),
                "{reason}"
            )
        }
        h => panic!("{h:?}"),
    }
    // `users` is never empty by design.
    let quiet = snap(&[(Scope::New, 500, 0), (Scope::Users, 10, 0)]);
    assert!(matches!(
        at(&quiet, 100.0).observation.health,
        Health::NotJudged { .. }
    ));
    // NEW at 0 % has no users: its gates pass; above 0 % they need traffic.
    let p_new = plan(vec![gate(
        "new errors",
        "new.error_rate",
        Condition::Max(0.02),
        1,
        OnFail::Rollback,
    )]);
    let none = snap(&[(Scope::Old, 500, 0)]);
    let zero = cutover::analyzer::evaluate(&p_new, &none, Weight::ZERO, &mut GateTracker::new());
    assert_eq!(zero.observation.health, Health::Healthy);
    let one = cutover::analyzer::evaluate(
        &p_new,
        &none,
        Weight::from_percent(1.0),
        &mut GateTracker::new(),
    );
    assert!(matches!(one.observation.health, Health::NotJudged { .. }));
}

/// Issue 19 §2: a herd is demand, not a fault of NEW. With admission shedding on every env
/// that carries users, a rollback gate on users/OLD/FALLBACK holds the weight (pause, "demand
/// above capacity"); a gate on NEW itself still rolls back.
#[test]
fn a_herd_holds_the_weight_and_only_evidence_against_new_rolls_back() {
    let users_gate = gate(
        "users errors",
        "users.error_rate",
        Condition::Max(0.02),
        1,
        OnFail::Rollback,
    );
    let new_gate = gate(
        "new errors",
        "new.error_rate",
        Condition::Max(0.02),
        1,
        OnFail::Rollback,
    );
    let mut herd = snap(&[
        (Scope::Old, 500, 0),
        (Scope::New, 500, 0),
        (Scope::Users, 1000, 100),
    ]);
    for s in [Scope::Old, Scope::New] {
        herd.scopes[s.index()].shed = 50;
        herd.scopes[s.index()].shed_rate = 5.0;
    }
    let at = |p: &Plan, w: &WindowSnapshot| {
        cutover::analyzer::evaluate(p, w, Weight::from_percent(25.0), &mut GateTracker::new())
            .observation
            .health
    };
    let p = plan(vec![users_gate.clone(), new_gate.clone()]);
    match at(&p, &herd) {
        Health::Pause { reason, data } => {
            assert!(
                reason.starts_with(
                    "demand above capacity: admission control is shedding on old 5.00/s, new 5.00/s"
                ),
                "{reason}"
            );
            assert!(reason.contains("gate \"users errors\" failed"), "{reason}");
            assert!(data["held_not_rolled_back"].is_string(), "{data}");
        }
        h => panic!("{h:?}"),
    }
    // OLD alone at its limit: rolling users back onto it would make it worse; held too.
    let mut old_only = herd.clone();
    old_only.scopes[Scope::New.index()].shed = 0;
    match at(&p, &old_only) {
        Health::Pause { reason, .. } => {
            assert!(
                reason.contains("shedding on old 5.00/s;")
                    || reason.contains("shedding on old 5.00/s:"),
                "{reason}"
            )
        }
        h => panic!("{h:?}"),
    }
    // Nobody shedding: the users' failures are not demand; the gate rolls back.
    let mut calm = herd.clone();
    for s in [Scope::Old, Scope::New] {
        calm.scopes[s.index()].shed = 0;
    }
    assert!(matches!(at(&p, &calm), Health::Rollback { .. }));
    // NEW failing on its own under the same load: evidence against NEW, rollback.
    let mut new_fails = herd.clone();
    new_fails.scopes[Scope::New.index()].errors = 100;
    new_fails.scopes[Scope::New.index()].error_rate = 0.2;
    match at(&p, &new_fails) {
        Health::Rollback { reason, .. } => assert!(reason.contains("new errors"), "{reason}"),
        h => panic!("{h:?}"),
    }
}
