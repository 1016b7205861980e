//! Config reload (SIGHUP or `POST /v1/reload`): all or nothing.
//!
//! Owns: reading the config file again, deciding whether the running server can take it, and
//! applying it — the data path ([`Live::apply`]: upstreams, timeouts, routing keys, override
//! secret, retry budget, limits), the probes (restarted with the new targets) and the
//! addresses pre-step checks use; and recording each attempt as an event through the
//! orchestrator's [`Handle`] ([`Reloader::reload_and_record`], for SIGHUP and the control API
//! alike). Other files a reload reads again (the control API's tokens file) join through
//! [`ReloadPart`]: checked with the config, applied only when everything is valid. Must not
//! touch: the run, the weight, the store.
//!
//! The listeners' certificates are read again on every reload and swapped for the
//! connections accepted afterwards (open ones keep theirs); one that does not load is refused
//! naming its file, and the reload changes nothing. Whether a listener speaks TLS at all is
//! fixed while the server runs.
//!
//! A config that does not validate is rejected whole with every `file:line:col` problem, and a
//! config that changes what a running process cannot change (its listeners, store, token file,
//! default salt) is rejected whole naming those keys; in both cases nothing changes. A valid
//! config is applied for every request that starts afterwards; requests in flight finish with
//! the state they started with and open connections and tunnels stay open.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use thiserror::Error;

use crate::analyzer::{run_probes, ProbeTarget};
use crate::config::{Config, ConfigError, ConfigProblem};
use crate::metrics::Metrics;
use crate::orchestrator::checks::{CheckUpstream, EnvAddrs};
use crate::orchestrator::recorder::Foresight;
use crate::orchestrator::Handle;
use crate::proxy::upstream::direct::Direct;
use crate::proxy::Live;
use crate::router::Env;
use crate::tls::ServerTls;
use crate::vocab::EventAction;

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("this server was not started from a config file, so there is nothing to reload")]
    NoSource,
    #[error("{0}")]
    Read(String),
    #[error("invalid config, nothing was changed:\n{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
    #[error("certificates of the {listener} listener refused, nothing was changed and the certificates in force stay: {source}")]
    Tls {
        listener: &'static str,
        source: crate::tls::TlsError,
    },
    #[error(
        "{} cannot change while the server runs (nothing was changed): restore {} in {file} and \
         reload, or restart the server to change {}",
        keys.join(", "),
        if keys.len() == 1 { "it" } else { "them" },
        if keys.len() == 1 { "it" } else { "them" }
    )]
    Fixed {
        file: String,
        keys: Vec<&'static str>,
    },
    /// A [`ReloadPart`] refused its file (e.g. the tokens file), every problem in the text.
    #[error("{0}\nnothing was changed")]
    Part(String),
}

/// Another file a reload reads again besides the config (the control API's tokens file).
/// [`ReloadPart::stage`] reads and checks it; the staged change is applied only if the config
/// and every other part are valid too, so a reload stays all or nothing.
pub trait ReloadPart: Send + Sync {
    /// Read the file again: `Err(why)` refuses the whole reload.
    fn stage(&self) -> Result<Staged, String>;
}

/// A checked change of a [`ReloadPart`], not applied yet.
pub struct Staged {
    /// What it changes, for the event (e.g. `admin.tokens_file (added bob)`); empty when nothing.
    pub changed: Vec<String>,
    /// Makes the change; called at most once, after the config was applied.
    pub apply: Box<dyn FnOnce() + Send>,
}

/// What a successful reload changed (config keys, e.g. `envs.new.upstreams`); empty when the
/// file was the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub file: PathBuf,
    pub changed: Vec<String>,
}

/// Holds the running config and everything a reload touches.
pub struct Reloader {
    live: Arc<Live>,
    env_addrs: Arc<ArcSwap<EnvAddrs>>,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
    parts: Vec<Arc<dyn ReloadPart>>,
    state: Mutex<State>,
    /// Where OLD's and FALLBACK's `capacity_rps` go (the driver's rollback headroom).
    foresight: Option<Arc<Foresight>>,
    /// The users' and the admin listener's certificates, when they speak TLS.
    listen_tls: Option<Arc<ServerTls>>,
    admin_tls: Option<Arc<ServerTls>>,
}

struct State {
    running: Config,
    probes: Option<tokio::task::JoinHandle<()>>,
}

