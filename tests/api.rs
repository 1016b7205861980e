//! The control API through the real binary (issues 2 and 5).

mod common;

use std::time::{Duration, Instant};

use common::{server_with, wait_until, WAIT};
use serde_json::{json, Value};

const ROUTES: [(&str, &str); 10] = [
    ("GET", "/v1/status"),
    ("GET", "/v1/events"),
    ("GET", "/v1/plans"),
    ("POST", "/v1/start"),
    ("POST", "/v1/pause"),
    ("POST", "/v1/resume"),
    ("POST", "/v1/approve"),
    ("POST", "/v1/rollback"),
    ("POST", "/v1/abort"),
    ("POST", "/v1/weight"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_metrics_needs_the_token() {
    let (s, _envs, _dir) = server_with("").await;
    let anon = reqwest::Client::new();
    for (method, path) in ROUTES {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for auth in [None, Some("Bearer wrong-token")] {
            let mut req = anon.request(m.clone(), s.url(path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.expect("send");
            assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
            let body: Value = resp.json().await.expect("json");
            assert!(
                body["hint"].as_str().is_some_and(|h| h.contains("Bearer")),
                "{body}"
            );
        }
    }
    // With the token, the read routes answer.
    for path in ["/v1/status", "/v1/events", "/v1/plans"] {
        assert_eq!(
            s.api()
                .get(s.url(path))
                .send()
                .await
                .expect("send")
                .status(),
            200,
            "{path}"
        );
    }
    let metrics = anon.get(s.url("/metrics")).send().await.expect("send");
    assert_eq!(metrics.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_state_actions_are_409_and_change_nothing() {
    let (s, _envs, _dir) = server_with("").await;
    let api = s.api();
    let before = s.status().await;
    assert_eq!(before["state"], "idle");
    for action in ["pause", "resume", "approve", "rollback", "abort"] {
        let resp = api
            .post(s.url(&format!("/v1/{action}")))
            .json(&json!({"reason": "test"}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 409, "{action} while idle");
        let body: Value = resp.json().await.expect("json");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        assert!(body["hint"].as_str().is_some(), "{body}");
    }
    let events = s.events().await;
    assert!(
        events.is_empty(),
        "rejected commands left events: {events:?}"
    );
    let after = s.status().await;
    assert_eq!(after["state"], before["state"]);
    assert_eq!(after["weight"], before["weight"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_with_a_hint_and_changes_nothing() {
    let (s, _envs, _dir) = server_with("").await;
    let api = s.api();
    let cases: Vec<(&str, reqwest::Body, &str)> = vec![
        ("/v1/weight", "{\"weight\": 150}".into(), "out of range"),
        ("/v1/weight", "{\"weight\": -1}".into(), "out of range"),
        (
            "/v1/weight",
            "{\"weight\": \"lots\"}".into(),
            "invalid JSON",
        ),
        ("/v1/weight", "{\"wieght\": 3}".into(), "invalid JSON"),
        ("/v1/weight", "{".into(), "invalid JSON"),
        ("/v1/pause", "not json".into(), "invalid JSON"),
        (
            "/v1/start",
            "name = \"x\"\n[[steps]]\nwieght = 5\n".into(),
            "invalid plan",
        ),
    ];
    for (path, body, expect) in cases {
        let resp = api.post(s.url(path)).body(body).send().await.expect("send");
        assert_eq!(resp.status(), 400, "{path}");
        let b: Value = resp.json().await.expect("json");
        assert!(
            b["error"].as_str().is_some_and(|e| e.contains(expect)),
            "{path}: {b}"
        );
        assert!(
            b["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{path}: {b}"
        );
    }
    // The bad plan's problems come with positions.
    let resp = api
        .post(s.url("/v1/start"))
        .body("name = \"x\"\n[[steps]]\nwieght = 5\n")
        .send()
        .await
        .expect("send");
    let b: Value = resp.json().await.expect("json");
    let details = b["details"].as_array().expect("details");
    let typo = details
        .iter()
        .find(|d| d["message"].as_str().is_some_and(|m| m.contains("wieght")))
        .expect("the typo is reported");
    assert_eq!(
        (typo["line"].as_u64(), typo["col"].as_u64()),
        (Some(3), Some(1)),
        "{b}"
    );
    assert!(
        typo["hint"]
            .as_str()
            .is_some_and(|h| h.contains("did you mean `weight`")),
        "{b}"
    );
    let status = s.status().await;
    assert_eq!(status["state"], "idle");
    assert_eq!(status["weight"], 0.0);
    let events = s.events().await;
    assert!(events.is_empty());
    // An oversized body is refused.
    let big = "x".repeat(2 * 1024 * 1024);
    let resp = api
        .post(s.url("/v1/start"))
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_without_a_run_moves_users_and_is_an_event() {
    let (s, _envs, _dir) = server_with("").await;
    let api = s.api();
    let web = reqwest::Client::new();
    let served = |r: reqwest::Response| {
        r.headers()["x-cutover-served-by"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    let r = web
        .get(s.proxy_url("/"))
        .header("x-user-id", "alice")
        .send()
        .await
        .expect("get");
    assert_eq!(served(r), "old");
    let resp = api
        .post(s.url("/v1/weight"))
        .json(&json!({"weight": 100, "reason": "smoke"}))
        .send()
        .await
        .expect("weight");
    assert_eq!(resp.status(), 200);
    let status: Value = resp.json().await.expect("json");
    assert_eq!(status["weight"], 100.0);
    assert_eq!(status["state"], "idle");
    let r = web
        .get(s.proxy_url("/"))
        .header("x-user-id", "alice")
        .send()
        .await
        .expect("get");
    assert_eq!(served(r), "new");
    let events = s.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], "weight");
    assert_eq!(events[0]["actor"], "admin-token (note: test)");
    assert!(
        events[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("smoke")),
        "{:?}",
        events[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_event_stream_delivers_within_a_second() {
    let (s, _envs, _dir) = server_with("").await;
    let client = cutover::client::Client::new(&s.admin, Some(s.token.clone()), "stream-test")
        .expect("client");
    // Subscribed once `follow` returns: the server subscribes before it answers.
    let mut stream = client.follow(0).await.expect("follow");
    let sent = Instant::now();
    client
        .set_weight(7.0, Some("stream"))
        .await
        .expect("weight");
    let ev = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("event within a second")
        .expect("stream open")
        .expect("event");
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(ev.action, cutover::api::EventAction::Weight);
    assert_eq!(ev.actor, "admin-token (note: stream-test)");
    assert_eq!(ev.weight, 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text() {
    let (s, _envs, _dir) = server_with("").await;
    let web = reqwest::Client::new();
    for i in 0..30 {
        let r = web
            .get(s.proxy_url("/"))
            .header("x-user-id", format!("u{i}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
    }
    wait_until("the 30 requests in /metrics", WAIT, || async {
        let text = web
            .get(s.url("/metrics"))
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("text");
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
        let users: f64 = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "cutover_user_requests_total")
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v)
                | prometheus_parse::Value::Gauge(v) => v,
                _ => 0.0,
            })
            .sum();
        let has_weight = scrape
            .samples
            .iter()
            .any(|s| s.metric == "cutover_weight_percent");
        let has_histogram = scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("cutover_request_duration_seconds"));
        users >= 30.0 && has_weight && has_histogram
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_talks_to_the_live_server_in_text_and_json() {
    let (s, _envs, _dir) = server_with("").await;
    let (code, out, err) = s.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("state    idle"), "{out}");
    assert!(out.contains("fallback"), "{out}");
    let (code, out, _) = s.cli(&["set-weight", "12.5", "--reason", "canary by hand"]);
    assert_eq!(code, 0);
    assert!(out.contains("12.5% on NEW"), "{out}");
    let (code, out, _) = s.cli(&["status", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json status");
    assert_eq!(v["weight"], 12.5);
    let (code, out, _) = s.cli(&["events", "--json"]);
    assert_eq!(code, 0);
    let ev: Value = serde_json::from_str(out.lines().next().expect("a line")).expect("json event");
    assert_eq!(ev["actor"], "admin-token (note: cli)");
    assert!(ev["reason"]
        .as_str()
        .is_some_and(|r| r.contains("canary by hand")));
    // An API refusal: message, hint, non-zero exit.
    let (code, _, err) = s.cli(&["approve"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error:") && err.contains("hint:"), "{err}");
    let (code, _, err) = s.cli(&["set-weight", "101"]);
    assert_eq!(code, 1);
    assert!(err.contains("out of range"), "{err}");
}
