//! The incidents the demo replays: what the world looks like in each, what goes wrong, and how
//! a good run ends.
//!
//! Owns: the [`Scenario`] names, each one's environment [`Profile`]s and user [`Mix`], how its
//! fault shows (which env's rejects or timeouts mark the fault's start, or the herd), the
//! admission-control config of the herd, and the end states that count as "survived". Must not
//! touch: sockets or time — the runner and the director act on what is written here.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::users::Mix;
use super::world::Profile;
use crate::orchestrator::RunState;
use crate::router::Env;

/// Admission control (the proxy's herd protection) is configured for the herd scenario through
/// the per-env keys in [`admission_lines`]; a config that refuses them is an error, and the herd
/// test asserts the env peaks unconditionally.
pub const REQUIRE_ADMISSION_CONTROL: bool = true;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Clean,
    ConnectionLimit,
    HalfCapacity,
    Herd,
    /// NEW fine on a few users, collapsing at 40 % of the load: found by shadow traffic.
    Shadow,
}

/// What marks the start of a scenario's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The first request `env` refused (connection limit) or failed (pool timeout).
    FirstReject(Env),
    /// The first moment `env` held twice as many requests as it can serve at once.
    Saturated(Env),
    /// The moment every user comes back after the outage.
    Herd,
}

/// The herd's timeline, in plan time (divided by `--speed`).
pub const HERD_AFTER_STEP: usize = 2;
pub const HERD_DELAY: Duration = Duration::from_millis(1500);
pub const OUTAGE: Duration = Duration::from_secs(2);

