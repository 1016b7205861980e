//! What the demo hands the real system: the plan (`plans/demo.toml`, its holds and rollback ramp
//! compressed by `--speed`) and the server config (TOML text, parsed by [`Config::parse`] like
//! any `cutover.toml`, so keys added to the config later need no change here).
//!
//! Must not touch: the server's internals — the text is all it gets.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use toml_edit::{value, DocumentMut, Item};

use super::scenario::{self, Scenario};
use super::world::World;
use crate::config::{Config, ConfigError};
use crate::router::Env;

/// The plan `cutover demo` runs, as shipped.
pub const DEMO_PLAN: &str = include_str!("../../plans/demo.toml");

/// The steps the shadow scenario runs before the plan's own: every user stays on OLD while
/// 10 %, then 40 % of them are copied to NEW.
const MIRROR_STEPS: &str = "[[steps]]\nweight = 0\nmirror = 10\nhold = \"4s\"\n\n\
                            [[steps]]\nweight = 0\nmirror = 40\nhold = \"6s\"\n";

/// The demo plan with every step's `hold` and the rollback `ramp` divided by `speed`. The
/// analysis interval and window stay: metrics move in whole seconds.
pub fn demo_plan(speed: f64) -> String {
    plan_for(Scenario::Clean, speed)
}

/// [`demo_plan`] as `scenario` runs it: the shadow scenario first copies traffic to NEW in
/// steps of its own ([`MIRROR_STEPS`]).
pub fn plan_for(scenario: Scenario, speed: f64) -> String {
    let Ok(mut doc) = DEMO_PLAN.parse::<DocumentMut>() else {
        return DEMO_PLAN.to_owned();
    };
    if scenario == Scenario::Shadow {
        prepend_mirror_steps(&mut doc);
    }
    if let Some(steps) = doc.get_mut("steps").and_then(Item::as_array_of_tables_mut) {
        for step in steps.iter_mut() {
            if let Some(item) = step.get_mut("hold") {
                scale_duration(item, speed);
            }
        }
    }
    if let Some(item) = doc.get_mut("rollback").and_then(|r| r.get_mut("ramp")) {
        scale_duration(item, speed);
    }
    doc.to_string()
}

fn prepend_mirror_steps(doc: &mut DocumentMut) {
    let Ok(extra) = MIRROR_STEPS.parse::<DocumentMut>() else {
        return;
    };
    let (Some(first), Some(steps)) = (
        extra.get("steps").and_then(Item::as_array_of_tables),
        doc.get_mut("steps").and_then(Item::as_array_of_tables_mut),
    ) else {
        return;
    };
    let mut all = first.clone();
    for step in steps.iter() {
        all.push(step.clone());
    }
    *steps = all;
}

fn scale_duration(item: &mut Item, speed: f64) {
    let Some(d) = item
        .as_str()
        .and_then(|s| humantime::parse_duration(s).ok())
    else {
        return;
    };
    let ms = (d.as_secs_f64() * 1000.0 / speed).round() as u64;
    let decor = item.as_value().map(|v| v.decor().clone());
    *item = value(format!("{ms}ms"));
    if let (Some(decor), Some(v)) = (decor, item.as_value_mut()) {
        *v.decor_mut() = decor;
    }
}

/// Server config text for `world`, the store and token under `dir`; with the herd's
/// admission-control keys when `admission` is set.
pub fn config_text(world: &World, dir: &Path, scenario: Scenario, admission: bool) -> String {
    let quote = |p: &Path| toml_edit::Value::from(p.display().to_string()).to_string();
    let mut text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken_file = {}\n\n\
         [store]\npath = {}\n\n\
         [routing]\nuser_key = [\"header:x-user-id\", \"client_ip\"]\n\n\
         [retry_budget]\nratio = 0.5\n\n\
         [proxy]\ndrain_timeout = \"1s\"\n\n\
         [probes]\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        quote(&dir.join("admin.token")),
        quote(&dir.join("store")),
    );
    for env in Env::ALL {
        let group = world.group(env);
        let addrs: Vec<String> = group.addrs().iter().map(|a| format!("\"{a}\"")).collect();
        text.push_str(&format!(
            "\n[envs.{env}]\nupstreams = [{}]\nconnect_timeout = \"500ms\"\n\
             request_timeout = \"5s\"\nprobe_path = \"/healthz\"\n",
            addrs.join(", ")
        ));
        if admission && scenario.wants_admission() {
            text.push_str(&scenario::admission_lines(env, &group.profile));
        }
    }
    text
}

