//! `flint dev`: the whole platform on one machine. Every Function manifest
//! under a directory is served through the real gateway and autoscaler, with
//! each replica a local process; edits to the manifests roll new revisions.

mod changes;
mod events;
mod keyring;
mod loader;
mod local;
mod print;
mod scaling;
mod state;
mod status;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use flint_api::backend::ScaleActuator;
use flint_api::sync::lock;
use flint_runtime::gateway::{Gateway, GatewayConfig};
use flint_runtime::local::{BackendEvent, LocalBackend};
use tokio::net::TcpListener;
use tokio::sync::watch;

use state::{Action, DevState};

/// How often the event loop asks whether the manifests may have changed
/// (inotify reported something, or the safety-net poll is due; see
/// [`changes`]) and whether key files changed.
const RESCAN_EVERY: Duration = changes::POLL;

/// Settings of a `flint dev` run.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Directory holding the Function manifests.
    pub dir: PathBuf,
    /// Address to listen on.
    pub bind: IpAddr,
    /// Gateway port.
    pub port: u16,
    /// Admin port (status page, metrics, health).
    pub admin_port: u16,
    /// TLS port (0: none).
    pub tls_port: u16,
    /// In-cluster port, where cluster-local Functions answer (0: none).
    pub internal_port: u16,
    /// Requests that may wait per revision while it scales from zero.
    pub queue_size: usize,
    /// Where asynchronous invocations and schedule ticks are stored (kept across restarts).
    pub events_dir: PathBuf,
}

/// Everything the event loop touches.
struct Dev {
    opts: DevOptions,
    gateway: Gateway,
    backend: LocalBackend,
    scaler: scaling::Scaler,
    state: Arc<Mutex<DevState>>,
    /// Keys and certificates of the Functions' `spec.auth` and `spec.tls`.
    keyring: Arc<keyring::DevKeyring>,
    gateway_url: String,
    events: Mutex<Option<events::DevEvents>>,
}