// OLD is one big CPU-bound server: far past its capacity it thrashes (collapse). NEW's and
// FALLBACK's limit is a connection pool: past it requests wait for a connection and time out,
// but the ones served are not slowed further. Every instance turns requests away (503) past
// three to four times its capacity: its accept queue is full. Ordinary bursts stay well under
// that; a herd does not.
const OLD: Profile = Profile {
    instances: 1,
    latency_ms: 20,
    capacity: 40,
    slowdown_pct: 200,
    collapse_pct: 100,
    pool_timeout_ms: 1000,
    max_connections: 0,
    max_inflight: 120,
    pool_size: 40,
};
const NEW: Profile = Profile {
    instances: 3,
    latency_ms: 15,
    capacity: 10,
    slowdown_pct: 200,
    collapse_pct: 0,
    pool_timeout_ms: 500,
    max_connections: 0,
    max_inflight: 30,
    pool_size: 10,
};
const FALLBACK: Profile = Profile {
    instances: 1,
    latency_ms: 20,
    capacity: 8,
    slowdown_pct: 200,
    collapse_pct: 0,
    pool_timeout_ms: 500,
    max_connections: 0,
    max_inflight: 32,
    pool_size: 8,
};
/// The user count the profiles are sized for; other counts scale every capacity.
pub const BASE_USERS: usize = 200;

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Clean,
        Scenario::ConnectionLimit,
        Scenario::HalfCapacity,
        Scenario::Herd,
        Scenario::Shadow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::ConnectionLimit => "connection-limit",
            Scenario::HalfCapacity => "half-capacity",
            Scenario::Herd => "herd",
            Scenario::Shadow => "shadow",
        }
    }

    /// One sentence: the incident and what cutover must do about it.
    pub fn story(self) -> &'static str {
        match self {
            Scenario::Clean => "a healthy NEW: the run moves every user across, step by step",
            Scenario::ConnectionLimit => {
                "NEW's instances have a hidden connection limit: as users move, NEW turns \
                 requests away and the proxy replays them on the small FALLBACK, so NEW's error \
                 rate and latency look fine; the run must pause on what NEW displaces before \
                 FALLBACK saturates and users feel it"
            }
            Scenario::HalfCapacity => {
                "NEW was left with half its capacity: under the big step its latency and errors \
                 climb; the run must roll back before users feel much"
            }
            Scenario::Herd => {
                "an outage drops every user, and all of them come back at the same instant: the \
                 proxy's admission control must keep OLD and NEW up"
            }
            Scenario::Shadow => {
                "NEW was never load-tested: it is fine with a few users but collapses at 40 % \
                 of the load; the plan copies OLD's traffic to NEW before moving anyone, and \
                 the mirror step must find the collapse before a single user moved"
            }
        }
    }

    /// OLD, NEW and FALLBACK for `users` users: OLD near its capacity, NEW healthy (unless the
    /// scenario says otherwise), FALLBACK small.
    pub fn profiles(self, users: usize) -> [Profile; 3] {
        let (old, mut new, fallback) = (OLD, NEW, FALLBACK);
        match self {
            Scenario::ConnectionLimit => new.max_connections = 8,
            Scenario::HalfCapacity => {
                new.capacity /= 2;
                new.pool_size /= 2;
            }
            Scenario::Shadow => {
                // Enough for a tenth of the load; past its capacity it thrashes.
                new.capacity = 2;
                new.pool_size = 2;
                new.collapse_pct = 100;
            }
            Scenario::Clean | Scenario::Herd => {}
        }
        let factor = users as f64 / BASE_USERS as f64;
        [old, new, fallback].map(|p| scale(p, factor))
    }

    pub fn mix(self, users: usize, seed: u64) -> Mix {
        Mix {
            users,
            websocket: 0.25,
            naive: 0.5,
            think: (Duration::from_millis(150), Duration::from_millis(450)),
            ws_session: (Duration::from_secs(4), Duration::from_secs(8)),
            resync: 3,
            seed,
        }
    }

    pub fn fault(self) -> Fault {
        match self {
            Scenario::Clean => Fault::None,
            Scenario::ConnectionLimit => Fault::FirstReject(Env::New),
            Scenario::HalfCapacity | Scenario::Shadow => Fault::Saturated(Env::New),
            Scenario::Herd => Fault::Herd,
        }
    }

    /// Words for the fault's start, printed when it happens.
    pub fn fault_words(self) -> &'static str {
        match self {
            Scenario::Clean => "",
            Scenario::ConnectionLimit => "NEW refused its first request at its connection limit",
            Scenario::HalfCapacity | Scenario::Shadow => {
                "NEW is saturated: twice as many requests inside as it can serve"
            }
            Scenario::Herd => "the outage is over: every user reconnects at once",
        }
    }

    /// End states in which the demo did what the scenario asks. Empty: the end state is not
    /// what the scenario is about (the herd is judged on the envs' peaks, see the summary).
    pub fn expected(self) -> Vec<RunState> {
        match self {
            Scenario::Clean => vec![RunState::Completed],
            Scenario::ConnectionLimit | Scenario::HalfCapacity => vec![
                RunState::Paused,
                RunState::RollingBack,
                RunState::RolledBack,
            ],
            // Demand, not a fault of NEW: held (paused) or carried through, never rolled back.
            Scenario::Herd => vec![RunState::Paused, RunState::Completed, RunState::Running],
            // Found at a mirror step: paused there, nobody to roll back.
            Scenario::Shadow => vec![RunState::Paused],
        }
    }

    /// The gates whose action tells this scenario's story (the first pause or rollback must
    /// come from one of them); empty when any decision (or none) fits.
    pub fn deciding_gates(self) -> &'static [&'static str] {
        match self {
            Scenario::ConnectionLimit => &[
                "new turning users away",
                "fallback taking traffic",
                "users errors",
            ],
            Scenario::Shadow => &["mirror errors", "mirror slower than old"],
            Scenario::Clean | Scenario::HalfCapacity | Scenario::Herd => &[],
        }
    }

    /// Whether this scenario configures the proxy's admission control.
    pub fn wants_admission(self) -> bool {
        self == Scenario::Herd
    }
}

