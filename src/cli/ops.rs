//! What each sub-command does: `serve` runs the server; the operator commands call the API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{render, Command, Conn, DemoArgs};
use crate::api::Verb;
use crate::client::{Client, ClientError};
use crate::config::Config;

/// Exit code for bad usage or config (EX_USAGE / EX_CONFIG style).
const EXIT_CONFIG: u8 = 78;
/// Exit code when the API refused the command (409 and friends).
const EXIT_REFUSED: u8 = 2;

pub async fn serve(path: PathBuf) -> ExitCode {
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("cutover: not started: fix the config above");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = crate::serve::run(cfg, crate::serve::signal(), |bound, access| {
        println!("cutover: proxy listening on {}", bound.proxy);
        if bound.proxy_tls {
            println!("cutover: proxy speaks HTTPS (TLS 1.2/1.3, ALPN h2 and http/1.1)");
        }
        println!("cutover: admin API on {}", bound.admin_url());
        if let Some((file, n)) = access.tokens_file() {
            println!("cutover: {n} named operator(s) from {}", file.display());
        }
        match access.shared().map(|t| &t.source) {
            Some(crate::control::auth::TokenSource::Generated(p)) => {
                println!("cutover: admin token in {}", p.display());
            }
            Some(_) if access.tokens_file().is_some() => {
                println!(
                    "cutover: the shared token is accepted too, as `{}`",
                    crate::control::auth::SHARED_NAME
                );
            }
            _ => {}
        }
    })
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cutover: not started: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cutover demo`: run it, print the summary, write it as JSON if asked.
pub async fn demo(args: DemoArgs) -> ExitCode {
    use std::io::IsTerminal;
    let mut headless = args.headless;
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !headless && !interactive {
        eprintln!("cutover demo: no interactive terminal for the console: running --headless");
        headless = true;
    }
    let opts = crate::demo::DemoOptions {
        scenario: args.scenario,
        headless,
        users: args.users,
        speed: args.speed,
        seed: args.seed,
        protection: !args.no_protection,
        ..Default::default()
    };
    let summary = match crate::demo::run(opts).await {
        Ok(s) => s,
        Err(
            e @ (crate::demo::DemoError::Users(_)
            | crate::demo::DemoError::Speed(_)
            | crate::demo::DemoError::NoProtection(_)),
        ) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("cutover demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{summary}");
    if let Some(path) = &args.summary_json {
        let written = serde_json::to_string_pretty(&summary)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("error: cannot write the summary to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if summary.ended_by == crate::demo::Ending::Interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

/// Find the API URL and token: flags, then environment, then the server config.
pub(super) fn connect(conn: &Conn, actor: &str) -> Result<Client, String> {
    let cfg_path = conn.config.clone().or_else(|| {
        Path::new("cutover.toml")
            .exists()
            .then(|| PathBuf::from("cutover.toml"))
    });
    let cfg = match &cfg_path {
        Some(p) => Some(Config::load(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let admin = conn.admin.clone().unwrap_or_else(|| match &cfg {
        Some(c) if !c.admin_tls.is_empty() => format!("https://{}", c.admin),
        Some(c) => format!("http://{}", c.admin),
        None => "http://127.0.0.1:9900".to_owned(),
    });
    let token_path = conn.token_file.clone().or_else(|| {
        if std::env::var("CUTOVER_TOKEN").is_ok_and(|t| !t.trim().is_empty()) {
            return None;
        }
        // With named operators there is no generated token: each operator brings their own.
        cfg.as_ref().and_then(|c| {
            c.token_file.clone().or_else(|| {
                c.tokens_file
                    .is_none()
                    .then(|| c.store_path.join("admin.token"))
            })
        })
    });
    let token = match token_path {
        Some(p) => Some(
            std::fs::read_to_string(&p)
                .map_err(|e| format!("cannot read the token file {}: {e}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("CUTOVER_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned()),
    };
    if let (None, Some(c)) = (&token, &cfg) {
        if let Some(file) = &c.tokens_file {
            return Err(format!(
                "this server names its operators ({}): give your own token with --token-file \
                 FILE or CUTOVER_TOKEN",
                file.display()
            ));
        }
    }
    Client::with_ca_file(&admin, token, actor, conn.ca_file.as_deref()).map_err(|e| e.to_string())
}

pub async fn operator(cmd: Command) -> ExitCode {
    let conn = match &cmd {
        Command::Start { conn, .. }
        | Command::Status { conn }
        | Command::SetWeight { conn, .. }
        | Command::Events { conn, .. }
        | Command::Plans { conn }
        | Command::Console { conn } => conn.clone(),
        Command::Pause(a)
        | Command::Resume(a)
        | Command::Approve(a)
        | Command::Rollback(a)
        | Command::Abort(a) => a.conn.clone(),
        Command::Serve { .. }
        | Command::Config { .. }
        | Command::Store { .. }
        | Command::Plan { .. }
        | Command::Metrics { .. }
        | Command::Demo(_) => return ExitCode::FAILURE,
    };
    let actor = if matches!(cmd, Command::Console { .. }) {
        "console"
    } else {
        "cli"
    };
    let client = match connect(&conn, actor) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let json = conn.json;
    let result = match cmd {
        Command::Status { .. } => client.status().await.map(|s| render::status(&s, json)),
        Command::Start { plan_file, .. } => match std::fs::read_to_string(&plan_file) {
            Ok(text) => client.start(text).await.map(|s| render::status(&s, json)),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", plan_file.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        Command::Pause(a) => verb(&client, Verb::Pause, a.reason, json).await,
        Command::Resume(a) => verb(&client, Verb::Resume, a.reason, json).await,
        Command::Approve(a) => verb(&client, Verb::Approve, a.reason, json).await,
        Command::Rollback(a) => verb(&client, Verb::Rollback, a.reason, json).await,
        Command::Abort(a) => verb(&client, Verb::Abort, a.reason, json).await,
        Command::SetWeight {
            pct, ramp, reason, ..
        } => match ramp {
            Some(ramp) => {
                client
                    .set_weight_ramped(pct, &ramp, reason.as_deref())
                    .await
            }
            None => client.set_weight(pct, reason.as_deref()).await,
        }
        .map(|s| render::status(&s, json)),
        Command::Plans { .. } => client.plans().await.map(|p| render::plans(&p, json)),
        Command::Events { since, follow, .. } => events(&client, since, follow, json).await,
        Command::Console { .. } => return console(client).await,
        Command::Serve { .. }
        | Command::Config { .. }
        | Command::Store { .. }
        | Command::Plan { .. }
        | Command::Metrics { .. }
        | Command::Demo(_) => return ExitCode::FAILURE,
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e, json),
    }
}

/// `POST /v1/{verb}`, answered with the status.
async fn verb(
    client: &Client,
    verb: Verb,
    reason: Option<String>,
    json: bool,
) -> Result<String, ClientError> {
    client
        .action(verb, reason.as_deref())
        .await
        .map(|s| render::status(&s, json))
}

async fn events(
    client: &Client,
    since: u64,
    follow: bool,
    json: bool,
) -> Result<String, ClientError> {
    if !follow {
        return client
            .events(since)
            .await
            .map(|list| render::events(&list, json));
    }
    let mut stream = client.follow(since).await?;
    while let Some(ev) = stream.next().await {
        print!("{}", render::events(&[ev?], json));
    }
    Ok(String::new())
}

async fn console(client: Client) -> ExitCode {
    match crate::console::run(client).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn report(e: &ClientError, json: bool) -> ExitCode {
    match e {
        ClientError::Api { status, body } => {
            if json {
                println!("{}", serde_json::to_string(body).unwrap_or_default());
            } else {
                eprintln!("error: {}", body.error);
                for d in &body.details {
                    eprintln!("  {}:{}: {} — {}", d.line, d.col, d.message, d.hint);
                }
                eprintln!("hint: {}", body.hint);
            }
            if *status == 409 {
                ExitCode::from(EXIT_REFUSED)
            } else {
                ExitCode::FAILURE
            }
        }
        other => {
            eprintln!("error: {other}");
            ExitCode::FAILURE
        }
    }
}
