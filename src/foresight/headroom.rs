//! Rollback headroom: could OLD take every user back right now, and should the run go on?
//!
//! Owns: the estimate ([`estimate`], from a window and the declared capacities) and the two
//! ways it acts on the analyzer's [`Observation`] before the machine sees it ([`guard`]):
//! a step whose rollback OLD could not absorb is not entered (the hold ends in a wait whose
//! reason carries the numbers), and a move towards OLD — the rollback ramp — holds while OLD is
//! at its capacity. Must not touch: clocks, the store, the config file — the numbers come in.
//!
//! The model (docs/analyzer.md, "Rollback headroom"): a rollback returns every user to OLD, so
//! OLD would need the users' whole demand, the rate of requests users send (the `users`
//! scope, or OLD + NEW where a recording has no `users`). It has its declared `capacity_rps`,
//! plus what FALLBACK can still take when FALLBACK declares one (its capacity less what it
//! serves now): the proxy displaces what OLD turns away to FALLBACK. Without a declared OLD
//! capacity there is no estimate and nothing holds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::analyzer::{Health, Observation};
use crate::metrics::{Scope, WindowSnapshot};
use crate::orchestrator::machine::Control;
use crate::vocab::RunState;

/// Declared capacities in requests per second (`[envs.old] capacity_rps`,
/// `[envs.fallback] capacity_rps`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub old: Option<f64>,
    pub fallback: Option<f64>,
}

/// What a rollback would ask of OLD, from one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Headroom {
    /// The users' demand: what OLD would need after a rollback, rps.
    pub need_rps: f64,
    /// OLD's declared capacity, rps.
    pub old_capacity_rps: f64,
    /// What OLD serves now, rps.
    pub old_rps: f64,
    /// What FALLBACK could still take (0 without a declared FALLBACK capacity), rps.
    pub fallback_spare_rps: f64,
    /// Capacity plus FALLBACK's spare, less the need: below 0 a rollback would overload OLD.
    pub headroom_rps: f64,
}

impl Headroom {
    /// Whether a rollback now could be absorbed.
    pub fn safe(&self) -> bool {
        self.headroom_rps >= 0.0
    }

    /// `OLD would need 1,840 rps, it has 1,200` (and FALLBACK's spare when it counts).
    pub fn text(&self) -> String {
        let spare = if self.fallback_spare_rps > 0.0 {
            format!(
                " (+ {} spare on FALLBACK)",
                thousands(self.fallback_spare_rps)
            )
        } else {
            String::new()
        };
        format!(
            "OLD would need {} rps, it has {}{spare}",
            thousands(self.need_rps),
            thousands(self.old_capacity_rps)
        )
    }
}

