//! Watching over client connections without a cost per request: the idle close, the request
//! head timeout and the graceful drain.
//!
//! Owns: [`Supervisor`] (the open connections of one runtime, a sweeper task that closes the
//! idle ones and those slow to send a request head, and the drain that asks them all to
//! finish) and [`Supervised`], the future a connection task runs. Must not touch: requests,
//! routing or the connection cap.
//!
//! Why not timers and a drain signal per connection (as hyper's header timer, an idle timer
//! and hyper-util's graceful watcher were): each was reset or polled on every request or
//! every wake of the connection task, together about 3k instructions per request, a tenth of
//! the proxy's own CPU (docs/benchmarks.md). Here a connection task checks one atomic per
//! wake; the sweeper looks at every connection four times per timeout (so a timeout fires
//! up to a quarter late), and a drain wakes each connection once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::conn::Activity;
use crate::config::Limits;
use crate::proxy::clock;

/// What a connection has been asked to do.
const RUN: u8 = 0;
/// Finish the requests in flight, take no more, then close.
const DRAIN: u8 = 1;
/// Close now (idle: nothing in flight).
const CLOSE: u8 = 2;

/// Bounds of how often the sweeper looks for idle connections: a quarter of the idle timeout,
/// within these.
const SWEEP_MIN: Duration = Duration::from_millis(25);
const SWEEP_MAX: Duration = Duration::from_secs(1);

struct Entry {
    activity: Arc<Activity>,
    idle_timeout_ms: u64,
    head_timeout_ms: u64,
    order: Arc<Order>,
}

/// The order to one connection, and how to wake its task to read it.
#[derive(Default)]
struct Order {
    what: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Order {
    fn give(&self, what: u8) {
        if self.what.fetch_max(what, Relaxed) < what {
            let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(w) = waker.as_ref() {
                w.wake_by_ref();
            }
        }
    }
}

#[derive(Default)]
struct Table {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    draining: bool,
}

/// The open client connections of one runtime.
#[derive(Default)]
pub(crate) struct Supervisor {
    table: Mutex<Table>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("open", &self.open())
            .finish()
    }
}

impl Supervisor {
    pub(crate) fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor::default())
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections supervised now.
    pub(crate) fn open(&self) -> usize {
        let t = self.table();
        t.entries.len() - t.free.len()
    }

    /// Supervise `conn`, closed once it has been idle ([`Activity::is_idle`]) for
    /// `limits.idle_timeout`, or waited for a request head ([`Activity::head_overdue`]) for
    /// `limits.header_read_timeout`. The returned future must stay in the task that first
    /// polls it (it keeps that task's waker).
    pub(crate) fn supervise<C>(
        self: &Arc<Self>,
        conn: C,
        activity: Arc<Activity>,
        limits: &Limits,
    ) -> Supervised<C> {
        let order = Arc::new(Order::default());
        let mut t = self.table();
        if t.draining {
            order.what.store(DRAIN, Relaxed);
        }
        let entry = Entry {
            activity,
            idle_timeout_ms: limits.idle_timeout.as_millis() as u64,
            head_timeout_ms: limits.header_read_timeout.as_millis() as u64,
            order: order.clone(),
        };
        let index = match t.free.pop() {
            Some(i) => {
                t.entries[i] = Some(entry);
                i
            }
            None => {
                t.entries.push(Some(entry));
                t.entries.len() - 1
            }
        };
        drop(t);
        Supervised {
            conn: Box::pin(conn),
            order,
            registered: false,
            shutting_down: false,
            _slot: Slot {
                supervisor: self.clone(),
                index,
            },
        }
    }

    /// Close the connections idle at `now` (coarse [`clock`] milliseconds), or overdue with a
    /// request head; returns how many.
    pub(crate) fn close_idle(&self, now: u64) -> usize {
        let mut closed = 0;
        for e in self.table().entries.iter().flatten() {
            if e.activity.is_idle(now, e.idle_timeout_ms)
                || e.activity.head_overdue(now, e.head_timeout_ms)
            {
                e.order.give(CLOSE);
                closed += 1;
            }
        }
        closed
    }

    /// Close idle and head-overdue connections every quarter of the shorter timeout in
    /// `limits()` (read anew each time, so a reload takes effect), until the task is dropped.
    pub(crate) async fn sweep(self: Arc<Self>, limits: impl Fn() -> Limits) {
        loop {
            let l = limits();
            let every = l.idle_timeout.min(l.header_read_timeout) / 4;
            tokio::time::sleep(every.clamp(SWEEP_MIN, SWEEP_MAX)).await;
            let closed = self.close_idle(clock::now_ms());
            if closed > 0 {
                tracing::debug!(closed, "closed idle or slow client connections");
            }
        }
    }

    /// Ask every connection to finish what is in flight and close, and wait (at most
    /// `timeout`) until all have. Returns how many were still open at the deadline.
    pub(crate) async fn drain(&self, timeout: Duration) -> usize {
        {
            let mut t = self.table();
            t.draining = true;
            for e in t.entries.iter().flatten() {
                e.order.give(DRAIN);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.open();
        if left > 0 {
            for e in self.table().entries.iter().flatten() {
                e.order.give(CLOSE);
            }
        }
        left
    }
}

/// A connection's place in its [`Supervisor`], given back when the connection ends.
struct Slot {
    supervisor: Arc<Supervisor>,
    index: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.supervisor.table();
        if let Some(e) = t.entries.get_mut(self.index) {
            *e = None;
            t.free.push(self.index);
        }
    }
}

