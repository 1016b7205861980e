//! The request timeout on upstream connections, kept by a sweeper instead of a timer per
//! request.
//!
//! Owns: [`Deadlines`] (the upstream connections of one upstream, and the task that cuts the
//! connection of a request that has waited too long for its answer) and [`ConnClock`], one
//! connection's clock. Must not touch: requests, pools or metrics — [`super::conns`]
//! starts and stops the clocks and turns a cut into a timeout.
//!
//! Why: a tokio timeout around each attempt cost about 900 instructions per request (a clock
//! read, an insert into and a removal from the timer wheel, polls): 3% of the proxy's CPU
//! (docs/benchmarks.md). Here starting and stopping a clock are two atomic writes of the
//! coarse time. The sweeper looks every eighth of the timeout (but at least every 250 ms and
//! at most every 10 ms). For a connection whose request is overdue, it aborts the
//! connection's task (hyper then fails the request), or it wakes the request reading the
//! connection itself ([`super::rawconn`], which then sees the cut). Either way the attempt
//! reports a timeout, at most that period (plus ~20 ms of coarse clock) late.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::task::{AbortHandle, JoinHandle};

use crate::proxy::clock;

const SWEEP_MIN: Duration = Duration::from_millis(10);
const SWEEP_MAX: Duration = Duration::from_millis(250);

/// One upstream connection's request clock.
#[derive(Debug, Default)]
pub(crate) struct ConnClock {
    /// When the request in flight was handed over (coarse clock + 1); 0: none in flight.
    since: AtomicU64,
    /// The sweeper cut the connection because its request was overdue.
    cut: AtomicBool,
    /// The connection's task, for a connection driven by hyper: aborted on a cut.
    task: OnceLock<AbortHandle>,
    /// The task waiting for the answer, for a connection read by the request's own task
    /// ([`super::rawconn`]): woken on a cut.
    waiter: AtomicWaker,
}

impl ConnClock {
    /// A request has been handed to the connection.
    pub(crate) fn start(&self) {
        self.since.store(clock::now_ms() + 1, Relaxed);
    }

    /// The request's answer came (or it failed). False when the sweeper had cut the
    /// connection first: the request timed out. Call once per [`ConnClock::start`].
    pub(crate) fn stop(&self) -> bool {
        self.since.swap(0, Relaxed) != 0
    }

    /// The sweeper cut this connection.
    pub(crate) fn was_cut(&self) -> bool {
        self.cut.load(Relaxed)
    }

    /// Wake `cx`'s task if the sweeper cuts the connection; true if it was cut already.
    pub(crate) fn cut_or_register(&self, cx: &std::task::Context<'_>) -> bool {
        self.waiter.register(cx.waker());
        self.was_cut()
    }

    /// Cut the connection if its request has waited `timeout_ms` by `now_ms`.
    fn cut_if_overdue(&self, now_ms: u64, timeout_ms: u64) -> bool {
        let since = self.since.load(Relaxed);
        if since == 0 || now_ms + 1 < since.saturating_add(timeout_ms) {
            return false;
        }
        // Only if the answer did not come meanwhile (`stop` swaps to 0 first).
        if self
            .since
            .compare_exchange(since, 0, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        self.cut.store(true, Relaxed);
        if let Some(task) = self.task.get() {
            task.abort();
        }
        self.waiter.wake();
        true
    }
}

/// The connections of one upstream and the request timeout they are held to.
#[derive(Debug)]
pub(crate) struct Deadlines {
    timeout_ms: u64,
    conns: Mutex<Vec<Arc<ConnClock>>>,
    sweeper: Mutex<Option<JoinHandle<()>>>,
}

impl Deadlines {
    pub(crate) fn new(request_timeout: Duration) -> Arc<Deadlines> {
        Arc::new(Deadlines {
            timeout_ms: request_timeout.as_millis() as u64,
            conns: Mutex::new(Vec::new()),
            sweeper: Mutex::new(None),
        })
    }

    /// Watch a new connection. Give it its task with [`DeadlineSlot::run`]; it is forgotten when
    /// that task ends. Starts the sweeper on the current runtime if none runs.
    pub(crate) fn watch(self: &Arc<Self>) -> DeadlineSlot {
        let clock = Arc::new(ConnClock::default());
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(clock.clone());
        let mut sweeper = self.sweeper.lock().unwrap_or_else(PoisonError::into_inner);
        if sweeper.as_ref().is_none_or(JoinHandle::is_finished) {
            let every = (Duration::from_millis(self.timeout_ms) / 8).clamp(SWEEP_MIN, SWEEP_MAX);
            *sweeper = Some(tokio::spawn(sweep(Arc::downgrade(self), every)));
        }
        DeadlineSlot {
            clock,
            deadlines: self.clone(),
        }
    }