/// A rate as people read it: `1,840`, `12.5`.
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() < 100.0 && v.fract().abs() > f64::EPSILON {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The headroom over `snap`; `None` when OLD declares no capacity.
pub fn estimate(snap: &WindowSnapshot, cap: &Capacity) -> Option<Headroom> {
    let old_capacity_rps = cap.old?;
    let rps = |s: Scope| snap.scope(s).rps;
    let need_rps = rps(Scope::Users).max(rps(Scope::Old) + rps(Scope::New));
    let fallback_spare_rps = cap
        .fallback
        .map_or(0.0, |c| (c - rps(Scope::Fallback)).max(0.0));
    Some(Headroom {
        need_rps,
        old_capacity_rps,
        old_rps: rps(Scope::Old),
        fallback_spare_rps,
        headroom_rps: old_capacity_rps + fallback_spare_rps - need_rps,
    })
}

/// The analyzer's observation, adjusted for rollback headroom:
///
/// - a healthy tick that would end the current step's hold (so the run would leave the step)
///   becomes a wait when the next step checks headroom (`headroom_check`, on by default) and a
///   rollback could not be absorbed: the run stays where it is, its hold served, until the
///   demand falls or OLD's capacity rises; the wait's reason gives the numbers;
/// - OLD at or over its capacity counts as OLD degraded, so a rollback ramp (and any move
///   towards OLD) holds instead of sending more users to a full OLD.
pub fn guard(
    ctl: &Control,
    dt: Duration,
    headroom: Option<&Headroom>,
    mut obs: Observation,
) -> Observation {
    let Some(h) = headroom else {
        return obs;
    };
    if obs.old_degraded.is_none() && h.old_rps >= h.old_capacity_rps {
        obs.old_degraded = Some(format!(
            "at its capacity: serving {} of {} rps",
            thousands(h.old_rps),
            thousands(h.old_capacity_rps)
        ));
    }
    if obs.health != Health::Healthy || h.safe() {
        return obs;
    }
    let Some(run) = ctl.run() else {
        return obs;
    };
    let leaving = ctl.state() == RunState::Running
        && ctl.moving().is_none()
        && run.checks_pending().is_none()
        && ctl.hold_remaining().is_some_and(|left| left <= dt);
    let next = run.step_index() + 1;
    let Some(step) = run.plan().steps.get(next).filter(|_| leaving) else {
        return obs;
    };
    if !step.headroom_check {
        return obs;
    }
    let n = next + 1;
    obs.health = Health::NotJudged {
        reason: format!(
            "rollback headroom: a rollback from step {n} ({}%) would send every user back to \
             OLD: {}; holding before step {n} (more OLD capacity, less demand, or \
             `headroom_check = false` on step {n} for an OLD being retired)",
            step.weight.percent(),
            h.text()
        ),
    };
    obs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ScopeWindow;

    fn snap(old: f64, new: f64, fallback: f64) -> WindowSnapshot {
        let mut s = WindowSnapshot::default();
        let at = |rps| ScopeWindow {
            rps,
            ..ScopeWindow::default()
        };
        s.scopes[Scope::Old.index()] = at(old);
        s.scopes[Scope::New.index()] = at(new);
        s.scopes[Scope::Fallback.index()] = at(fallback);
        s.scopes[Scope::Users.index()] = at(old + new);
        s
    }

    #[test]
    fn the_need_is_the_whole_demand_and_fallback_spare_counts_when_declared() {
        let cap = Capacity {
            old: Some(1200.0),
            fallback: None,
        };
        let h = estimate(&snap(1380.0, 460.0, 0.0), &cap).expect("declared");
        assert_eq!(h.need_rps, 1840.0);
        assert!(!h.safe());
        assert_eq!(h.text(), "OLD would need 1,840 rps, it has 1,200");
        let cap = Capacity {
            old: Some(1200.0),
            fallback: Some(800.0),
        };
        let h = estimate(&snap(1380.0, 460.0, 100.0), &cap).expect("declared");
        assert_eq!(h.headroom_rps, 60.0);
        assert!(h.safe());
        assert!(estimate(&snap(1.0, 1.0, 0.0), &Capacity::default()).is_none());
    }

    fn running(steps: &str) -> Control {
        let text = format!("name = \"h\"\n{steps}[rollback]\nramp = \"10s\"\n");
        let plan = crate::plan::parse(&text).expect("plan");
        let start = crate::orchestrator::machine::Command::Start {
            plan,
            plan_hash: "h".into(),
            run_id: 1,
        };
        crate::orchestrator::machine::apply(&Control::default(), start, "t", None)
            .expect("start")
            .control
    }

    fn healthy() -> Observation {
        Observation {
            health: Health::Healthy,
            old_degraded: None,
            notes: Vec::new(),
        }
    }

    const TWO_STEPS: &str = "[[steps]]\nweight = 25\nhold = \"1s\"\n[[steps]]\nweight = 100\n";

    #[test]
    fn the_step_a_rollback_could_not_survive_is_not_entered_and_the_wait_gives_the_numbers() {
        let ctl = running(TWO_STEPS);
        let h = estimate(
            &snap(1380.0, 460.0, 0.0),
            &Capacity {
                old: Some(1200.0),
                fallback: None,
            },
        );
        let second = Duration::from_secs(1);
        // Mid-hold nothing changes: the hold keeps growing.
        let mid = guard(&ctl, second / 2, h.as_ref(), healthy());
        assert_eq!(mid.health, Health::Healthy);
        let Health::NotJudged { reason } = guard(&ctl, second, h.as_ref(), healthy()).health else {
            panic!("the hold's end must wait");
        };
        assert!(
            reason.contains(
                "a rollback from step 2 (100%) would send every user back to OLD: OLD would \
                 need 1,840 rps, it has 1,200; holding before step 2"
            ),
            "{reason}"
        );
        // The machine then stays at step 1.
        let obs = guard(&ctl, second, h.as_ref(), healthy());
        let crate::orchestrator::machine::Tick::Progress(next) =
            crate::orchestrator::machine::tick(&ctl, second, &obs)
        else {
            panic!("no transition while held");
        };
        assert_eq!((next.step(), next.weight().percent()), (1, 25.0));
        assert!(next
            .reason()
            .is_some_and(|r| r.contains("rollback headroom")));
        // Opted out, or with room: the step goes ahead.
        let opted =
            running(&TWO_STEPS.replace("weight = 100\n", "weight = 100\nheadroom_check = false\n"));
        assert_eq!(
            guard(&opted, second, h.as_ref(), healthy()).health,
            Health::Healthy
        );
        let room = estimate(
            &snap(600.0, 200.0, 0.0),
            &Capacity {
                old: Some(1200.0),
                fallback: None,
            },
        );
        assert_eq!(
            guard(&ctl, second, room.as_ref(), healthy()).health,
            Health::Healthy
        );
    }

    #[test]
    fn a_full_old_holds_the_rollback_ramp() {
        let ctl = running(TWO_STEPS);
        let rollback = crate::orchestrator::machine::Command::Rollback;
        let ctl = crate::orchestrator::machine::apply(&ctl, rollback, "t", None)
            .expect("rollback")
            .control;
        let cap = Capacity {
            old: Some(1000.0),
            fallback: None,
        };
        let full = estimate(&snap(1000.0, 330.0, 0.0), &cap);
        let obs = guard(&ctl, Duration::from_secs(1), full.as_ref(), healthy());
        assert!(obs
            .old_degraded
            .as_deref()
            .is_some_and(|d| d.contains("serving 1,000 of 1,000 rps")));
        let crate::orchestrator::machine::Tick::Progress(next) =
            crate::orchestrator::machine::tick(&ctl, Duration::from_secs(1), &obs)
        else {
            panic!("the ramp holds");
        };
        assert_eq!(next.weight().percent(), 25.0);
        let room = estimate(&snap(700.0, 330.0, 0.0), &cap);
        let obs = guard(&ctl, Duration::from_secs(1), room.as_ref(), healthy());
        assert!(obs.old_degraded.is_none());
    }

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(thousands(1840.0), "1,840");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(12.5), "12.5");
        assert_eq!(thousands(-1200.0), "-1,200");
    }
}
