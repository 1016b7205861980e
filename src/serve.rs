//! `cutover serve`: wires the parts into one process and runs it until a signal.
//!
//! Order matters: the open-file soft limit is raised to the hard one (with a warning naming
//! `LimitNOFILE` when even that is below what `max_connections` needs, [`crate::rlimit`]); the
//! store opens next (a locked, foreign or unreadable store stops the start); the driver loads
//! the persisted run and publishes its routing table; only then do the listeners accept. On SIGTERM/SIGINT: stop accepting, drain in-flight requests and tunnels
//! within the drain timeout, save the run's progress, exit 0. On SIGHUP (or `POST /v1/reload`)
//! the config file is read again and applied whole or not at all ([`crate::reload`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::control::{self, Access, AccessConfig, AccessError, Admin};
use crate::metrics::Metrics;
use crate::orchestrator::driver::{self, DriverError, Parts};
use crate::proxy::{self, Live, Proxy};
use crate::reload::{check_upstreams, Reloader};
use crate::router::{Router, RoutingTable, Weight};
use crate::store::{Store, StoreError};
use crate::tls::{ServerTls, ALPN_H1, ALPN_H2_H1};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("store {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {listener} listener's TLS: {source}")]
    Tls {
        listener: &'static str,
        source: crate::tls::TlsError,
    },
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("cannot start the data-plane worker threads: {0}")]
    Workers(std::io::Error),
    #[error(
        "[store] backend = \"etcd\" (prefix {0}) needs a cutover built with the etcd backend: \
         `cargo build --release --features etcd` (docs/fleet.md)"
    )]
    NoFleet(String),
    #[error(transparent)]
    Prometheus(#[from] crate::prometheus::PrometheusError),
}

/// Addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The users' listener speaks HTTPS.
    pub proxy_tls: bool,
    /// The admin listener speaks HTTPS.
    pub admin_tls: bool,
}

impl Bound {
    /// The admin API's URL (`https://` when its listener speaks TLS).
    pub fn admin_url(&self) -> String {
        let scheme = if self.admin_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.admin)
    }
}

/// A listener's certificates, loaded (every file read and checked) before anything listens.
fn load_tls(
    files: &[crate::tls::CertFiles],
    alpn: &[&[u8]],
    listener: &'static str,
) -> Result<Option<Arc<ServerTls>>, ServeError> {
    if files.is_empty() {
        return Ok(None);
    }
    ServerTls::new(files, alpn)
        .map(|t| Some(Arc::new(t)))
        .map_err(|source| ServeError::Tls { listener, source })
}

