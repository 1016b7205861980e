//! Human (and `--json`) output of the operator commands: short, aligned, readable at 3 a.m.

use std::fmt::Write;

use crate::api::{EnvStats, Event, GateVerdict, MirrorStatus, PlanInfo, Status};

pub fn status(s: &Status, json: bool) -> String {
    if json {
        return format!("{}\n", serde_json::to_string_pretty(s).unwrap_or_default());
    }
    let mut o = String::new();
    let plan = s.plan.as_deref().unwrap_or("-");
    let _ = writeln!(
        o,
        "state    {}   plan {plan}{}",
        s.state,
        s.run_id.map(|r| format!(" (run {r})")).unwrap_or_default()
    );
    let mut line = format!("weight   {}% on NEW", fmt_num(s.weight));
    if s.steps > 0 {
        let _ = write!(line, "   step {}/{}", s.step, s.steps);
    }
    if let Some(h) = s.hold_remaining_s {
        let _ = write!(line, "   hold {:.0}s left", h);
    }
    let _ = writeln!(o, "{line}");
    if let Some(r) = &s.reason {
        let _ = writeln!(o, "why      {r}");
    }
    let _ = writeln!(
        o,
        "\n{:<9} {:>8} {:>7} {:>8} {:>8} {:>7} {:>6}",
        "", "rps", "errors", "p50 ms", "p99 ms", "active", "share"
    );
    for (name, e) in [
        ("old", &s.envs.old),
        ("new", &s.envs.new),
        ("fallback", &s.envs.fallback),
        ("users", &s.envs.users),
    ] {
        let _ = writeln!(o, "{}", env_row(name, e));
    }
    mirror(&mut o, &s.mirror);
    if let Some(h) = &s.headroom {
        let verdict = if h.headroom_rps >= 0.0 {
            "a rollback now would fit"
        } else {
            "a rollback now would overload OLD"
        };
        let _ = writeln!(o, "headroom {}: {verdict}", h.text);
    }
    if s.displaced.to_fallback + s.displaced.failed > 0 {
        let _ = writeln!(
            o,
            "displaced {} to fallback, {} failed ({:.1}% of user requests)",
            s.displaced.to_fallback,
            s.displaced.failed,
            s.displaced.rate * 100.0
        );
    }
    let p = &s.protection;
    if p.shed + p.tunnels_drained + p.budget_exhausted + s.tunnels_to_move > 0 {
        let _ = writeln!(
            o,
            "protection: shed {} ({} waiting room, {} new sessions limited), tunnels drained {}, \
             to move {}, retries {}, retry budget refused {}",
            p.shed,
            p.waiting_room,
            p.sessions_limited,
            p.tunnels_drained,
            s.tunnels_to_move,
            p.retries,
            p.budget_exhausted
        );
    }
    if !s.gates.is_empty() {
        let _ = writeln!(o, "\ngates");
        for g in &s.gates {
            let value = g.value.map_or("-".to_owned(), fmt_num);
            let verdict = match g.verdict {
                GateVerdict::Failing => format!("FAILING {}/{}", g.failing_for, g.after),
                GateVerdict::NotEnoughTraffic => "not enough traffic".to_owned(),
                GateVerdict::NoAnswer => "NO ANSWER".to_owned(),
                GateVerdict::Ok => g.verdict.as_str().to_owned(),
            };
            let _ = writeln!(
                o,
                "  {:<24} {:<20} {:>10} {:<22} {}",
                g.name, verdict, value, g.threshold, g.on_fail
            );
        }
    }
    if let Some(f) = &s.fleet {
        fleet(&mut o, f);
    }
    o
}

/// The fleet's instances under the status (fleet mode only).
fn fleet(o: &mut String, f: &crate::api::FleetView) {
    let leader = f.leader.as_deref().unwrap_or("none");
    let _ = writeln!(
        o,
        "\nfleet    {} instance(s), leader {leader}, this is {}",
        f.instances.len(),
        f.instance
    );
    if !f.etcd_ok {
        let _ = writeln!(
            o,
            "ETCD UNREACHABLE: serving at the last committed weight, deciding nothing ({})",
            f.etcd_error.as_deref().unwrap_or("no answer")
        );
    }
    for i in &f.instances {
        let mark = if i.leader { "leader" } else { "" };
        let _ = writeln!(
            o,
            "  {:<24} {:<6} admin {:<21} proxy {:<21} {:>8.1} rps",
            i.id, mark, i.admin, i.proxy, i.rps
        );
    }
}

/// Shadow traffic: NEW's numbers on the copies as a row, what was not copied, and the latest
/// mismatches; nothing when no copy was made or is being made.
fn mirror(o: &mut String, m: &MirrorStatus) {
    if !m.in_play() {
        return;
    }
    let _ = writeln!(o, "{}", env_row("mirror", &m.stats));
    let mut line = format!(
        "shadow   {}% of OLD's users copied to NEW, {} dropped, {} not copied",
        fmt_num(m.percent),
        m.dropped,
        m.skipped
    );
    if m.compare || m.compared > 0 {
        let _ = write!(
            line,
            "; {} compared, {} differed ({:.2}%)",
            m.compared,
            m.mismatches,
            m.mismatch_rate * 100.0
        );
    }
    let _ = writeln!(o, "{line}");
    for x in &m.samples {
        let new = x
            .new_status
            .map_or("no answer".to_owned(), |s| s.to_string());
        let _ = writeln!(
            o,
            "  differs  {} {}  old {} new {}  ({})",
            x.method, x.path, x.old_status, new, x.what
        );
    }
}

fn env_row(name: &str, e: &EnvStats) -> String {
    format!(
        "{:<9} {:>8.1} {:>6.2}% {:>8.1} {:>8.1} {:>7} {:>5.1}%",
        name,
        e.rps,
        e.error_rate * 100.0,
        e.p50_ms,
        e.p99_ms,
        e.active,
        e.share * 100.0
    )
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

pub fn events(list: &[Event], json: bool) -> String {
    let mut o = String::new();
    for e in list {
        if json {
            let _ = writeln!(o, "{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            let secs = e.at_ms / 1000;
            let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
            let _ = writeln!(
                o,
                "#{:<5} {h:02}:{m:02}:{s:02}Z {:<12} {:<14} {:<18} {:>5}%  {}",
                e.id,
                e.actor,
                e.action,
                e.state.as_str(),
                fmt_num(e.weight),
                e.reason
            );
        }
    }
    o
}

pub fn plans(list: &[PlanInfo], json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(list).unwrap_or_default()
        );
    }
    list.iter()
        .map(|p| format!("{}  {}\n", &p.hash[..p.hash.len().min(12)], p.name))
        .collect()
}