impl Reloader {
    /// Start the probes for `cfg` and keep it as the running config.
    pub fn new(
        cfg: Config,
        live: Arc<Live>,
        env_addrs: Arc<ArcSwap<EnvAddrs>>,
        metrics: Arc<Metrics>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Reloader {
        let probes = spawn_probes(&cfg, &metrics, &stop);
        Reloader {
            live,
            env_addrs,
            metrics,
            stop,
            parts: Vec::new(),
            state: Mutex::new(State {
                running: cfg,
                probes,
            }),
            foresight: None,
            listen_tls: None,
            admin_tls: None,
        }
    }

    /// Give OLD's and FALLBACK's `capacity_rps` to `foresight` on every reload.
    pub fn with_foresight(mut self, foresight: Arc<Foresight>) -> Reloader {
        self.foresight = Some(foresight);
        self
    }

    /// Also read `part` again on every reload.
    pub fn with_part(mut self, part: Arc<dyn ReloadPart>) -> Reloader {
        self.parts.push(part);
        self
    }

    /// Reload these listeners' certificates too (read again on every reload: a renewed
    /// certificate is usually written over the old file).
    pub fn with_tls(
        mut self,
        listen: Option<Arc<ServerTls>>,
        admin: Option<Arc<ServerTls>>,
    ) -> Reloader {
        self.listen_tls = listen;
        self.admin_tls = admin;
        self
    }

    /// Read the config file again and apply it, or change nothing and say why.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| ReloadError::Read("a previous reload failed midway".into()))?;
        let Some(path) = state.running.source.clone() else {
            return Err(ReloadError::NoSource);
        };
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(ConfigError::Invalid(problems)) => return Err(ReloadError::Invalid(problems)),
            Err(e @ ConfigError::Read { .. }) => return Err(ReloadError::Read(e.to_string())),
        };
        let keys = fixed_changes(&state.running, &new);
        if !keys.is_empty() {
            return Err(ReloadError::Fixed {
                file: path.display().to_string(),
                keys,
            });
        }
        let staged = self
            .parts
            .iter()
            .map(|p| p.stage())
            .collect::<Result<Vec<Staged>, String>>()
            .map_err(ReloadError::Part)?;
        // Every certificate is read and checked before anything changes.
        let prepare = |tls: &Option<Arc<ServerTls>>, files, listener| match tls {
            Some(t) => t
                .prepare(files)
                .map(|next| Some((t.clone(), next)))
                .map_err(|source| ReloadError::Tls { listener, source }),
            None => Ok(None),
        };
        let (old, listen, admin) = (&state.running, &new.listen_tls, &new.admin_tls);
        let certs = [
            (
                "listen.tls_cert",
                old.listen_tls != *listen,
                prepare(&self.listen_tls, listen, "users'")?,
            ),
            (
                "admin.tls_cert",
                old.admin_tls != *admin,
                prepare(&self.admin_tls, admin, "admin")?,
            ),
        ];
        let mut changed = changes(&state.running, &new);
        self.live.apply(&new);
        for (key, files_moved, next) in certs {
            let Some((tls, next)) = next else { continue };
            if files_moved || tls.differs(&next) {
                changed.push(key.to_owned());
            }
            // Connections accepted from now on shake hands with the new certificates; open
            // ones keep the session they have.
            tls.install(next);
        }
        // An env whose limit was removed is unlimited now: stop exporting the old limit.
        for env in Env::ALL {
            let p = new.protect(env);
            if p.max_inflight.is_none() && !p.adaptive_limit {
                self.metrics.set_admission_limit(env, None);
            }
        }
        self.env_addrs.store(Arc::new(check_upstreams(&new)));
        if let Some(old) = state.probes.take() {
            old.abort();
        }
        state.probes = spawn_probes(&new, &self.metrics, &self.stop);
        if let Some(f) = &self.foresight {
            f.set_capacity(Foresight::capacity_of(&new));
        }
        state.running = new;
        for part in staged {
            changed.extend(part.changed);
            (part.apply)();
        }
        Ok(Reloaded {
            file: path,
            changed,
        })
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(p) = s.probes.take() {
                p.abort();
            }
        }
    }
}

/// Each env's upstreams as the pre-step checks reach them: the proxy's own way
/// ([`Direct`]), handed to the orchestrator, which never touches the request path itself.
pub fn check_upstreams(cfg: &Config) -> EnvAddrs {
    Env::ALL.map(|e| {
        Direct::of(cfg.env(e), cfg.hosts_file.as_deref())
            .into_iter()
            .map(|d| Arc::new(d) as Arc<dyn CheckUpstream>)
            .collect()
    })
}

impl CheckUpstream for Direct {
    fn describe(&self) -> String {
        self.target().to_string()
    }