/// Run everything until `shutdown` resolves. `on_ready` is told the bound addresses.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Bound, &Access),
) -> Result<(), ServeError> {
    // Every connection is a descriptor (a tunnel two): a service manager's default soft limit
    // would turn users away long before `max_connections` does.
    crate::rlimit::raise_for_serve(cfg.limits.max_connections);
    let listen_tls = load_tls(&cfg.listen_tls, &ALPN_H2_H1, "users'")?;
    let admin_tls = load_tls(&cfg.admin_tls, &ALPN_H1, "admin")?;
    let store = Arc::new(open_store(&cfg).await?);
    let access = Arc::new(Access::resolve(
        AccessConfig {
            tokens_file: cfg.tokens_file.as_deref(),
            token_file: cfg.token_file.as_deref(),
            store_dir: store.dir(),
            admin: cfg.admin,
        },
        std::env::var("CUTOVER_TOKEN").ok(),
    )?);
    let bind = |what, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { what, addr, source })
    };
    // The client listener gets a long accept queue (reconnect storms; docs/protection.md).
    let proxy_listener = proxy::bind(cfg.listen).map_err(|source| ServeError::Bind {
        what: "proxy",
        addr: cfg.listen,
        source,
    })?;
    let admin_listener = bind("admin", cfg.admin).await?;
    let bound = Bound {
        proxy: proxy_listener.local_addr().unwrap_or(cfg.listen),
        admin: admin_listener.local_addr().unwrap_or(cfg.admin),
        proxy_tls: listen_tls.is_some(),
        admin_tls: admin_tls.is_some(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_for = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_for.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let router = Arc::new(Router::new(RoutingTable::new(Weight::ZERO, &cfg.salt)));
    let metrics = Arc::new(Metrics::new());
    let proxy = Arc::new(Proxy::new(&cfg, router.clone(), metrics.clone()));
    let env_addrs = Arc::new(ArcSwap::from_pointee(check_upstreams(&cfg)));
    let tunnels = proxy.tunnels.clone();
    let fleet = join_fleet(&cfg, &store, &bound, &metrics, &stop_rx);
    let foresight = Arc::new(crate::orchestrator::recorder::Foresight::from_config(&cfg));
    let (handle, driver_task) = driver::start(
        Parts {
            store,
            router,
            metrics: metrics.clone(),
            tunnels_to_move: Arc::new(move || tunnels.misplaced()),
            env_addrs: env_addrs.clone(),
            default_salt: cfg.salt.clone(),
            fleet,
            foresight: foresight.clone(),
            prometheus: match &cfg.prometheus {
                Some(p) => Some(Arc::new(crate::prometheus::Prometheus::new(p)?)),
                None => None,
            },
        },
        stopped(),
    )?;
    let live = match &listen_tls {
        Some(tls) => Live::from_config_tls(proxy, &cfg, tls.clone()),
        None => Live::from_config(proxy, &cfg),
    };
    let workers = proxy::Workers::start(cfg.workers, live.clone()).map_err(ServeError::Workers)?;
    let reloader = Arc::new(
        Reloader::new(cfg, live.clone(), env_addrs, metrics, stop_rx.clone())
            .with_part(access.clone())
            .with_foresight(foresight)
            .with_tls(listen_tls, admin_tls.clone()),
    );

    let control = Arc::new(Admin {
        handle,
        access,
        reload: Some(reloader.clone()),
    });
    let admin_task = tokio::spawn(control::serve(
        admin_listener,
        control.clone(),
        admin_tls,
        stopped(),
    ));
    let proxy_task = tokio::spawn(workers.serve(proxy_listener, stopped()));
    tokio::spawn(reload_on_sighup(
        reloader,
        control.handle.clone(),
        stopped(),
    ));
    on_ready(bound, &control.access);

    shutdown.await;
    tracing::info!("shutting down: draining");
    let _ = stop_tx.send(true);
    let _ = proxy_task.await;
    let _ = admin_task.await;
    let _ = driver_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The sled store in `[store] path`, or the fleet's store in etcd.
async fn open_store(cfg: &Config) -> Result<Store, ServeError> {
    let Some(fleet) = &cfg.fleet else {
        return Store::open(&cfg.store_path).map_err(|source| ServeError::Store {
            path: cfg.store_path.display().to_string(),
            source,
        });
    };
    #[cfg(feature = "etcd")]
    {
        let store = crate::fleet::connect(fleet, &cfg.store_path)
            .await
            .map_err(|source| ServeError::Store {
                path: format!("etcd {}", fleet.prefix),
                source,
            })?;
        Ok(Store::from_etcd(store))
    }
    #[cfg(not(feature = "etcd"))]
    Err(ServeError::NoFleet(fleet.prefix.clone()))
}

/// Fleet mode: join the other instances (membership, election, the state watch).
fn join_fleet(
    cfg: &Config,
    store: &Store,
    bound: &Bound,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> Option<(
    crate::fleet::Fleet,
    tokio::sync::mpsc::Receiver<crate::fleet::Notice>,
)> {
    #[cfg(feature = "etcd")]
    {
        let fleet = cfg.fleet.as_ref()?;
        let etcd = store.etcd()?.clone();
        let settings = crate::fleet::settings(fleet, bound.admin, bound.proxy);
        tracing::info!(instance = %settings.id, store = %store.describe(), "joining the fleet");
        Some(crate::fleet::Fleet::start(
            etcd,
            settings,
            metrics.clone(),
            stop.clone(),
        ))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (cfg, store, bound, metrics, stop);
        None
    }
}

/// Reload the config on every SIGHUP until `stop` resolves. The outcome goes to the log.
async fn reload_on_sighup(
    reloader: Arc<Reloader>,
    handle: crate::orchestrator::Handle,
    stop: impl Future<Output = ()>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /v1/reload");
            return;
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                Some(()) = hup.recv() => { let _ = reloader.reload_and_record(&handle, "SIGHUP").await; }
                _ = &mut stop => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (reloader, handle);
        stop.await;
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