/// Runs `flint dev` until SIGINT or SIGTERM; on the way out every replica
/// process is stopped.
pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    if !opts.dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory (flint dev [DIR] serves the Function manifests under DIR)",
            opts.dir.display()
        );
    }
    let listen = SocketAddr::new(opts.bind, opts.port);
    let admin = SocketAddr::new(opts.bind, opts.admin_port);
    // The gateway's own listener: a deep accept backlog for bursts.
    let listener = flint_runtime::gateway::listener(listen)
        .with_context(|| format!("gateway: cannot listen on {listen}"))?;
    let admin_listener = TcpListener::bind(admin)
        .await
        .with_context(|| format!("admin: cannot listen on {admin}"))?;
    let listen = listener.local_addr().context("gateway address")?;
    let admin = admin_listener.local_addr().context("admin address")?;

    let (pokes, poke_rx) = scaling::poke_channel();
    let config = GatewayConfig {
        listen,
        queue_size: opts.queue_size,
        access: flint_runtime::gateway::AccessSettings {
            https_port: opts.tls_port,
            ..GatewayConfig::dev().access
        },
        ..GatewayConfig::dev()
    };
    let gateway = Gateway::new(config, Arc::new(pokes)).context("gateway configuration")?;
    let backend = LocalBackend::new(Arc::new(gateway.clone()));
    let scaler = scaling::Scaler::start(
        backend.clone(),
        metrics_url(admin),
        poke_rx,
        u32::try_from(opts.queue_size).unwrap_or(u32::MAX),
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let async_events = events::DevEvents::start(
        &opts.events_dir,
        &gateway,
        &format!("http://{listen}"),
        &stop_rx,
    )?;

    let dev = Arc::new(Dev {
        events: Mutex::new(Some(async_events)),
        gateway_url: format!("http://{listen}"),
        opts,
        gateway: gateway.clone(),
        backend: backend.clone(),
        scaler,
        state: Arc::new(Mutex::new(DevState::default())),
        keyring: Arc::new(keyring::DevKeyring::default()),
    });
    gateway.set_keyring(dev.keyring.clone());

    let listeners = extra_listeners(&dev.opts, &gateway, listener);
    let serve = {
        let gateway = gateway.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            gateway
                .serve_listeners(listeners, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    print::banner(&dev.gateway_url, admin, &dev.opts.dir);
    // Watching starts before the first scan, so an edit during it is seen.
    let (mut changes, unwatched) = changes::Changes::watch(&dev.opts.dir);
    if let Some(e) = unwatched {
        print::error(&format!(
            "{e}; checking the manifests every {} ms instead",
            changes::POLL.as_millis()
        ));
    }
    let mut fingerprint = None;
    dev.rescan(&mut fingerprint, true).await;

    // The admin port (health, status) answers once the manifests are
    // loaded: until then, connections wait in its backlog.
    let admin_router = gateway.admin_router().merge(dev.status_router());
    let admin_task = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(admin_listener, admin_router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };

    let mut events = backend.subscribe();
    let mut rescan = tokio::time::interval(RESCAN_EVERY);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = rescan.tick() => {
                if changes.due(std::time::Instant::now()) {
                    dev.rescan(&mut fingerprint, false).await;
                } else {
                    dev.check_key_files();
                }
            }
            event = events.recv() => match event {
                Ok(event) => dev.on_event(event).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "display fell behind"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    println!(
        "\nflint dev: stopping (waiting for in-flight requests, then stopping every function process)"
    );
    let _ = stop_tx.send(true);
    let async_events = lock(&dev.events).take();
    if let Some(async_events) = async_events {
        async_events.finish().await;
    }
    dev.scaler.stop();
    backend.shutdown().await;
    let _ = serve.await;
    let _ = admin_task.await;
    println!("flint dev: stopped");
    Ok(())
}

/// The public listener `public`, plus the in-cluster and TLS listeners
/// `opts` asks for. Those two are extras: one whose port is taken is left
/// out with a warning rather than stopping `flint dev`.
fn extra_listeners(
    opts: &DevOptions,
    gateway: &Gateway,
    public: TcpListener,
) -> Vec<flint_runtime::gateway::Listener> {
    use flint_runtime::gateway::{Listener, ListenerKind, listener};
    let mut all = vec![Listener::plain(public, ListenerKind::Public)];
    let bind = |port: u16, what: &str| {
        let addr = SocketAddr::new(opts.bind, port);
        (port != 0)
            .then(|| listener(addr))
            .and_then(|bound| match bound {
                Ok(socket) => Some(socket),
                Err(e) => {
                    print::error(&format!(
                        "{what}: cannot listen on {addr} ({e}); serving without it"
                    ));
                    None
                }
            })
    };
    if let Some(socket) = bind(
        opts.internal_port,
        "in-cluster port (cluster-local functions)",
    ) {
        all.push(Listener::plain(socket, ListenerKind::Internal));
    }
    if let Some(socket) = bind(opts.tls_port, "TLS port") {
        match gateway.tls_config() {
            Ok(tls) => all.push(Listener::tls(socket, ListenerKind::Public, tls)),
            Err(e) => print::error(&format!("TLS port: {e}; serving without it")),
        }
    }
    all
}

impl Dev {
    /// Reloads the manifests if any changed, and applies the difference.
    async fn rescan(&self, fingerprint: &mut Option<loader::Fingerprint>, first: bool) {
        let current = loader::fingerprint(&self.opts.dir);
        if fingerprint.as_ref() == Some(&current) {
            self.check_key_files();
            return;
        }
        *fingerprint = Some(current);
        let scan = loader::scan(&self.opts.dir);
        if !first {
            println!("manifests changed: reloading {}", self.opts.dir.display());
        }
        for err in &scan.errors {
            print::error(err);
        }
        self.keyring.set_functions(&scan.functions);
        let (actions, notes) = lock(&self.state).apply(&scan.functions);
        if let Some(events) = lock(&self.events).as_ref() {
            let functions: Vec<flint_api::Function> =
                scan.functions.iter().map(|l| l.function.clone()).collect();
            events.set_functions(&functions);
        }
        self.scaler
            .set_functions(scan.functions.iter().map(|l| &l.function));
        self.carry_out(actions, notes).await;
        let routes = lock(&self.state).routes();
        print::domain_conflicts(&routes, &self.gateway.config().domain);
        if first {
            print::urls(&scan.functions, &self.gateway_url, self.gateway.config());
        }
    }

    /// Rebuilds the Functions' auth if a key file they read changed (a few
    /// `stat` calls: only the files the keyring read).
    fn check_key_files(&self) {
        if self.keyring.files_changed() {
            println!("key files changed: rebuilding the functions' auth");
            self.gateway.refresh_access();
        }
    }

    async fn carry_out(&self, actions: Vec<Action>, notes: Vec<String>) {
        for note in notes {
            print::note(&note);
        }
        for action in actions {
            match action {
                Action::Add {
                    key,
                    process,
                    scale,
                    initial,
                    drain,
                } => {
                    self.backend.add_revision(key.clone(), *process, drain);
                    // Creating a revision sets its initial scale once, as a
                    // Deployment's creation does on a cluster; from then on the
                    // autoscaler is the only writer.
                    if initial > 0
                        && let Err(e) = self.backend.scale(&key, initial).await
                    {
                        print::error(&e.to_string());
                    }
                    self.scaler.track(key, scale, initial);
                }
                Action::Rescale { key, scale } => self.scaler.update(&key, scale),
                Action::Remove { key } => {
                    self.scaler.forget(&key);
                    self.gateway.forget_replica_startup(&key);
                    let backend = self.backend.clone();
                    tokio::spawn(async move { backend.remove_revision(&key).await });
                }
            }
        }
        let started = std::time::Instant::now();
        let routes = lock(&self.state).routes();
        let functions = routes.len();
        let built = started.elapsed();
        // The autoscaler's backlog routes are not part of the swap measured.
        self.scaler.set_routes(&routes);
        let swapping = std::time::Instant::now();
        self.gateway.set_routes(routes);
        // Benchmarks read the swap from `/metrics`; the log line is for people.
        let swap = built + swapping.elapsed();
        self.gateway.record_route_swap(functions, swap);
        let micros = u64::try_from(swap.as_micros()).unwrap_or(u64::MAX);
        tracing::debug!(functions, micros, "routing table swapped");
    }

    async fn on_event(&self, event: BackendEvent) {
        print::event(&event);
        // Benchmarks read start-ups from `/metrics`; the printed line is for people.
        if let BackendEvent::ReplicaReady {
            revision, startup, ..
        } = &event
        {
            self.gateway.record_replica_startup(revision, *startup);
        }
        let change = match &event {
            BackendEvent::ReplicaReady { revision, .. }
            | BackendEvent::RevisionRecovered { revision } => {
                Some(lock(&self.state).revision_ready(revision))
            }
            BackendEvent::RevisionFailed { revision, message } => {
                Some(lock(&self.state).revision_failed(revision, message))
            }
            _ => None,
        };
        if let Some((actions, notes)) = change {
            self.carry_out(actions, notes).await;
        }
    }

    fn status_router(self: &Arc<Self>) -> axum::Router {
        let dev = Arc::clone(self);
        axum::Router::new()
            .route(
                "/",
                axum::routing::get(move || {
                    let dev = Arc::clone(&dev);
                    async move { dev.status_page().await }
                }),
            )
            .merge(self.scaler.router())
    }

    async fn status_page(&self) -> String {
        let functions = lock(&self.state).describe();
        let mut live = std::collections::HashMap::new();
        for f in &functions {
            for (key, _) in &f.revisions {
                let replicas = self.backend.replicas(key).await.unwrap_or_default();
                let waiting = self.gateway.revision(key).map_or(0, |s| s.waiting());
                live.insert(key.clone(), status::RevisionLive { replicas, waiting });
            }
        }
        let keep_alive = self.scaler.keep_alive();
        status::render(
            &functions,
            &self.gateway_url,
            &self.gateway.config().domain,
            |k| live.get(k).copied().unwrap_or_default(),
            |k| keep_alive.get(k).cloned(),
        )
    }
}

/// Where the autoscaler reads the gateway's signal: the in-process admin
/// `/metrics`, unless `FLINT_DEV_METRICS_URL` points it elsewhere (used to
/// prove that a metrics source that goes away scales nothing to zero).
fn metrics_url(admin: SocketAddr) -> String {
    std::env::var(METRICS_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| format!("http://{admin}/metrics"))
}

/// Environment variable that overrides the autoscaler's metrics URL.
const METRICS_URL_ENV: &str = "FLINT_DEV_METRICS_URL";

/// `flint dev --status`: prints the status page of a running `flint dev`.
pub async fn print_status(admin: SocketAddr) -> anyhow::Result<()> {
    let page = status::fetch(admin)
        .await
        .with_context(|| format!("no flint dev answering on {admin}"))?;
    print!("{page}");
    Ok(())
}