/// A client connection under a [`Supervisor`]: runs it, shuts it down gracefully when drained,
/// and ends it (dropping it closes the socket) when the sweeper finds it idle.
pub(crate) struct Supervised<C> {
    conn: Pin<Box<C>>,
    order: Arc<Order>,
    registered: bool,
    shutting_down: bool,
    _slot: Slot,
}

/// How a supervised connection ended.
#[derive(Debug)]
pub(crate) enum Ended<E> {
    /// The connection ended by itself (the client closed, an upgrade took it, or a drain).
    Done(Result<(), E>),
    /// Closed by the supervisor: idle, or still open when the drain ran out of time.
    Closed,
}

/// A connection that can be asked to finish what is in flight and then close
/// ([`super::lane::FrontConn`], which passes the request on to hyper's connection once hyper
/// has it).
pub(crate) trait Drainable: Future<Output = Result<(), Self::Error>> {
    type Error;
    /// Finish what is in flight, take no more requests, then end.
    fn drain(self: Pin<&mut Self>);
}

impl<C: Drainable> Future for Supervised<C> {
    type Output = Ended<C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.registered {
            // Every waker a task's futures are polled with wakes that same task, so registering
            // once is enough (the contract of `supervise`: the future stays in its task).
            *this
                .order
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            this.registered = true;
        }
        match this.order.what.load(Relaxed) {
            RUN => {}
            DRAIN if !this.shutting_down => {
                this.shutting_down = true;
                this.conn.as_mut().drain();
            }
            DRAIN => {}
            _ => return Poll::Ready(Ended::Closed),
        }
        this.conn.as_mut().poll(cx).map(Ended::Done)
    }
}

#[cfg(test)]
mod tests {
    //! On paused time: the coarse clock follows tokio's ([`clock::follow_tokio`]), so each
    //! sweep happens exactly when the test's time says, and no test waits on the wall clock.

    use super::*;
    use tokio::time::Instant;

    /// A connection that never ends by itself; with `finish_on_drain`, a drain ends it.
    struct Conn {
        finish_on_drain: bool,
        drained: bool,
    }

    impl Future for Conn {
        type Output = Result<(), ()>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if self.drained && self.finish_on_drain {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    impl Drainable for Conn {
        type Error = ();
        fn drain(self: Pin<&mut Self>) {
            self.get_mut().drained = true;
        }
    }

    fn limits(idle_ms: u64, head_ms: u64) -> Limits {
        Limits {
            idle_timeout: Duration::from_millis(idle_ms),
            header_read_timeout: Duration::from_millis(head_ms),
            ..Limits::default()
        }
    }

    /// A supervisor sweeping with `l`, and one connection under it.
    fn one_conn(
        l: Limits,
        finish_on_drain: bool,
    ) -> (Arc<Supervisor>, Arc<Activity>, Supervised<Conn>) {
        clock::follow_tokio();
        let s = Supervisor::new();
        tokio::spawn(s.clone().sweep(move || l));
        let activity = Activity::new();
        let conn = Conn {
            finish_on_drain,
            drained: false,
        };
        let supervised = s.supervise(conn, activity.clone(), &l);
        (s, activity, supervised)
    }

    /// Wait for `conn` to end; how long it took, and whether the supervisor closed it.
    async fn ended(conn: Supervised<Conn>) -> (Duration, bool) {
        let start = Instant::now();
        let closed = matches!(conn.await, Ended::Closed);
        (start.elapsed(), closed)
    }

    /// The supervisor closed it, `from_ms` to `to_ms` after the test began waiting.
    fn closed_between((took, closed): (Duration, bool), from_ms: u64, to_ms: u64) {
        assert!(closed, "it ended by itself");
        let (from, to) = (Duration::from_millis(from_ms), Duration::from_millis(to_ms));
        assert!(took >= from, "closed early: {took:?}, not before {from:?}");
        assert!(took <= to, "closed late: {took:?}, by {to:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (s, _activity, conn) = one_conn(limits(1_000, 60_000), false);
        // Swept every quarter of the timeout: never early, at most a quarter late.
        closed_between(ended(conn).await, 1_000, 1_250);
        assert_eq!(s.open(), 0, "its slot is given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_its_connection_open() {
        let (_s, activity, conn) = one_conn(limits(1_000, 60_000), false);
        let busy = activity.begin();
        let mut conn = Box::pin(ended(conn));
        let waited = tokio::time::timeout(Duration::from_secs(30), conn.as_mut()).await;
        assert!(waited.is_err(), "closed with a request in flight");
        drop(busy);
        closed_between(conn.await, 31_000, 31_250);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_head_is_closed_after_the_head_timeout() {
        let (_s, _activity, conn) = one_conn(limits(60_000, 2_000), false);
        closed_between(ended(conn).await, 2_000, 2_500);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_what_finishes_and_closes_the_rest_at_its_timeout() {
        let (s, _a, finishing) = one_conn(limits(60_000, 60_000), true);
        let stuck = s.supervise(
            Conn {
                finish_on_drain: false,
                drained: false,
            },
            Activity::new(),
            &limits(60_000, 60_000),
        );
        let finishing = tokio::spawn(ended(finishing));
        let stuck = tokio::spawn(ended(stuck));
        tokio::task::yield_now().await;
        let start = Instant::now();
        let left = s.drain(Duration::from_secs(5)).await;
        assert_eq!(
            left, 1,
            "the stuck connection was still open at the deadline"
        );
        assert!(start.elapsed() >= Duration::from_secs(5));
        let (_, closed) = finishing.await.expect("task");
        assert!(!closed, "a drained connection ends by itself");
        // Closed at the drain's deadline.
        closed_between(stuck.await.expect("task"), 5_000, 5_010);
        assert_eq!(s.open(), 0);
    }
}
