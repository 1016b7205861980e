//! The director: what happens next in a scenario, and when the demo has shown enough.
//!
//! Owns: the timeline (when the herd's outage starts and ends), when the fault started, and the
//! end rule (a final state held for a moment, a pause held long enough for a rollback gate to
//! act, or the time limit). Must not touch: sockets or clocks — [`Director::observe`] is a pure
//! step over the elapsed time, the latest status and the fault counter, so the rules are tested
//! without running anything.

use std::time::Duration;

use super::scenario::{Fault, Scenario, HERD_AFTER_STEP, HERD_DELAY, OUTAGE};
use crate::api::Status;
use crate::orchestrator::RunState;

/// How long a final state is shown before the demo ends (plan time).
pub const LINGER: Duration = Duration::from_secs(2);
/// How long a pause is watched before the demo ends (plan time): long enough for a rollback
/// gate to act if users keep suffering while the run stands still.
pub const PAUSE_LINGER: Duration = Duration::from_secs(6);
/// Shortest real time for either, whatever the speed (the metrics move in whole seconds).
const MIN_LINGER: f64 = 1.5;

/// Something the runner must do or say.
#[derive(Debug, Clone, PartialEq)]
pub enum Cue {
    /// The fault started now; the words say what happened.
    FaultStarted(&'static str),
    /// Take every user offline (the outage).
    Offline,
    /// Bring every user back at once.
    Online,
    /// The demo has shown what it came for.
    Finish(Ending),
}

/// Why the demo ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The run settled in a final state, or stayed paused.
    Settled,
    TimeLimit,
    Interrupted,
    /// The operator quit the console.
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Herd {
    Waiting { at_step_since: Option<f64> },
    Outage { since: f64 },
    Done,
}

/// The scenario's state between observations. Times are seconds since the plan started.
#[derive(Debug, Clone)]
pub struct Director {
    scenario: Scenario,
    speed: f64,
    limit_s: f64,
    herd: Herd,
    /// When the fault started.
    pub fault_at: Option<f64>,
    settled_since: Option<(RunState, f64)>,
    finished: bool,
}

impl Director {
    pub fn new(scenario: Scenario, speed: f64, limit: Duration) -> Director {
        Director {
            scenario,
            speed,
            limit_s: limit.as_secs_f64(),
            herd: Herd::Waiting {
                at_step_since: None,
            },
            fault_at: None,
            settled_since: None,
            finished: false,
        }
    }

    /// Plan time `d` in real seconds.
    fn real(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.speed
    }

    /// One step: `t` seconds since the start, the latest `status`, and the faulty env's fault
    /// counter (requests refused or failed so far, or 1 while the env is saturated). A `Finish` cue is given once.
    pub fn observe(&mut self, t: f64, status: &Status, faults: u64) -> Vec<Cue> {
        let mut cues = Vec::new();
        if self.finished {
            return cues;
        }
        if let Fault::FirstReject(_) | Fault::Saturated(_) = self.scenario.fault() {
            if faults > 0 && self.fault_at.is_none() {
                self.fault_at = Some(t);
                cues.push(Cue::FaultStarted(self.scenario.fault_words()));
            }
        }
        if self.scenario.fault() == Fault::Herd {
            self.herd_step(t, status, &mut cues);
        }
        if t >= self.limit_s {
            self.finished = true;
            if matches!(self.herd, Herd::Outage { .. }) {
                cues.push(Cue::Online);
            }
            cues.push(Cue::Finish(Ending::TimeLimit));
            return cues;
        }
        let outage = matches!(self.herd, Herd::Outage { .. });
        let linger = match status.state {
            RunState::Completed | RunState::RolledBack | RunState::Aborted => Some(LINGER),
            RunState::Paused | RunState::AwaitingApproval => Some(PAUSE_LINGER),
            _ => None,
        };
        match linger {
            Some(d) if !outage => {
                let since = match self.settled_since {
                    Some((state, since)) if state == status.state => since,
                    _ => {
                        self.settled_since = Some((status.state, t));
                        t
                    }
                };
                if t - since >= self.real(d).max(MIN_LINGER) {
                    self.finished = true;
                    cues.push(Cue::Finish(Ending::Settled));
                }
            }
            _ => self.settled_since = None,
        }
        cues
    }