/// Whether the proxy runs with the scenario's herd protection (admission control, new-session
/// rates and, through them, the waiting room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// The scenario configures none.
    NotUsed,
    On,
    /// Turned off on request (`--no-protection`): the envs take the full herd.
    Off,
    /// This build's config refused the keys (only when they are not required).
    Unsupported,
}

impl Protection {
    pub fn is_on(self) -> bool {
        self == Protection::On
    }
}

/// Parse the config; `protect`: configure the scenario's protection (if it has one). When the
/// admission keys are refused and not required, parse it without them. Returns the config and
/// the protection it runs with.
pub fn config(
    world: &World,
    dir: &Path,
    scenario: Scenario,
    protect: bool,
) -> Result<(Config, Protection), ConfigError> {
    let parse =
        |admission| Config::parse(&config_text(world, dir, scenario, admission), "demo.toml");
    if !scenario.wants_admission() {
        return Ok((parse(false)?, Protection::NotUsed));
    }
    if !protect {
        return Ok((parse(false)?, Protection::Off));
    }
    match parse(true) {
        Ok(cfg) => Ok((cfg, Protection::On)),
        Err(e) if !scenario::REQUIRE_ADMISSION_CONTROL => {
            tracing::warn!("admission control refused by this build ({e}); running without it");
            Ok((parse(false)?, Protection::Unsupported))
        }
        Err(e) => Err(e),
    }
}

/// The plan's hold at `speed`, as the server will see it (for tests and the docs).
pub fn scaled(d: Duration, speed: f64) -> Duration {
    Duration::from_millis((d.as_secs_f64() * 1000.0 / speed).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Step;

    #[test]
    fn the_shipped_demo_plan_is_valid_at_any_speed() {
        for speed in [0.5, 1.0, 2.0, 3.0] {
            let text = demo_plan(speed);
            let plan = crate::plan::parse(&text).unwrap_or_else(|e| panic!("{speed}: {e:?}"));
            let original = crate::plan::parse(DEMO_PLAN).expect("demo.toml parses");
            assert_eq!(plan.steps.len(), original.steps.len());
            for (a, b) in plan.steps.iter().zip(&original.steps) {
                assert_eq!(a.weight, b.weight);
                assert_eq!(a.hold, scaled(b.hold, speed));
            }
            assert_eq!(plan.rollback.ramp, scaled(original.rollback.ramp, speed));
            assert_eq!(plan.analysis, original.analysis);
        }
    }

    #[test]
    fn the_shadow_scenario_mirrors_before_the_plan_moves_anyone() {
        let plan = crate::plan::parse(&plan_for(Scenario::Shadow, 2.0)).expect("valid plan");
        let original = crate::plan::parse(DEMO_PLAN).expect("demo.toml parses");
        assert_eq!(plan.steps.len(), original.steps.len() + 2);
        let mirrors: Vec<f64> = plan.steps[..2].iter().map(|s| s.mirror.percent()).collect();
        assert_eq!(mirrors, [10.0, 40.0]);
        assert!(plan.steps[..2]
            .iter()
            .all(|s| s.weight == crate::router::Weight::ZERO));
        assert_eq!(plan.steps[1].hold, Duration::from_secs(3));
        assert_eq!(
            plan.steps[2..],
            original.steps[..]
                .iter()
                .map(|s| Step {
                    hold: scaled(s.hold, 2.0),
                    ..s.clone()
                })
                .collect::<Vec<_>>()[..]
        );
    }
}