    /// A name looked up again; the addresses found at start if that fails.
    fn addrs(&self) -> futures_util::future::BoxFuture<'_, Vec<std::net::SocketAddr>> {
        Box::pin(async {
            match self.lookup().await {
                Some(addrs) => addrs,
                None => self.first_addrs().to_vec(),
            }
        })
    }

    fn get<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        path: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<http::Response<hyper::body::Incoming>, String>>
    {
        Box::pin(Direct::get(self, addr, path))
    }
}

fn spawn_probes(
    cfg: &Config,
    metrics: &Arc<Metrics>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let targets: Vec<ProbeTarget> = Env::ALL
        .iter()
        .filter_map(|e| {
            let env = cfg.env(*e);
            env.probe_path.as_ref().map(|path| ProbeTarget {
                env: *e,
                config: env.clone(),
                path: path.clone(),
                hosts_file: cfg.hosts_file.clone(),
            })
        })
        .collect();
    if targets.is_empty() {
        return None;
    }
    Some(tokio::spawn(run_probes(
        targets,
        cfg.probe_interval,
        cfg.probe_timeout,
        metrics.clone(),
        stop.clone(),
    )))
}

/// Keys a running process cannot take a new value for.
fn fixed_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen.addr");
    }
    if old.workers != new.workers {
        keys.push("listen.workers");
    }
    if old.admin != new.admin {
        keys.push("admin.addr");
    }
    if old.listen_tls.is_empty() != new.listen_tls.is_empty() {
        keys.push("listen.tls_cert");
    }
    if old.admin_tls.is_empty() != new.admin_tls.is_empty() {
        keys.push("admin.tls_cert");
    }
    if old.token_file != new.token_file {
        keys.push("admin.token_file");
    }
    // The file's content is reloaded (a `ReloadPart`); where it is, or whether there is one, is not.
    if old.tokens_file != new.tokens_file {
        keys.push("admin.tokens_file");
    }
    if old.store_path != new.store_path {
        keys.push("store.path");
    }
    // Which store, and which fleet, an instance belongs to is fixed for its life.
    if old.fleet != new.fleet {
        keys.push("store.backend");
    }
    if old.salt != new.salt {
        keys.push("routing.salt");
    }
    // Read once, at start, by the driver's tick recorder.
    if old.ticks_retention != new.ticks_retention {
        keys.push("store.ticks_retention");
    }
    if old.prometheus != new.prometheus {
        keys.push("prometheus");
    }
    keys
}

/// The reloadable keys whose values differ.
fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for env in Env::ALL {
        let (a, b) = (old.env(env), new.env(env));
        let mut diff = |key: &str, differs: bool| {
            if differs {
                out.push(format!("envs.{env}.{key}"));
            }
        };
        diff("upstreams", a.upstreams != b.upstreams);
        diff("connect_timeout", a.connect_timeout != b.connect_timeout);
        diff("request_timeout", a.request_timeout != b.request_timeout);
        diff("probe_path", a.probe_path != b.probe_path);
        diff("protocol", a.protocol != b.protocol);
        diff("resolve_interval", a.resolve_interval != b.resolve_interval);
        diff("host_header", a.host_header != b.host_header);
        diff("sni", a.sni != b.sni);
        diff("ca_file", a.tls != b.tls);
        diff("capacity_rps", a.capacity_rps != b.capacity_rps);
    }
    let mut diff = |key: &str, differs: bool| {
        if differs {
            out.push(key.to_owned());
        }
    };
    diff("resolve.hosts_file", old.hosts_file != new.hosts_file);
    diff("routing.user_key", old.user_key != new.user_key);
    diff(
        "routing.override_*",
        old.override_header != new.override_header
            || old.override_secret_header != new.override_secret_header
            || old.override_secret != new.override_secret,
    );
    diff(
        "routing.trust_forwarded",
        old.trust_forwarded != new.trust_forwarded,
    );
    diff("retry_budget", old.retry_budget != new.retry_budget);
    diff(
        "probes",
        old.probe_interval != new.probe_interval || old.probe_timeout != new.probe_timeout,
    );
    diff(
        "proxy.drain_timeout",
        old.drain_timeout != new.drain_timeout,
    );
    diff("proxy.client_lane", old.client_lane != new.client_lane);
    diff("limits", old.limits != new.limits);
    for env in Env::ALL {
        let (a, b) = (old.protect(env), new.protect(env));
        let mut diff = |key: &str, differs: bool| {
            if differs {
                out.push(format!("envs.{env}.{key}"));
            }
        };
        diff("max_inflight", a.max_inflight != b.max_inflight);
        diff("adaptive_limit", a.adaptive_limit != b.adaptive_limit);
        diff("queue_timeout", a.queue_timeout != b.queue_timeout);
        diff(
            "new_sessions_per_sec",
            a.new_sessions.map(|r| r.per_sec) != b.new_sessions.map(|r| r.per_sec),
        );
        diff(
            "new_sessions_burst",
            a.new_sessions.map(|r| r.burst) != b.new_sessions.map(|r| r.burst),
        );
    }
    let (a, b) = (&old.protection, &new.protection);
    let mut diff = |key: &str, differs: bool| {
        if differs {
            out.push(key.to_owned());
        }
    };
    diff("tunnels.drain_rate", a.drain_rate != b.drain_rate);
    diff("waiting_room.page_file", a.page != b.page);
    diff(
        "waiting_room.retry_after",
        a.retry_after_s != b.retry_after_s,
    );
    out
}

