//! Window math over synthetic instants: no sleeping, every `now` is `origin + offset`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ring::RING_SECONDS;
use super::*;

fn at(t0: Instant, secs: f64) -> Instant {
    t0 + Duration::from_secs_f64(secs)
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn window_sums_the_last_seconds_and_divides_by_the_covered_span() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    // 10 requests a second on NEW, one of them a 5xx, in seconds 1..=30.
    for s in 1..=30 {
        for i in 0..10 {
            let o = if i == 0 {
                Outcome::ServerError
            } else {
                Outcome::Ok
            };
            m.record(Scope::New, o, 20 * MS, at(t0, s as f64 + 0.5));
        }
    }
    // now = 31.0: seconds 22..=31, of which 22..=30 hold traffic; span 9 s.
    let w = m.window(at(t0, 31.0), Duration::from_secs(10));
    let n = w.scope(Scope::New);
    assert_eq!((n.requests, n.errors), (90, 9));
    assert!((n.rps - 10.0).abs() < 1e-9, "rps {}", n.rps);
    assert!((n.error_rate - 0.1).abs() < 1e-9);
    assert_eq!(w.window, Duration::from_secs(10));

    // now = 30.75: seconds 21..=30, all full; span 9.75 s.
    let w = m.window(at(t0, 30.75), Duration::from_secs(10));
    assert_eq!(w.scope(Scope::New).requests, 100);
    assert!((w.scope(Scope::New).rps - 100.0 / 9.75).abs() < 1e-6);

    // Long after the traffic stopped the window is empty.
    let w = m.window(at(t0, 45.0), Duration::from_secs(10));
    assert_eq!(w.scope(Scope::New).requests, 0);
    assert_eq!(w.scope(Scope::New).error_rate, 0.0);
    assert_eq!(w.scope(Scope::New).p99_ms, 0.0);
}

#[test]
fn a_young_process_divides_by_its_uptime() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    for _ in 0..40 {
        m.record(Scope::Old, Outcome::Ok, MS, at(t0, 1.5));
    }
    let w = m.window(at(t0, 2.0), Duration::from_secs(10));
    assert!((w.scope(Scope::Old).rps - 20.0).abs() < 1e-9);
}

#[test]
fn buckets_are_reused_after_wrap_around() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    for _ in 0..50 {
        m.record(Scope::New, Outcome::Timeout, 900 * MS, at(t0, 10.2));
    }
    // One lap later the same slots come round; only the new second may count.
    let lap = RING_SECONDS as f64;
    m.record(Scope::New, Outcome::Ok, 3 * MS, at(t0, 10.2 + lap));
    let w = m.window(at(t0, 10.9 + lap), Duration::from_secs(5));
    let n = w.scope(Scope::New);
    assert_eq!((n.requests, n.errors), (1, 0));
    assert!(n.p99_ms < 3.1);
    // A window whose seconds map onto old slots that were never rewritten reads nothing.
    let w = m.window(at(t0, 14.0 + lap), Duration::from_secs(3));
    assert_eq!(w.scope(Scope::New).requests, 0);
}

#[test]
fn percentiles_are_within_the_histogram_precision() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    for i in 1..=2000u64 {
        // 0.5 ms .. 1000 ms in steps of 0.5 ms, spread over two seconds.
        let now = at(t0, 5.0 + (i % 2) as f64 + 0.1);
        m.record(
            Scope::Users,
            Outcome::Ok,
            Duration::from_micros(i * 500),
            now,
        );
    }
    let u = m.window(at(t0, 6.5), Duration::from_secs(10)).scopes[Scope::Users.index()].clone();
    assert_eq!(u.requests, 2000);
    assert!(
        (u.p50_ms - 500.0).abs() / 500.0 <= 0.011,
        "p50 {}",
        u.p50_ms
    );
    assert!(
        (u.p99_ms - 990.0).abs() / 990.0 <= 0.011,
        "p99 {}",
        u.p99_ms
    );
}