fn scale(p: Profile, factor: f64) -> Profile {
    let by = |n: usize| -> usize {
        if n == 0 {
            0
        } else {
            ((n as f64 * factor).round() as usize).max(1)
        }
    };
    Profile {
        capacity: by(p.capacity),
        max_connections: by(p.max_connections),
        max_inflight: by(p.max_inflight),
        pool_size: by(p.pool_size as usize) as u64,
        ..p
    }
}

/// The herd's admission-control keys for `[envs.<env>]`, sized under the env's capacity
/// (`profile`): at most that many requests in flight, a short queue, then 503 + Retry-After.
/// This is the one place to change when the keys are merged or renamed.
pub fn admission_lines(env: Env, profile: &Profile) -> String {
    let total = profile.capacity * profile.instances;
    let max_inflight = (total * 9 / 10).max(1);
    let sessions = match env {
        Env::Fallback => 20,
        Env::Old | Env::New => 100,
    };
    // The burst covers a reconnect of the default population at once: the env's in-flight limit
    // and queue are what protect it; the session rate only paces newcomers beyond that.
    let burst = sessions * 2;
    format!(
        "max_inflight = {max_inflight}\nqueue_timeout = \"2s\"\n\
         new_sessions_per_sec = {sessions}\nnew_sessions_burst = {burst}\n"
    )
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown scenario name, with the nearest known one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario `{given}`{}; scenarios: clean, connection-limit, half-capacity, herd, shadow",
    .suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
pub struct UnknownScenario {
    pub given: String,
    pub suggestion: Option<&'static str>,
}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        if let Some(found) = Scenario::ALL.into_iter().find(|x| x.name() == wanted) {
            return Ok(found);
        }
        let suggestion = Scenario::ALL
            .into_iter()
            .map(|x| (strsim::jaro_winkler(&wanted, x.name()), x.name()))
            .filter(|(score, _)| *score > 0.7)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name);
        Err(UnknownScenario {
            given: s.to_owned(),
            suggestion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_typos_get_a_suggestion() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        assert_eq!(
            "HALF_CAPACITY".parse::<Scenario>(),
            Ok(Scenario::HalfCapacity)
        );
        let err = "conection-limit".parse::<Scenario>().unwrap_err();
        assert_eq!(err.suggestion, Some("connection-limit"));
        assert!(err.to_string().contains("did you mean `connection-limit`"));
        assert_eq!("zzz".parse::<Scenario>().unwrap_err().suggestion, None);
    }

    #[test]
    fn only_the_faulty_env_differs_from_the_clean_world() {
        let [o, n, f] = Scenario::Clean.profiles(BASE_USERS);
        let [o2, n2, f2] = Scenario::HalfCapacity.profiles(BASE_USERS);
        assert_eq!((o, f), (o2, f2));
        assert_eq!(n2.capacity * 2, n.capacity);
        let [_, n3, _] = Scenario::ConnectionLimit.profiles(BASE_USERS);
        assert!(n3.max_connections > 0 && n.max_connections == 0);
        // FALLBACK is the smallest env, OLD the biggest single instance.
        assert!(f.capacity * f.instances < n.capacity * n.instances);
        assert!(o.capacity > n.capacity);
    }

    #[test]
    fn capacities_scale_with_the_user_count() {
        let [o, ..] = Scenario::Clean.profiles(BASE_USERS * 2);
        assert_eq!(o.capacity, OLD.capacity * 2);
        let [_, n, _] = Scenario::ConnectionLimit.profiles(10);
        assert!(n.capacity >= 1 && n.max_connections >= 1);
    }

    #[test]
    fn admission_stays_under_each_env_capacity() {
        for (env, p) in Env::ALL
            .into_iter()
            .zip(Scenario::Herd.profiles(BASE_USERS))
        {
            let text = admission_lines(env, &p);
            let table: toml::Table = toml::from_str(&text).expect("valid TOML");
            let max = table["max_inflight"].as_integer().expect("integer") as usize;
            assert!(max >= 1 && max < p.capacity * p.instances, "{env}: {text}");
        }
    }
}
