//! One client connection, from its first byte to its close: socket
//! options, the first-byte deadline, the connection cap's verdict, the
//! HTTP server (with its idle timeout and graceful shutdown), and the
//! upgrade a request may leave it to carry on with.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::super::{ClientSettings, handler, rewrite};
use super::client::{Active, Activity, Client, ClientBody};
use super::first_bytes::{self, FirstBytes};
use super::io::ClientIo;
use super::limit::{self, Admission, Permit};
use super::stall::Stall;
use super::tunnel;
use super::{Accepted, Worker};

/// How long a connection over the cap may stay open for its refusal.
const REFUSAL_IDLE: Duration = Duration::from_secs(1);
/// Time between TCP keep-alive probes once they started.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Sets the socket options of a client connection.
fn tune(stream: &TcpStream, client: SocketAddr, clients: &ClientSettings) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%client, error = %err, "setting TCP_NODELAY failed");
    }
    if let Some(idle) = clients.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(KEEPALIVE_INTERVAL);
        if let Err(err) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%client, error = %err, "setting SO_KEEPALIVE failed");
        }
    }
}

/// Serves one client connection from its first byte to its close.
pub(super) async fn run(worker: Arc<Worker>, accepted: Accepted) {
    let Accepted {
        stream,
        client,
        mut drain,
        admission,
    } = accepted;
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!(%client, error = %err, "taking over a connection failed");
            return;
        }
    };
    let clients = worker.clients();
    tune(&stream, client, clients);
    let first = tokio::select! {
        first = first_bytes::wait(&stream, clients.first_byte_timeout) => first,
        _ = drain.changed() => return,
    };
    match first {
        FirstBytes::Ready => {}
        FirstBytes::Closed => return,
        FirstBytes::TimedOut => {
            tracing::debug!(%client, timeout_seconds = clients.first_byte_timeout.as_secs_f64(), "no request in time; connection closed");
            return;
        }
        FirstBytes::Failed(err) => {
            tracing::debug!(%client, error = %err, "connection failed before its first request");
            return;
        }
    }
    match admission {
        Admission::Serve(permit) => serve(&worker, stream, client, permit, &mut drain).await,
        Admission::Refuse(permit) => refuse(&worker, stream, client, permit, &mut drain).await,
        Admission::Close => {}
    }
}

/// Serves a connection under the cap.
async fn serve(
    worker: &Worker,
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    drain: &mut watch::Receiver<()>,
) {
    let clients = worker.clients();
    let io = ClientIo::new(stream, Stall::new(clients.io_timeout), permit);
    let trusted = clients.trusted_proxies.contains(peer.ip());
    let client = Arc::new(Client::new(
        Arc::clone(&worker.shared),
        rewrite::client_ip(peer),
        trusted,
    ));
    let requests = Arc::clone(&client);
    let service = service_fn(move |req| {
        let active = Active::begin(Arc::clone(&requests));
        async move {
            let resp = handler::handle(active.client(), req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|body| ClientBody::new(body, active)))
        }
    });
    let conn = worker
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    let ended = drive(
        conn,
        |c| c.graceful_shutdown(),
        drain,
        client.activity(),
        clients.idle_timeout,
    )
    .await;
    if let Err(err) = ended {
        tracing::debug!(client = %peer, error = %err, "client connection ended");
    }
    if let Some(tunnel) = client.take_tunnel() {
        let limits = tunnel::Limits {
            idle: clients.upgrade_idle_timeout,
            drain: clients.upgrade_drain_timeout,
        };
        tunnel::run(tunnel, limits, drain).await;
    }
}

/// Answers a connection over the cap with 503, then closes it.
async fn refuse(
    worker: &Worker,
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    drain: &mut watch::Receiver<()>,
) {
    let clients = worker.clients();
    let io = ClientIo::new(stream, Stall::new(clients.io_timeout), permit);
    let (limit, retry_after) = (
        worker.max_connections,
        worker.shared.config.retry_after_seconds,
    );
    tracing::debug!(client = %peer, limit, "connection over the limit refused");
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let resp = limit::refusal(limit, retry_after, req.version());
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let conn = worker
        .refusing
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    let idle = Activity::default();
    let _ = drive(conn, |c| c.graceful_shutdown(), drain, &idle, REFUSAL_IDLE).await;
}

/// Drives a hyper connection to its end, shutting it down gracefully when
/// the gateway shuts down or when it had no request in progress for
/// `idle` (checked every `idle`, so an idle connection closes after
/// between one and two `idle`s of idleness).
async fn drive<C, E>(
    conn: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    drain: &mut watch::Receiver<()>,
    activity: &Activity,
    idle: Duration,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = pin!(conn);
    let mut timer = pin!(tokio::time::sleep(idle));
    let mut seen = activity.changes();
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => return ended,
            _ = drain.changed(), if !closing => {
                closing = true;
                graceful_shutdown(conn.as_mut());
            }
            () = timer.as_mut(), if !closing => {
                let changes = activity.changes();
                if changes == seen && activity.active() == 0 {
                    tracing::debug!(idle_seconds = idle.as_secs_f64(), "closing an idle connection");
                    closing = true;
                    graceful_shutdown(conn.as_mut());
                } else {
                    seen = changes;
                    timer.as_mut().reset(Instant::now() + idle);
                }
            }
        }
    }
}
