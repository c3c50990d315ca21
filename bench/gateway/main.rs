//! Gateway throughput and latency against peers on the same machine, in the
//! same run: the app called directly, through the Flint gateway, and through
//! nginx as a reverse proxy (when an `nginx` binary is on PATH).
//!
//! Run: `cargo bench -p flint-runtime --bench gateway` (or bench/gateway/run.sh,
//! which installs nginx first). Settings: FLINT_BENCH_SECONDS (default 5),
//! FLINT_BENCH_CONNECTIONS (default 32).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flint_api::backend::{Endpoint, FunctionRoute, PokeSink, RevisionKey, RevisionRoute};
use flint_api::poke::ScalePoke;
use flint_api::{Protocol, TrafficStatus};
use flint_runtime::gateway::{Gateway, GatewayConfig};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

struct NoPoke;
impl PokeSink for NoPoke {
    fn poke(&self, _: ScalePoke) {}
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
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
    });
    addr
}

async fn gateway(app: SocketAddr) -> SocketAddr {
    let mut config = GatewayConfig::dev();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let gw = Gateway::new(config, Arc::new(NoPoke)).unwrap();
    gw.set_routes(vec![FunctionRoute {
        namespace: "bench".into(),
        name: "hello".into(),
        revisions: vec![RevisionRoute {
            name: "hello-00001".into(),
            concurrency: 0,
            timeout_seconds: 30,
            protocol: Protocol::Http1,
            failure: None,
        }],
        traffic: vec![TrafficStatus {
            revision_name: "hello-00001".into(),
            percent: 100,
            latest_revision: true,
            tag: None,
            url: None,
        }],
    }]);
    gw.set_endpoints(
        &RevisionKey::new("bench", "hello", "hello-00001"),
        vec![Endpoint {
            id: "app".into(),
            addr: app,
            ready: true,
            terminating: false,
        }],
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { gw.serve(listener, std::future::pending()).await.unwrap() });
    addr
}

/// Starts nginx proxying to `app` with upstream keep-alive, if installed.
fn nginx(app: SocketAddr) -> Option<(Child, SocketAddr, std::path::PathBuf)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = std::env::temp_dir().join(format!("flint-bench-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let conf = format!(
        "daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {dir}; proxy_temp_path {dir};\n\
           upstream app {{ server {app}; keepalive 64; }}\n\
           server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app;\n\
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).ok()?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((child, SocketAddr::from(([127, 0, 0, 1], port)), dir))
}

async fn wait_listening(addr: SocketAddr) -> bool {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

struct Result {
    requests: u64,
    errors: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn load(target: SocketAddr, host: &'static str, connections: u64, seconds: u64) -> Result {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut sender = None;
                while Instant::now() < deadline {
                    if sender.is_none() {
                        let stream = TcpStream::connect(target).await.unwrap();
                        stream.set_nodelay(true).unwrap();
                        let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .unwrap();
                        tokio::spawn(conn);
                        sender = Some(s);
                    }
                    let Some(s) = sender.as_mut() else { continue };
                    let req = hyper::Request::get("/")
                        .header("host", host)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let t = Instant::now();
                    let ok = match s.send_request(req).await {
                        Ok(resp) => {
                            let ok = resp.status().is_success();
                            ok && resp.into_body().collect().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        // Count it and reconnect: the server may close idle-long connections.
                        errors += 1;
                        sender = None;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    Result {
        requests: all.len() as u64,
        errors,
        latencies: all,
        elapsed: start.elapsed(),
    }
}

fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return f64::NAN;
    }
    let i = ((l.len() as f64 - 1.0) * p).round() as usize;
    l[i].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let seconds = env_or("FLINT_BENCH_SECONDS", 5);
    let connections = env_or("FLINT_BENCH_CONNECTIONS", 32);
    let app = app().await;
    let gw = gateway(app).await;
    let mut peers: Vec<(&str, SocketAddr, &'static str)> = vec![
        ("direct", app, "app"),
        ("flint gateway", gw, "hello.bench.localhost"),
    ];
    let nginx = nginx(app);
    match &nginx {
        Some((_, addr, _)) if wait_listening(*addr).await => peers.push(("nginx", *addr, "app")),
        _ => eprintln!("nginx not found or did not start: skipping that peer"),
    }
    println!(
        "# gateway benchmark: {connections} keep-alive connections, {seconds}s per target, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| target | req/s | p50 µs | p99 µs | errors | vs direct |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut direct_rps = None;
    for (name, addr, host) in peers {
        // Warm up connections and pools.
        let _ = load(addr, host, connections, 1).await;
        let r = load(addr, host, connections, seconds).await;
        let rps = r.requests as f64 / r.elapsed.as_secs_f64();
        let base = *direct_rps.get_or_insert(rps);
        println!(
            "| {name} | {rps:.0} | {:.0} | {:.0} | {} | {:.2} |",
            pct(&r.latencies, 0.5),
            pct(&r.latencies, 0.99),
            r.errors,
            rps / base
        );
    }
    if let Some((mut child, _, dir)) = nginx {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(dir);
    }
}