    /// Cut the connections whose request is overdue at `now_ms`; returns how many.
    fn sweep_once(&self, now_ms: u64) -> usize {
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns
            .iter()
            .filter(|c| c.cut_if_overdue(now_ms, self.timeout_ms))
            .count()
    }
}

async fn sweep(deadlines: Weak<Deadlines>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // Gone once its upstream and all of its connections are.
        let Some(d) = deadlines.upgrade() else {
            return;
        };
        let cut = d.sweep_once(clock::now_ms());
        if cut > 0 {
            tracing::debug!(cut, "cut upstream connections past the request timeout");
        }
    }
}

/// A watched connection, forgotten by its [`Deadlines`] when dropped.
#[derive(Debug)]
pub(crate) struct DeadlineSlot {
    clock: Arc<ConnClock>,
    deadlines: Arc<Deadlines>,
}

impl DeadlineSlot {
    pub(crate) fn clock(&self) -> &Arc<ConnClock> {
        &self.clock
    }

    /// Spawn the connection's task (which the sweeper may abort); the watch ends with it.
    pub(crate) fn run<F>(self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let clock = self.clock.clone();
        let handle = tokio::spawn(async move {
            let _watched = self;
            task.await;
        });
        let _ = clock.task.set(handle.abort_handle());
    }
}

impl Drop for DeadlineSlot {
    fn drop(&mut self) {
        let mut conns = self
            .deadlines
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = conns.iter().position(|c| Arc::ptr_eq(c, &self.clock)) {
            conns.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_is_cut_only_when_overdue_and_running() {
        let c = ConnClock::default();
        assert!(!c.cut_if_overdue(1_000_000, 100), "nothing in flight");
        c.start();
        let started = c.since.load(Relaxed) - 1;
        assert!(!c.cut_if_overdue(started + 99, 100));
        assert!(c.stop(), "answered in time");
        assert!(!c.cut_if_overdue(started + 1000, 100), "stopped");
        assert!(!c.was_cut());
        c.start();
        let started = c.since.load(Relaxed) - 1;
        assert!(c.cut_if_overdue(started + 100, 100));
        assert!(c.was_cut());
        assert!(!c.stop(), "the answer came after the cut");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_wakes_a_request_reading_its_connection_itself() {
        clock::follow_tokio();
        let d = Deadlines::new(Duration::from_millis(400));
        let w = d.watch();
        let clock = w.clock().clone();
        clock.start();
        // What `rawconn` does while it waits for an answer that never comes.
        let waited = std::future::poll_fn(|cx| {
            if clock.cut_or_register(cx) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        let start = tokio::time::Instant::now();
        // (A timeout polls the future once more when it fires, so without a wake it would
        // still end, at 10 s.)
        let woken = tokio::time::timeout(Duration::from_secs(10), waited).await;
        let took = start.elapsed();
        assert!(woken.is_ok(), "the overdue request was not woken");
        // Swept every eighth of the timeout: never early, at most an eighth late.
        assert!(took >= Duration::from_millis(400), "cut early: {took:?}");
        assert!(took <= Duration::from_millis(450), "cut late: {took:?}");
        assert!(!clock.stop(), "a cut request counts as timed out");
        drop(w);
        assert!(d.conns.lock().expect("lock").is_empty(), "not forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_answered_in_time_is_not_cut() {
        clock::follow_tokio();
        let d = Deadlines::new(Duration::from_millis(400));
        let w = d.watch();
        for _ in 0..10 {
            w.clock().start();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(w.clock().stop(), "cut before its timeout");
        }
        assert!(!w.clock().was_cut());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_aborts_an_overdue_connection_task() {
        clock::follow_tokio();
        let d = Deadlines::new(Duration::from_millis(400));
        let w = d.watch();
        let clock = w.clock().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        w.run(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        clock.start();
        let start = tokio::time::Instant::now();
        // The task's end drops `tx`: the receiver sees it.
        let ended = tokio::time::timeout(Duration::from_secs(10), rx).await;
        assert!(ended.is_ok(), "the overdue connection was never cut");
        assert!(start.elapsed() <= Duration::from_millis(450), "cut late");
        assert!(!clock.stop());
        assert!(clock.was_cut());
        // The aborted task drops its watch as it unwinds: wait for that, not for a while.
        while !d.conns.lock().expect("lock").is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "not forgotten");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