#[test]
fn share_is_over_all_env_requests_and_users_is_one() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    let now = at(t0, 3.5);
    for (scope, n) in [
        (Scope::Old, 30),
        (Scope::New, 60),
        (Scope::Fallback, 10),
        (Scope::Users, 95),
    ] {
        for _ in 0..n {
            m.record(scope, Outcome::Ok, MS, now);
        }
    }
    let w = m.window(now, Duration::from_secs(10));
    let share = |s: Scope| w.scope(s).share;
    assert!((share(Scope::Old) - 0.3).abs() < 1e-9);
    assert!((share(Scope::New) - 0.6).abs() < 1e-9);
    assert!((share(Scope::Fallback) - 0.1).abs() < 1e-9);
    assert_eq!(share(Scope::Users), 1.0);
    assert_eq!(
        w.value(MetricRef::parse("fallback.share").unwrap()),
        Some(share(Scope::Fallback))
    );
}

#[test]
fn displaced_load_is_counted_per_env_and_for_users() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    let now = at(t0, 7.2);
    for i in 0..100 {
        let o = if i < 10 {
            Outcome::Refused
        } else {
            Outcome::Ok
        };
        m.record(Scope::New, o, MS, now);
        m.record(Scope::Users, Outcome::Ok, MS, now);
    }
    for _ in 0..8 {
        m.record_displaced(Env::New, true, now);
        m.record_retry(now);
    }
    for _ in 0..2 {
        m.record_displaced(Env::New, false, now);
        m.record_budget_exhausted(now);
    }
    m.record_displaced(Env::Old, true, now);
    let w = m.window(now, Duration::from_secs(10));
    let n = w.scope(Scope::New);
    assert_eq!((n.displaced_to_fallback, n.displaced_failed), (8, 2));
    assert!((n.displaced_rate - 0.1).abs() < 1e-9);
    // OLD had no requests at all: its rate is capped at 1, not infinite.
    assert_eq!(w.scope(Scope::Old).displaced_rate, 1.0);
    let u = w.scope(Scope::Users);
    assert_eq!((u.displaced_to_fallback, u.displaced_failed), (9, 2));
    // Over what users asked for (100 requests), not over the attempts.
    assert!(
        (u.displaced_rate - 0.11).abs() < 1e-9,
        "{}",
        u.displaced_rate
    );
    assert_eq!((w.retries, w.budget_exhausted), (8, 2));
    let d = w.displaced();
    assert_eq!((d.to_fallback, d.failed), (9, 2));
    assert_eq!(w.envs().new.requests, 100);
    assert_eq!(
        w.value(MetricRef::parse("new.displaced_rate").unwrap()),
        Some(n.displaced_rate)
    );
}

#[test]
fn probes_are_none_until_recorded() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    let now = at(t0, 4.0);
    let w = m.window(now, Duration::from_secs(10));
    assert_eq!(w.scope(Scope::New).probe_success, None);
    assert_eq!(
        w.value(MetricRef::parse("users.probe_success").unwrap()),
        None
    );
    for ok in [true, true, true, false] {
        m.record_probe(Env::New, ok, now);
    }
    m.record_probe(Env::Old, false, now);
    let w = m.window(now, Duration::from_secs(10));
    assert_eq!(w.scope(Scope::New).probe_success, Some(0.75));
    assert_eq!(w.scope(Scope::New).probes, 4);
    assert_eq!(w.scope(Scope::Old).probe_success, Some(0.0));
    assert_eq!(w.scope(Scope::Users).probe_success, Some(0.6));
    assert_eq!(w.scope(Scope::Fallback).probe_success, None);
    // Out of the window again.
    let w = m.window(at(t0, 20.0), Duration::from_secs(10));
    assert_eq!(w.scope(Scope::New).probe_success, None);
}