    fn herd_step(&mut self, t: f64, status: &Status, cues: &mut Vec<Cue>) {
        match self.herd {
            Herd::Waiting { at_step_since } => {
                if status.state != RunState::Running || status.step < HERD_AFTER_STEP {
                    return;
                }
                let since = at_step_since.unwrap_or(t);
                if t - since >= self.real(HERD_DELAY) {
                    self.herd = Herd::Outage { since: t };
                    cues.push(Cue::Offline);
                } else {
                    self.herd = Herd::Waiting {
                        at_step_since: Some(since),
                    };
                }
            }
            Herd::Outage { since } => {
                if t - since >= self.real(OUTAGE).max(1.0) {
                    self.herd = Herd::Done;
                    self.fault_at = Some(t);
                    cues.push(Cue::Online);
                    cues.push(Cue::FaultStarted(self.scenario.fault_words()));
                }
            }
            Herd::Done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: RunState, step: usize) -> Status {
        Status {
            state,
            step,
            ..Default::default()
        }
    }

    const LIMIT: Duration = Duration::from_secs(85);

    #[test]
    fn a_completed_run_is_shown_for_a_moment_then_finishes_once() {
        let mut d = Director::new(Scenario::Clean, 1.0, LIMIT);
        assert!(d.observe(1.0, &st(RunState::Running, 1), 0).is_empty());
        assert!(d.observe(10.0, &st(RunState::Completed, 4), 0).is_empty());
        assert!(d.observe(11.0, &st(RunState::Completed, 4), 0).is_empty());
        assert_eq!(
            d.observe(12.0, &st(RunState::Completed, 4), 0),
            vec![Cue::Finish(Ending::Settled)]
        );
        assert!(d.observe(13.0, &st(RunState::Completed, 4), 0).is_empty());
    }

    #[test]
    fn a_pause_is_watched_longer_and_a_resume_resets_the_watch() {
        let mut d = Director::new(Scenario::ConnectionLimit, 2.0, LIMIT);
        d.observe(5.0, &st(RunState::Paused, 3), 1);
        d.observe(7.0, &st(RunState::Running, 3), 1);
        d.observe(8.0, &st(RunState::Paused, 3), 1);
        assert!(d.observe(10.9, &st(RunState::Paused, 3), 1).is_empty());
        assert_eq!(
            d.observe(11.0, &st(RunState::Paused, 3), 1),
            vec![Cue::Finish(Ending::Settled)]
        );
    }

    #[test]
    fn the_first_reject_marks_the_fault_once() {
        let mut d = Director::new(Scenario::ConnectionLimit, 1.0, LIMIT);
        assert!(d.observe(3.0, &st(RunState::Running, 2), 0).is_empty());
        let cues = d.observe(4.0, &st(RunState::Running, 3), 5);
        assert!(matches!(cues.as_slice(), [Cue::FaultStarted(_)]));
        assert!(d.observe(5.0, &st(RunState::Running, 3), 9).is_empty());
        assert_eq!(d.fault_at, Some(4.0));
        // A clean run has no fault, whatever the counter says.
        let mut c = Director::new(Scenario::Clean, 1.0, LIMIT);
        c.observe(1.0, &st(RunState::Running, 1), 3);
        assert_eq!(c.fault_at, None);
    }

    #[test]
    fn the_herd_goes_offline_at_step_two_and_comes_back_at_once() {
        let mut d = Director::new(Scenario::Herd, 1.0, LIMIT);
        assert!(d.observe(1.0, &st(RunState::Running, 1), 0).is_empty());
        assert!(d.observe(5.0, &st(RunState::Running, 2), 0).is_empty());
        assert_eq!(
            d.observe(6.5, &st(RunState::Running, 2), 0),
            vec![Cue::Offline]
        );
        // Nothing ends during the outage, even a final state.
        assert!(d.observe(7.0, &st(RunState::Completed, 2), 0).is_empty());
        assert!(d.observe(8.4, &st(RunState::Completed, 2), 0).is_empty());
        let cues = d.observe(8.6, &st(RunState::Running, 2), 0);
        assert_eq!(cues[0], Cue::Online);
        assert_eq!(d.fault_at, Some(8.6));
    }

    #[test]
    fn the_time_limit_ends_everything_and_brings_users_back() {
        let mut d = Director::new(Scenario::Herd, 1.0, Duration::from_secs(8));
        d.observe(5.0, &st(RunState::Running, 2), 0);
        assert_eq!(
            d.observe(7.0, &st(RunState::Running, 2), 0),
            vec![Cue::Offline]
        );
        // The limit falls inside the outage: the users are brought back before the end.
        assert_eq!(
            d.observe(8.0, &st(RunState::Running, 2), 0),
            vec![Cue::Online, Cue::Finish(Ending::TimeLimit)]
        );
    }
}
