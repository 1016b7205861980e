//! The driver on paused time: a step's hold, the analysis interval and a weight ramp are
//! counted on tokio's clock, so these tests move them by advancing it, exactly, and never
//! wait on the wall clock.

use std::sync::Arc;
use std::time::Duration;

use cutover::metrics::Metrics;
use cutover::orchestrator::driver::{self, Parts};
use cutover::orchestrator::handle::{Cmd, Handle};
use cutover::orchestrator::RunState;
use cutover::router::{Router, RoutingTable, Weight};
use cutover::store::Store;

/// A driver over a fresh store (inside `dir`) with no traffic: gates see no requests.
fn driver(dir: &tempfile::TempDir) -> (Handle, Arc<Router>) {
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let router = Arc::new(Router::new(RoutingTable::new(Weight::ZERO, "salt")));
    let parts = Parts {
        store,
        router: router.clone(),
        metrics: Arc::new(Metrics::new()),
        tunnels_to_move: Arc::new(|| 0),
        env_addrs: Default::default(),
        default_salt: "salt".into(),
        fleet: None,
        foresight: Default::default(),
        prometheus: None,
    };
    let (handle, _task) = driver::start(parts, std::future::pending()).expect("driver");
    (handle, router)
}

async fn start(handle: &Handle, text: &str) {
    let plan = cutover::plan::parse(text).expect("plan");
    let cmd = Cmd::Start {
        plan: Box::new(plan),
        text: text.to_owned(),
    };
    handle.command(cmd, "test", None).await.expect("start");
}

/// Let `d` pass on the paused clock (the runtime advances it as its timers fire).
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

const TWO_STEPS: &str = r#"
name = "hold"
[analysis]
interval = "1s"
window = "10s"
[[steps]]
weight = 10
hold = "60s"
[[steps]]
weight = 100
hold = "60s"
"#;

#[tokio::test(start_paused = true)]
async fn a_step_is_held_for_its_hold_then_the_next_one_begins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, router) = driver(&dir);
    start(&handle, TWO_STEPS).await;
    let s = handle.status();
    assert_eq!((s.state, s.step, s.weight), (RunState::Running, 1, 10.0));
    assert_eq!(router.snapshot().weight(), Weight::from_percent(10.0));

    // Evaluated every second: the hold is served up to one interval late, never early.
    pass(Duration::from_millis(59_500)).await;
    assert_eq!(handle.status().step, 1, "left the step before its hold");
    pass(Duration::from_millis(1_600)).await;
    let s = handle.status();
    assert_eq!(
        (s.step, s.weight),
        (2, 100.0),
        "still holding after the hold"
    );
    assert_eq!(router.snapshot().weight(), Weight::from_percent(100.0));
}

#[tokio::test(start_paused = true)]
async fn a_paused_run_holds_no_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, _router) = driver(&dir);
    start(&handle, TWO_STEPS).await;
    pass(Duration::from_secs(30)).await;
    handle
        .command(Cmd::Pause, "test", None)
        .await
        .expect("pause");
    pass(Duration::from_secs(120)).await;
    assert_eq!(handle.status().state, RunState::Paused);
    handle
        .command(Cmd::Resume, "test", None)
        .await
        .expect("resume");
    // Thirty seconds of the hold were served before the pause; thirty are left.
    pass(Duration::from_secs(28)).await;
    assert_eq!(handle.status().step, 1, "the pause counted as hold");
    pass(Duration::from_secs(4)).await;
    assert_eq!(handle.status().step, 2);
}

#[tokio::test(start_paused = true)]
async fn a_weight_ramp_moves_with_time_and_ends_on_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, router) = driver(&dir);
    let ramp = Cmd::RampWeight {
        percent: 100.0,
        over: Duration::from_secs(100),
    };
    handle.command(ramp, "test", None).await.expect("ramp");
    pass(Duration::from_millis(50_500)).await;
    let halfway = router.snapshot().weight().percent();
    assert!(
        (45.0..=55.0).contains(&halfway),
        "halfway through the ramp at {halfway}%"
    );
    pass(Duration::from_secs(51)).await;
    assert_eq!(router.snapshot().weight(), Weight::from_percent(100.0));
}