#[test]
fn shed_requests_are_shed_not_errors_nor_timed() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    let now = at(t0, 11.0);
    for _ in 0..10 {
        m.record(Scope::Users, Outcome::Ok, 100 * MS, at(t0, 10.5));
        m.record(Scope::Users, Outcome::Shed, Duration::ZERO, at(t0, 10.5));
    }
    let u = m.window(now, Duration::from_secs(2)).scopes[Scope::Users.index()].clone();
    // Issue 19: an answer shed by admission control is `shed_rate`, a metric of its own, not
    // an error of the scope (users' errors are what users got that failed).
    assert_eq!((u.requests, u.errors, u.shed), (20, 0, 10));
    assert_eq!(u.error_rate, 0.0);
    assert!((u.shed_rate - 10.0).abs() < 1e-9, "{}", u.shed_rate);
    assert!(
        u.p50_ms > 99.0,
        "shed must not drag latency down: {}",
        u.p50_ms
    );
}

#[test]
fn active_gauges_follow_their_guards() {
    let m = Arc::new(Metrics::new());
    let a = m.active(Scope::New);
    let b = m.active(Scope::New);
    let c = m.active_owned(Scope::Users);
    assert_eq!(m.active_now(Scope::New), 2);
    drop(a);
    let w = m.window(Instant::now(), Duration::from_secs(1));
    assert_eq!(
        (w.scope(Scope::New).active, w.scope(Scope::Users).active),
        (1, 1)
    );
    drop((b, c));
    assert_eq!(
        (m.active_now(Scope::New), m.active_now(Scope::Users)),
        (0, 0)
    );
}

#[test]
fn history_has_one_point_per_completed_second() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    for s in 0..5u64 {
        for i in 0..(s + 1) * 2 {
            let o = if i == 0 { Outcome::Reset } else { Outcome::Ok };
            m.record(
                Scope::Fallback,
                o,
                Duration::from_millis(10 * (s + 1)),
                at(t0, s as f64 + 0.3),
            );
        }
    }
    // Second 5 is current (and partial): not shown. Ask for 7 points: 2 before the origin.
    let h = m.history(at(t0, 5.4), 7);
    assert_eq!(h.old.len(), 7);
    let f = h.scope(Scope::Fallback);
    assert_eq!(f.len(), 7);
    assert_eq!((f[0].rps, f[1].rps), (0.0, 0.0));
    let rps: Vec<f64> = f[2..].iter().map(|p| p.rps).collect();
    assert_eq!(rps, vec![2.0, 4.0, 6.0, 8.0, 10.0]);
    assert!((f[6].error_rate - 0.1).abs() < 1e-9);
    assert!((f[6].p99_ms - 50.0).abs() / 50.0 < 0.011);
    assert!(h.users.iter().all(|p| *p == HistoryPoint::default()));
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["fallback"][6]["rps"], 10.0);
}

