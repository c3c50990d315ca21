//! The gateway benchmark's processes, one binary in several roles, so the
//! app, the proxy and the load generator each run as their own process:
//!
//! - `app <listen>`: a tiny HTTP/1.1 app (17-byte body);
//! - `gateway <listen> <app> [<auth-dir>]`: the Flint gateway routing
//!   `hello.bench.localhost` to the app (`FLINT_BENCH_GATEWAY_THREADS` sets
//!   its worker threads; default: one per core, as `flint gateway`; the
//!   listener runs on a thread of its own, as in `flint gateway`); with
//!   `<auth-dir>`, also `key.bench.localhost` (API keys) and
//!   `jwt.bench.localhost` (JWT) to the same app, the `Authorization`
//!   values they take written to `<auth-dir>` (see `auth.rs`);
//!   `FLINT_BENCH_EXTRA_ROUTES=N` adds N idle Functions to its table
//!   (every tenth with a tag), for the hot path with a large table;
//! - `floor <listen> <app>`: the least a tokio HTTP/1.1 proxy does per
//!   request (see `floor.rs`), for the cost of the runtime alone;
//! - `rate <target> <host> <req/s> <seconds> <connections> [<header>]`: a
//!   constant-rate load generator (wrk cannot hold a fixed rate) printing
//!   latency percentiles; `<header>` (`Name: value`, as wrk's `-H`) is sent
//!   with every request.
//!
//! `bench/gateway/run.sh` builds it, starts the app, nginx and the gateway,
//! and drives them with wrk and the `rate` role. Run that script, not this
//! binary directly.

mod auth;
mod floor;
mod rate;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use flint_api::backend::{
    Endpoint, FunctionAccess, FunctionRoute, PokeSink, RevisionKey, RevisionRoute,
};
use flint_api::function::AuthSpec;
use flint_api::poke::ScalePoke;
use flint_api::{Protocol, TrafficStatus};
use flint_runtime::gateway::{Gateway, GatewayConfig};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

struct NoPoke;
impl PokeSink for NoPoke {
    fn poke(&self, _: ScalePoke) {}
}

fn usage() -> ! {
    eprintln!(
        "usage: gateway-bench app <listen> | gateway <listen> <app> [<auth-dir>] | floor <listen> <app> | rate <target> <host> <req/s> <seconds> <connections> [<header>]"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

/// Why a role could not run: reported on stderr, exit status 1.
type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(err) = run_role() {
        eprintln!("gateway-bench: {err}");
        std::process::exit(1);
    }
}

fn run_role() -> Result<(), BenchError> {
    // `cargo bench` passes `--bench`; the roles take positional arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("app") => current_thread()?.block_on(app(arg(&args, 1))),
        Some("gateway") => {
            let workers = std::env::var("FLINT_BENCH_GATEWAY_THREADS")
                .map(|n| n.parse().unwrap_or_else(|_| usage()))
                .unwrap_or_else(|_| cores());
            let auth_dir = args.get(3).map(PathBuf::from);
            current_thread()?.block_on(gateway(arg(&args, 1), arg(&args, 2), workers, auth_dir))
        }
        Some("floor") => Ok(floor::run(arg(&args, 1), arg(&args, 2), cores())?),
        Some("rate") => {
            let target = arg(&args, 1);
            let host: String = arg(&args, 2);
            let (rps, seconds, conns) = (arg(&args, 3), arg(&args, 4), arg(&args, 5));
            let header = args.get(6).map(|h| rate::header(h)).transpose()?;
            let report =
                current_thread()?.block_on(rate::run(target, host, rps, seconds, conns, header))?;
            println!("{report}");
            Ok(())
        }
        _ => {
            eprintln!("gateway-bench: this binary is driven by bench/gateway/run.sh");
            usage()
        }
    }
}

/// Worker threads by default: one per core, as `flint gateway`.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn app(listen: SocketAddr) -> Result<(), BenchError> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                    b"hello from flint\n",
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The one revision of Function `bench/<name>`.
fn revision_of(name: &str) -> String {
    format!("{name}-00001")
}

/// The route of Function `bench/<name>` (one revision, all traffic) with
/// `auth`.
fn bench_route(name: &str, auth: Option<AuthSpec>) -> FunctionRoute {
    let revision = revision_of(name);
    FunctionRoute {
        namespace: "bench".into(),
        name: name.into(),
        revisions: vec![RevisionRoute {
            name: revision.clone(),
            concurrency: 0,
            timeout_seconds: 30,
            protocol: Protocol::Http1,
            failure: None,
            probe_starting: false,
        }],
        traffic: vec![TrafficStatus {
            revision_name: revision,
            percent: 100,
            latest_revision: true,
            tag: None,
            url: None,
        }],
        access: FunctionAccess {
            auth,
            ..FunctionAccess::default()
        },
    }
}

/// How many idle Functions `FLINT_BENCH_EXTRA_ROUTES` asks for (0 unset).
fn extra_routes() -> usize {
    std::env::var("FLINT_BENCH_EXTRA_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `n` Functions `bench/idle-<i>` nobody calls (at zero: no endpoints),
/// every tenth with a tag, so the table is as large as a busy cluster's.
fn idle_routes(n: usize) -> impl Iterator<Item = FunctionRoute> {
    (0..n).map(|i| {
        let mut route = bench_route(&format!("idle-{i}"), None);
        if i % 10 == 0
            && let Some(t) = route.traffic.first_mut()
        {
            t.tag = Some("previous".into());
        }
        route
    })
}

async fn gateway(
    listen: SocketAddr,
    app: SocketAddr,
    workers: usize,
    auth_dir: Option<PathBuf>,
) -> Result<(), BenchError> {
    let mut config = GatewayConfig::dev();
    config.listen = listen;
    let gw = Gateway::new(config, Arc::new(NoPoke))?;
    // `hello` is open, as it always was: its requests skip the gate.
    let mut routes = vec![bench_route("hello", None)];
    if let Some(dir) = &auth_dir {
        let setup = auth::AuthSetup::new()?;
        setup.write(dir)?;
        routes.push(bench_route("key", Some(setup.api_key_spec)));
        routes.push(bench_route("jwt", Some(setup.jwt_spec)));
        gw.set_keyring(Arc::new(setup.keyring));
    }
    let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    routes.extend(idle_routes(extra_routes()));
    gw.set_routes(routes);
    for name in names {
        gw.set_endpoints(
            &RevisionKey::new("bench", &name, revision_of(&name)),
            vec![Endpoint {
                id: "app".into(),
                addr: app,
                ready: true,
                terminating: false,
            }],
        );
    }
    let listener = TcpListener::bind(listen).await?;
    gw.serve_with_workers(listener, workers, std::future::pending())
        .await?;
    Ok(())
}