impl Reloader {
    /// Reload, log the outcome, and record it as a `reload` event (who asked, what changed; a
    /// rejected reload is a `reload_rejected` event with why); `actor` says who asked.
    pub async fn reload_and_record(
        &self,
        handle: &Handle,
        actor: &str,
    ) -> Result<Reloaded, ReloadError> {
        let result = self.reload();
        let (action, reason, data) = match &result {
            Ok(r) => {
                tracing::info!(actor, file = %r.file.display(), changed = ?r.changed, "config reloaded");
                let what = match r.changed.is_empty() {
                    true => "nothing changed".to_owned(),
                    false => format!("changed {}", r.changed.join(", ")),
                };
                (
                    EventAction::Reload,
                    format!("config {} reloaded by {actor}: {what}", r.file.display()),
                    serde_json::json!({ "file": r.file.display().to_string(), "changed": r.changed }),
                )
            }
            // One log line per rejection, however many problems it lists.
            Err(e) => {
                let why = e.to_string().replace('\n', "; ");
                tracing::error!(actor, error = %why, "config reload rejected");
                (
                    EventAction::ReloadRejected,
                    format!("config reload by {actor} rejected, nothing changed: {why}"),
                    serde_json::json!({ "error": why }),
                )
            }
        };
        if let Err(e) = handle.record(actor, action, reason, data).await {
            tracing::error!(error = %e, "could not record the reload in the event log");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"127.0.0.1:1\"]\n\
                        [envs.new]\nupstreams = [\"127.0.0.1:2\"]\n[envs.fallback]\nupstreams = [\"127.0.0.1:3\"]\n";

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!("{BASE}{extra}"), "c.toml").expect("valid")
    }

    #[test]
    fn protection_keys_are_named_in_changed() {
        let a = cfg("");
        let text = BASE.replace(
            "[envs.new]\n",
            "[envs.new]\nmax_inflight = 8\nqueue_timeout = \"20ms\"\n",
        );
        let b = Config::parse(
            &format!("{text}[tunnels]\ndrain_rate = 5\n[waiting_room]\nretry_after = 9\n"),
            "c.toml",
        )
        .expect("valid");
        assert_eq!(
            changes(&a, &b),
            [
                "envs.new.max_inflight",
                "envs.new.queue_timeout",
                "tunnels.drain_rate",
                "waiting_room.retry_after"
            ]
        );
    }

    #[test]
    fn listeners_store_and_salt_are_fixed_the_rest_is_reloadable() {
        let a = cfg("");
        let b = Config {
            listen: "127.0.0.1:1234".parse().expect("addr"),
            store_path: "elsewhere".into(),
            ..cfg("[limits]\nmax_connections = 3\n[routing]\ntrust_forwarded = true\n")
        };
        assert_eq!(fixed_changes(&a, &b), ["listen.addr", "store.path"]);
        assert_eq!(changes(&a, &b), ["routing.trust_forwarded", "limits"]);
        let e = ReloadError::Fixed {
            file: "c.toml".into(),
            keys: fixed_changes(&a, &b),
        };
        assert!(
            e.to_string()
                .starts_with("listen.addr, store.path cannot change while the server runs"),
            "{e}"
        );
    }

    #[test]
    fn turning_tls_on_or_off_is_fixed_changing_its_files_is_not() {
        let plain = cfg("");
        let files = vec![crate::config::CertFiles {
            cert: "a.pem".into(),
            key: "a.key".into(),
        }];
        let tls = Config {
            listen_tls: files.clone(),
            admin_tls: files.clone(),
            ..cfg("")
        };
        assert_eq!(
            fixed_changes(&plain, &tls),
            ["listen.tls_cert", "admin.tls_cert"]
        );
        assert_eq!(fixed_changes(&tls, &plain).len(), 2);
        let moved = Config {
            listen_tls: vec![crate::config::CertFiles {
                cert: "b.pem".into(),
                key: "b.key".into(),
            }],
            ..tls.clone()
        };
        assert!(fixed_changes(&tls, &moved).is_empty());
    }
}
