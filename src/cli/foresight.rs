//! `cutover metrics export` and `cutover plan simulate`: record → export → simulate → adjust.
//!
//! Owns: the export's paging and its time range (`--run N`, `--since T`), reading a traffic
//! file (one JSON tick a line, errors as `file:line`), and printing a simulation. Must not
//! touch: the replay itself — that is [`crate::foresight::simulate`], pure, fed from here.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::ops::{connect, report};
use super::Conn;
use crate::api::Event;
use crate::client::{Client, ClientError};
use crate::foresight::{simulate, Approvals, Capacity, Simulation, TickRecord};

/// `cutover metrics export`: every recorded tick of run `run`, or since `since`, as JSON lines.
pub async fn export(conn: &Conn, run: Option<u64>, since: Option<&str>) -> ExitCode {
    let (from, to) = match since.map(since_ms).transpose() {
        Ok(from) => (from.unwrap_or(0), u64::MAX),
        Err(e) => {
            eprintln!("error: --since {e}");
            return ExitCode::from(78);
        }
    };
    let client = match connect(conn, "cli") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(78);
        }
    };
    let range = match run {
        Some(id) => match run_range(&client, id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                eprintln!("error: no run {id} in the event log; `cutover events` lists the runs");
                return ExitCode::FAILURE;
            }
            Err(e) => return report(&e, conn.json),
        },
        None => (from, to),
    };
    let mut out = std::io::stdout().lock();
    let mut from = range.0;
    loop {
        let page = match client.ticks(from, range.1).await {
            Ok(p) => p,
            Err(e) => return report(&e, conn.json),
        };
        for t in &page.ticks {
            let line = serde_json::to_string(t).unwrap_or_default();
            if writeln!(out, "{line}").is_err() {
                return ExitCode::FAILURE;
            }
        }
        match page.next {
            Some(next) if next > from => from = next,
            _ => break,
        }
    }
    ExitCode::SUCCESS
}

/// `--since`: a duration back from now (`2h`), an RFC 3339 time, or ms since the epoch.
fn since_ms(s: &str) -> Result<u64, String> {
    let now = std::time::SystemTime::now();
    let at = if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    } else if let Ok(d) = humantime::parse_duration(s) {
        now.checked_sub(d)
    } else if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        Some(t)
    } else {
        return Err(format!(
            "`{s}` is not a time: give a duration back from now (`2h`), a time \
             (`2026-12-05T14:00:00Z`) or milliseconds since the epoch"
        ));
    };
    Ok(at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64))
}

/// From run `id`'s first event to its last when it ended (open-ended while it runs).
async fn run_range(client: &Client, id: u64) -> Result<Option<(u64, u64)>, ClientError> {
    let mut since = 0;
    let mut found: Vec<Event> = Vec::new();
    loop {
        let page = client.events(since).await?;
        let Some(last) = page.last() else { break };
        since = last.id;
        found.extend(page.into_iter().filter(|e| e.run_id == Some(id)));
    }
    let (Some(first), Some(last)) = (found.first(), found.last()) else {
        return Ok(None);
    };
    let to = if last.state.is_active() {
        u64::MAX
    } else {
        last.at_ms + 1
    };
    Ok(Some((first.at_ms, to)))
}

/// A traffic file: one [`TickRecord`] a line (blank lines and `#` comments skipped), in time
/// order. Errors name the file and the line.
pub fn read_traffic(path: &Path) -> Result<Vec<TickRecord>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{shown}: cannot read the traffic file: {e}"))?;
    parse_traffic(&text).map_err(|(line, e)| format!("{shown}:{line}: {e}"))
}

/// The lines of a traffic file; `Err((line, why))` for the first bad one.
pub fn parse_traffic(text: &str) -> Result<Vec<TickRecord>, (usize, String)> {
    let mut out: Vec<TickRecord> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let rec: TickRecord = serde_json::from_str(t).map_err(|e| {
            (
                i + 1,
                format!(
                    "{e} — each line is one tick: {{\"t_ms\": 0, \"weight\": 10, \"window_s\": \
                     10, \"scopes\": {{\"new\": {{\"requests\": 100, \"errors\": 1}}}}}} \
                     (docs/plans.md, \"Traffic files\")"
                ),
            )
        })?;
        if !(0.0..=100.0).contains(&rec.weight) {
            return Err((i + 1, format!("weight {} is not a percentage", rec.weight)));
        }
        if let Some(prev) = out.last() {
            if rec.t_ms <= prev.t_ms {
                return Err((
                    i + 1,
                    format!(
                        "t_ms {} is not after the previous line's {}: ticks go in time order",
                        rec.t_ms, prev.t_ms
                    ),
                ));
            }
        }
        out.push(rec);
    }
    if out.is_empty() {
        return Err((1, "no ticks: the file has no JSON lines".into()));
    }
    Ok(out)
}