#[test]
fn concurrent_recording_while_reading_loses_nothing() {
    let t0 = Instant::now();
    let m = Arc::new(Metrics::with_origin(t0));
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 30_000;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (m, done) = (Arc::clone(&m), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for end in [5.5, 20.5, 40.5] {
                    let w = m.window(at(t0, end), Duration::from_secs(10));
                    for s in &w.scopes {
                        assert!(s.errors <= s.requests + THREADS, "{s:?}");
                        assert!(s.p50_ms <= s.p99_ms);
                    }
                }
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let _g = m.active(Scope::Users);
                for i in 0..PER_THREAD {
                    // 40 seconds of traffic, crossing 40 slot boundaries; every 3rd is an error.
                    let now = at(t0, (i * 40) as f64 / PER_THREAD as f64);
                    let o = if (i + t) % 3 == 0 {
                        Outcome::ServerError
                    } else {
                        Outcome::Ok
                    };
                    m.record(
                        Scope::ALL[(i % 4) as usize],
                        o,
                        Duration::from_micros(i % 5000),
                        now,
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let w = m.window(at(t0, 40.0), Duration::from_secs(41));
    let total: u64 = w.scopes.iter().map(|s| s.requests).sum();
    let errors: u64 = w.scopes.iter().map(|s| s.errors).sum();
    assert_eq!(total, THREADS * PER_THREAD);
    let expected_errors: u64 = (0..THREADS)
        .map(|t| (0..PER_THREAD).filter(|i| (i + t) % 3 == 0).count() as u64)
        .sum();
    assert_eq!(errors, expected_errors);
    assert_eq!(m.active_now(Scope::Users), 0);
}

#[test]
fn totals_and_gauges_add_up_over_the_workers() {
    let t0 = Instant::now();
    let m = Arc::new(Metrics::with_origin(t0));
    // A guard opened on one worker and dropped on another still nets out.
    let guard = std::thread::scope(|s| {
        let guards: Vec<_> = (0..2)
            .map(|w| {
                let m = m.clone();
                s.spawn(move || {
                    crate::shard::set_worker(w);
                    m.record(Scope::Old, Outcome::Ok, 3 * MS, at(t0, 1.0));
                    m.record(Scope::Old, Outcome::Timeout, 30 * MS, at(t0, 1.0));
                    m.active_owned(Scope::Old)
                })
            })
            .collect();
        guards
            .into_iter()
            .map(|g| g.join().expect("worker"))
            .collect::<Vec<_>>()
    });
    assert_eq!(m.active_now(Scope::Old), 2);
    drop(guard);
    assert_eq!(m.active_now(Scope::Old), 0);
    let t = &m.totals[Scope::Old.index()];
    assert_eq!(t.requests(), 4);
    assert_eq!(t.errors(1), 2, "two timeouts");
    assert_eq!(t.latency_bucket(0), 2, "two under 5 ms");
    assert_eq!(t.latency_sum_us(), 66_000);
    let text = render_prometheus(&m, &RunGauges::default());
    assert!(
        text.contains("cutover_requests_total{env=\"old\"} 4"),
        "{text}"
    );
}

#[test]
fn client_and_proxy_faults_are_counted_apart_from_every_scope() {
    let t0 = Instant::now();
    let m = Metrics::with_origin(t0);
    m.record(Scope::New, Outcome::Ok, 10 * MS, at(t0, 1.5));
    m.record(Scope::Users, Outcome::Ok, 10 * MS, at(t0, 1.5));
    m.record_client_error(ClientFault::BodyMalformed, at(t0, 1.5));
    m.record_client_error(ClientFault::BodyAborted, at(t0, 1.6));
    m.record_client_error(ClientFault::BodyAborted, at(t0, 1.7));
    m.record_proxy_error(ProxyFault::Resources, at(t0, 1.8));

    let w = m.window(at(t0, 2.0), Duration::from_secs(10));
    for scope in Scope::ALL {
        assert_eq!(w.scope(scope).errors, 0, "{scope:?}");
    }
    assert_eq!(w.scope(Scope::Users).requests, 1);
    let c = w.client_errors();
    assert_eq!(
        (c.total, c.body_malformed, c.body_aborted, c.body_timeout),
        (3, 1, 2, 0)
    );
    assert_eq!(w.proxy_errors, [1]);

    // Out of the window, still in the totals Prometheus shows.
    let later = m.window(at(t0, 40.0), Duration::from_secs(10));
    assert_eq!(later.client_errors().total, 0);
    let text = render_prometheus(&m, &RunGauges::default());
    assert!(
        text.contains("cutover_client_errors_total{kind=\"body_aborted\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("cutover_client_errors_total{kind=\"body_timeout\"} 0\n"));
    assert!(text.contains("cutover_proxy_errors_total{kind=\"resources\"} 1\n"));
    assert!(text.contains("cutover_user_errors_total{kind=\"server_error\"} 0\n"));
}
