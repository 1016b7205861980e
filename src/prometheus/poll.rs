//! Asking off the driver's loop: a task of its own asks Prometheus for the run's query gates
//! every analysis interval and keeps the latest answers, so the driver's tick reads them
//! without waiting. A slow or silent Prometheus (up to `[prometheus] timeout` per ask) then
//! never delays an operator's command, the status, or the judgement of the other gates.
//!
//! Owns: the asking task, what it is asked for ([`Poller::want`]) and the latest answers with
//! their age ([`Poller::latest`]). Must not touch: judging ([`crate::analyzer::query`] reads
//! the answers) or the run's state (the driver decides).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
// Tokio's clock, as the client's: the driver's paused-time tests drive the ages.
use tokio::time::Instant;

use super::Prometheus;
use crate::analyzer::{QueryOutcome, QueryResults};
use crate::plan::model::QueryGate;

/// What the task is asked to ask for, and how often.
#[derive(Debug, Clone, Default, PartialEq)]
struct Want {
    gates: Arc<[QueryGate]>,
    every: Duration,
}

/// One round of answers: to which gates, and when they came.
#[derive(Debug, Clone)]
struct Answered {
    gates: Arc<[QueryGate]>,
    results: QueryResults,
    at: Instant,
}

/// The asking task's handle; dropping it stops the task.
pub struct Poller {
    want: watch::Sender<Want>,
    latest: watch::Receiver<Option<Answered>>,
    timeout: Duration,
    pause_after: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Poller {
    /// Start the asking task (idle until [`Poller::want`] names gates).
    pub fn start(prometheus: Arc<Prometheus>) -> Poller {
        let (want, want_rx) = watch::channel(Want::default());
        let (latest_tx, latest) = watch::channel(None);
        let timeout = prometheus.timeout;
        let pause_after = prometheus.pause_after;
        let task = tokio::spawn(ask_loop(prometheus, want_rx, latest_tx));
        Poller {
            want,
            latest,
            timeout,
            pause_after,
            task,
        }
    }

    /// Ask for `gates` every `every` from now on (none: stop asking). Cheap when unchanged.
    pub fn want(&self, gates: &[QueryGate], every: Duration) {
        self.want.send_if_modified(|w| {
            if *w.gates == *gates && w.every == every {
                return false;
            }
            *w = Want {
                gates: gates.into(),
                every,
            };
            true
        });
    }

    /// The latest answers for `gates`, read at `now` without waiting.
    ///
    /// No answer for these gates yet (the run just started, or its gates changed): no outcome,
    /// so the gates cannot judge and the run holds for that tick. Answers older than an ask
    /// can take (`every` + `timeout`, twice over) mean the asking itself is stuck: each gate
    /// then has an error whose failing time counts from the answer, so the run pauses after
    /// `pause_after` as when Prometheus is unreachable.
    pub fn latest(&self, gates: &[QueryGate], every: Duration, now: Instant) -> QueryResults {
        let mut results = QueryResults {
            pause_after: self.pause_after,
            ..QueryResults::default()
        };
        let latest = self.latest.borrow();
        let Some(a) = latest.as_ref().filter(|a| *a.gates == *gates) else {
            return results;
        };
        let age = now.saturating_duration_since(a.at);
        if age <= (every + self.timeout) * 2 {
            results.outcomes.clone_from(&a.results.outcomes);
            return results;
        }
        for g in gates {
            let before = a.results.outcomes.get(&g.name);
            let failing_for = age + before.map_or(Duration::ZERO, |o| o.failing_for);
            let why = format!(
                "no answer from Prometheus for {}: the last one came {} ago",
                g.query,
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            );
            let outcome = QueryOutcome {
                value: Err(why),
                failing_for,
            };
            results.outcomes.insert(g.name.clone(), outcome);
        }
        results
    }
}

/// Ask for what is wanted, publish, wait for the next interval (or a change of what is
/// wanted), again.
async fn ask_loop(
    prometheus: Arc<Prometheus>,
    mut want: watch::Receiver<Want>,
    latest: watch::Sender<Option<Answered>>,
) {
    loop {
        let w = want.borrow_and_update().clone();
        if w.gates.is_empty() {
            latest.send_replace(None);
            if want.changed().await.is_err() {
                return;
            }
            continue;
        }
        let started = Instant::now();
        let results = prometheus.ask_all(&w.gates).await;
        latest.send_replace(Some(Answered {
            gates: w.gates.clone(),
            results,
            at: Instant::now(),
        }));
        tokio::select! {
            _ = tokio::time::sleep_until(started + w.every) => {}
            changed = want.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::Condition;
    use crate::vocab::OnFail;

    fn gate(name: &str) -> QueryGate {
        QueryGate {
            name: name.into(),
            query: format!("max({name})"),
            condition: Condition::Max(0.8),
            after: 1,
            on_fail: OnFail::Pause,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_count_only_for_the_gates_asked_and_go_stale() {
        let (want, _want_rx) = watch::channel(Want::default());
        let (answers, latest) = watch::channel(None);
        let poller = Poller {
            want,
            latest,
            timeout: Duration::from_secs(1),
            pause_after: Duration::from_secs(60),
            task: tokio::spawn(async {}),
        };
        let every = Duration::from_secs(1);
        let gates: Arc<[QueryGate]> = vec![gate("a")].into();
        assert!(poller
            .latest(&gates, every, Instant::now())
            .outcomes
            .is_empty());

        let mut results = QueryResults::default();
        let fine = QueryOutcome {
            value: Ok(0.5),
            failing_for: Duration::ZERO,
        };
        results.outcomes.insert("a".into(), fine.clone());
        answers.send_replace(Some(Answered {
            gates: gates.clone(),
            results,
            at: Instant::now(),
        }));
        let now = Instant::now();
        let got = poller.latest(&gates, every, now);
        assert_eq!(
            (got.outcomes["a"].clone(), got.pause_after),
            (fine, Duration::from_secs(60))
        );
        // Answers to other gates (a new run's) are none of this run's.
        assert!(poller.latest(&[gate("b")], every, now).outcomes.is_empty());

        // Older than two asks can take: the asking is stuck, and the gate fails from then.
        tokio::time::advance(Duration::from_secs(5)).await;
        let stale = &poller.latest(&gates, every, Instant::now()).outcomes["a"];
        assert_eq!(stale.failing_for, Duration::from_secs(5));
        let why = stale.value.clone().unwrap_err();
        assert!(why.contains("the last one came 5s ago"), "{why}");
    }
}