/// Options of `plan simulate` beyond the files.
pub struct SimulateArgs<'a> {
    pub plan: &'a Path,
    pub traffic: &'a Path,
    pub approvals: Approvals,
    pub capacity: Capacity,
    pub json: bool,
}

/// `cutover plan simulate`: exit 0 with the decisions, or 78 for a bad plan or traffic file.
pub fn simulate_files(a: &SimulateArgs<'_>) -> ExitCode {
    match run_simulation(a) {
        Ok(sim) => {
            print!("{}", render(&sim, a.json));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(78)
        }
    }
}

/// Read both files and replay.
pub fn run_simulation(a: &SimulateArgs<'_>) -> Result<Simulation, String> {
    let shown = a.plan.display();
    let text = std::fs::read_to_string(a.plan)
        .map_err(|e| format!("{shown}: cannot read the plan: {e}"))?;
    let plan = crate::plan::parse(&text).map_err(|diags| {
        let lines: Vec<String> = diags
            .iter()
            .map(|d| d.with_file(&shown).to_string())
            .collect();
        lines.join("\n")
    })?;
    let traffic = read_traffic(a.traffic)?;
    Ok(simulate(&plan, &traffic, a.approvals, &a.capacity))
}

/// The decisions one a line, as the event log shows them, then the end state.
pub fn render(sim: &Simulation, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(sim).unwrap_or_default()
        );
    }
    let mut o = String::new();
    for d in &sim.decisions {
        let t = d.t_s as u64;
        let (h, m, s) = (t / 3600, (t / 60) % 60, t % 60);
        let _ = write!(
            o,
            "+{h:02}:{m:02}:{s:02} {:<18} {:<15} {:>5}% → {:>5}%  {}",
            d.actor,
            d.action.as_str(),
            d.weight_before,
            d.weight_after,
            d.reason
        );
        if let (Some(g), Some(v)) = (&d.gate, d.value) {
            let th = d
                .threshold
                .as_ref()
                .map_or(String::new(), |t| t.to_string());
            let _ = write!(o, " [gate \"{g}\" = {v} vs {th}]");
        }
        o.push('\n');
    }
    let e = &sim.end;
    let _ = writeln!(
        o,
        "end: {} at step {} of {}, weight {}% after {:.0}s of traffic ({} ticks){}",
        e.state.as_str(),
        e.step,
        e.steps,
        e.weight,
        e.replayed_s,
        e.ticks,
        e.reason
            .as_ref()
            .map_or(String::new(), |r| format!(" — {r}"))
    );
    if let Some(h) = &e.headroom {
        let _ = writeln!(o, "headroom: {}", h.text());
    }
    for c in &sim.caveats {
        let _ = writeln!(o, "not simulated: {c}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ms_a_duration_back_or_a_time() {
        assert_eq!(since_ms("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(since_ms("2026-12-05T14:00:00Z"), Ok(1_796_479_200_000));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let two_hours_ago = since_ms("2h").expect("a duration");
        assert!((now - 7_200_000 - 5_000..=now - 7_200_000 + 5_000).contains(&two_hours_ago));
        let err = since_ms("yesterday").expect_err("not a time");
        assert!(err.contains("`yesterday` is not a time"), "{err}");
    }

    #[test]
    fn a_traffic_file_must_be_in_time_order_and_not_empty() {
        let ok = "# comment\n\n{\"t_ms\": 1, \"weight\": 5}\n{\"t_ms\": 2, \"weight\": 5}\n";
        assert_eq!(parse_traffic(ok).map(|t| t.len()), Ok(2));
        let back = "{\"t_ms\": 2, \"weight\": 5}\n{\"t_ms\": 1, \"weight\": 5}\n";
        let (line, why) = parse_traffic(back).expect_err("out of order");
        assert_eq!(line, 2);
        assert!(why.contains("ticks go in time order"), "{why}");
        assert!(parse_traffic("# nothing\n").is_err());
        let (_, why) = parse_traffic("{\"t_ms\": 1, \"weight\": 150}\n").expect_err("weight");
        assert!(why.contains("not a percentage"), "{why}");
    }
}
