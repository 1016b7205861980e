//! A stable-toolchain smoke fuzzer for the plan and config parsers (issue 9). The
//! coverage-guided targets live in `fuzz/` (cargo-fuzz, run in CI by `.ci/fuzz`); this one
//! runs with every `cargo test`, with no extra tool.
//!
//! Inputs: arbitrary bytes (lossily made UTF-8), and valid plans/configs mutated by byte
//! flips, insertions of TOML-significant tokens, deletions, line swaps and truncations.
//! Properties: the parser never panics, and every error it reports has a `line:col` inside
//! the text. The run is bounded by a case count and a time budget; the seed is printed and can
//! be fixed with `CUTOVER_FUZZ_SEED` to replay a failure.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use cutover::config::{Config, ConfigError};
use cutover::diag::position_in;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: usize = 10_000;
const BUDGET: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
[listen]
addr = "127.0.0.1:8080"
[admin]
addr = "127.0.0.1:9900"
token_file = "token"
[store]
path = "data"
[envs.old]
upstreams = ["127.0.0.1:9001", "127.0.0.1:9002"]
connect_timeout = "1s"
request_timeout = "30s"
[envs.new]
upstreams = ["127.0.0.1:9011"]
probe_path = "/healthz"
[envs.fallback]
upstreams = ["127.0.0.1:9021"]
[routing]
user_key = ["header:x-user-id", "cookie:uid", "query:u", "client_ip"]
override_secret = "s3cret"
trust_forwarded = false
[retry_budget]
ratio = 0.2
window = "10s"
min_per_sec = 5
[proxy]
drain_timeout = "10s"
[probes]
interval = "1s"
timeout = "1s"
[limits]
max_connections = 100
header_read_timeout = "5s"
max_header_bytes = 16384
h2_max_concurrent_streams = 64
"#;

/// Tokens that tend to reach odd corners of a TOML parser and of our validators.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    ",",
    ".",
    "#",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\\",
    "\\u0000",
    "-1",
    "0",
    "1e309",
    "nan",
    "inf",
    "-0.0",
    "18446744073709551616",
    "9223372036854775807",
    "true",
    "\"0s\"",
    "\"-1s\"",
    "\"999999999999h\"",
    "\"1.5.5ms\"",
    "[[steps]]",
    "[[gates]]",
    "[[steps.checks]]",
    "[analysis]",
    "[rollback]",
    "[limits]",
    "weight",
    "hold",
    "approval",
    "metric",
    "max",
    "ratio",
    "max_ratio_of",
    "on_fail",
    "\"users.error_rate\"",
    "\"new.p99_ms\"",
    "upstreams",
    "addr",
    "\"127.0.0.1:0\"",
    "\"[::1]:80\"",
    "é",
    "\u{FEFF}",
    "\u{10FFFF}",
    "𝓍",
    "\u{0}",
    "1979-05-27T07:32:00Z",
];

fn seeds() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut plans: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    plans.push(
        "name = \"p\"\n[[steps]]\nweight = 10\nhold = \"1s\"\n[[steps]]\nweight = 100\n\
         [[gates]]\nname = \"g\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p99_ms\"\nratio = 2.0\n"
            .into(),
    );
    plans
}

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..=6) {
        let at = rng.gen_range(0..=bytes.len());
        match rng.gen_range(0..7) {
            0 if !bytes.is_empty() => {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                bytes.splice(at..at, t.bytes());
            }
            2 if at < bytes.len() => {
                let end = (at + rng.gen_range(1..32)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => bytes.truncate(at),
            4 => {
                let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
                if lines.len() > 2 {
                    let (a, b) = (rng.gen_range(0..lines.len()), rng.gen_range(0..lines.len()));
                    lines.swap(a, b);
                }
                bytes = lines.join(&b'\n');
            }
            5 => {
                let n = rng.gen_range(1..16);
                let junk: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                bytes.splice(at..at, junk);
            }
            _ => {
                // Duplicate a slice (repeated keys and tables).
                let end = (at + rng.gen_range(1..64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn random_text(rng: &mut StdRng) -> String {
    let n = rng.gen_range(0..256);
    let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every problem found in one input, or a panic (as text).
fn check_plan(text: &str) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| cutover::plan::parse(text))) {
        Err(_) => Err("plan::parse panicked".into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(diags)) => {
            if diags.is_empty() {
                return Err("an invalid plan with no diagnostic".into());
            }
            match diags.iter().find(|d| !position_in(text, d.line, d.col)) {
                Some(d) => Err(format!("diagnostic outside the text: {d}")),
                None => Ok(()),
            }
        }
    }
}

fn check_config(text: &str) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| Config::parse(text, "fuzz.toml"))) {
        Err(_) => Err("Config::parse panicked".into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(ConfigError::Invalid(problems))) => {
            if problems.is_empty() {
                return Err("an invalid config with no problem".into());
            }
            match problems.iter().find(|p| !position_in(text, p.line, p.col)) {
                Some(p) => Err(format!("problem outside the text: {p}")),
                None => Ok(()),
            }
        }
        Ok(Err(e)) => Err(format!("unexpected error kind: {e}")),
    }
}

fn run(name: &str, seeds: &[String], check: fn(&str) -> Result<(), String>) {
    let seed = std::env::var("CUTOVER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = StdRng::seed_from_u64(seed);
    for s in seeds {
        assert_eq!(check(s), Ok(()), "{name}: a seed itself fails");
    }
    let start = Instant::now();
    let mut cases = 0;
    // Silence the default panic printer while probing; panics are reported below.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while cases < CASES && start.elapsed() < BUDGET {
        let text = if cases % 5 == 0 {
            random_text(&mut rng)
        } else {
            let i = rng.gen_range(0..seeds.len());
            mutate(&mut rng, &seeds[i])
        };
        if let Err(why) = check(&text) {
            failure = Some((why, text));
            break;
        }
        cases += 1;
    }
    std::panic::set_hook(hook);
    if let Some((why, text)) = failure {
        panic!("{name} (seed {seed}, case {cases}): {why}\ninput: {text:?}");
    }
    eprintln!(
        "{name}: {cases} cases in {:?} (seed {seed})",
        start.elapsed()
    );
    assert!(
        cases >= CASES / 4,
        "{name}: only {cases} cases ran within {BUDGET:?}"
    );
}

#[test]
fn the_plan_parser_never_panics_and_positions_every_error() {
    run("plan", &seeds(), check_plan);
}

#[test]
fn the_config_parser_never_panics_and_positions_every_error() {
    run("config", &[CONFIG.to_owned()], check_config);
}

/// Inputs the fuzzers found or that sit on known edges, kept as regressions.
#[test]
fn regressions() {
    for text in [
        "",
        "\u{FEFF}",
        "name = \"x\"\n[[steps]]\nweight = 1e309\n",
        "name = \"x\"\n[[steps]]\nweight = 50\nhold = \"18446744073709551616s\"\n",
        "[[steps]]\n[[steps]]\n[[steps]]",
        "name = \"é\"\nsalt = \"\u{0}\"\n[[steps]]\nweight = 100\n[[gates]]\nmetric = \"\"\n",
    ] {
        assert_eq!(check_plan(text), Ok(()), "plan {text:?}");
    }
    for text in [
        "",
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs]\n",
        "[listen]\naddr = 5\n",
        "[limits]\nmax_connections = -1\n",
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"é:1\"]\n",
    ] {
        assert_eq!(check_config(text), Ok(()), "config {text:?}");
    }
}
