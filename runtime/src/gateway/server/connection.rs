//! One client connection, from its first byte to its close: socket
//! options, the first-byte deadline (over TLS, the handshake's), the
//! connection cap's verdict, the HTTP server (with its idle timeout and
//! graceful shutdown), and the upgrade a request may leave it to carry on
//! with.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::super::{ClientSettings, handler, rewrite};
use super::client::{Active, Activity, Client, ClientBody};
use super::first_bytes::{self, FirstBytes};
use super::io::ClientIo;
use super::limit::{self, Admission};
use super::listeners::ListenerKind;
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

/// The HTTP version of a connection, as far as it is known before its
/// first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Told by the first bytes (plain connections; TLS without ALPN).
    Detect,
    /// HTTP/1.1, chosen by ALPN.
    Http1,
    /// HTTP/2, chosen by ALPN.
    Http2,
}

impl Worker {
    /// The HTTP server settings for a connection of `version`.
    fn builder(&self, version: Version) -> &auto::Builder<TokioExecutor> {
        match version {
            Version::Detect => &self.builder,
            Version::Http1 => &self.http1,
            Version::Http2 => &self.http2,
        }
    }
}

/// Where a connection came from, as its requests see it.
struct Origin {
    peer: SocketAddr,
    listener: ListenerKind,
    tls: bool,
}

/// Serves one client connection from its first byte to its close.
pub(super) async fn run(worker: Arc<Worker>, accepted: Accepted) {
    let Accepted {
        stream,
        client,
        mut drain,
        admission,
        listener,
        tls,
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
    let (permit, over) = match admission {
        Admission::Serve(permit) => (permit, false),
        Admission::Refuse(permit) => (permit, true),
        Admission::Close => return,
    };
    let origin = Origin {
        peer: client,
        listener,
        tls: tls.is_some(),
    };
    let Some(acceptor) = tls else {
        if !first_bytes_in_time(&stream, client, clients, &mut drain).await {
            return;
        }
        let io = ClientIo::new(stream, Stall::new(clients.io_timeout), permit);
        return serve_or_refuse(&worker, io, origin, Version::Detect, over, &mut drain).await;
    };
    let io = ClientIo::new(stream, Stall::new(clients.io_timeout), permit);
    let Some((io, version)) = handshake(&acceptor, io, client, clients, &mut drain).await else {
        return;
    };
    serve_or_refuse(&worker, io, origin, version, over, &mut drain).await;
}

/// Waits for a plain connection's first bytes; `false` when it is to be
/// closed instead (silent past the deadline, closed, failed, or shutdown).
async fn first_bytes_in_time(
    stream: &TcpStream,
    client: SocketAddr,
    clients: &ClientSettings,
    drain: &mut watch::Receiver<()>,
) -> bool {
    let first = tokio::select! {
        first = first_bytes::wait(stream, clients.first_byte_timeout) => first,
        _ = drain.changed() => return false,
    };
    match first {
        FirstBytes::Ready => true,
        FirstBytes::Closed => false,
        FirstBytes::TimedOut => {
            tracing::debug!(%client, timeout_seconds = clients.first_byte_timeout.as_secs_f64(), "no request in time; connection closed");
            false
        }
        FirstBytes::Failed(err) => {
            tracing::debug!(%client, error = %err, "connection failed before its first request");
            false
        }
    }
}

/// Runs the TLS handshake of a connection within the first-byte deadline
/// (a silent or stalling client is dropped); the TLS stream and the HTTP
/// version its client chose by ALPN, or `None` when it is to be closed.
async fn handshake(
    acceptor: &TlsAcceptor,
    io: ClientIo,
    client: SocketAddr,
    clients: &ClientSettings,
    drain: &mut watch::Receiver<()>,
) -> Option<(tokio_rustls::server::TlsStream<ClientIo>, Version)> {
    let deadline = Instant::now() + clients.first_byte_timeout;
    let done = tokio::select! {
        done = tokio::time::timeout_at(deadline, acceptor.accept(io)) => done,
        _ = drain.changed() => return None,
    };
    let tls = match done {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%client, error = %err, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%client, timeout_seconds = clients.first_byte_timeout.as_secs_f64(), "no TLS handshake in time; connection closed");
            return None;
        }
    };
    let version = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => Version::Http2,
        Some(b"http/1.1") => Version::Http1,
        _ => Version::Detect,
    };
    Some((tls, version))
}

/// Serves a connection under the cap, or refuses one over it.
async fn serve_or_refuse<IO>(
    worker: &Worker,
    io: IO,
    origin: Origin,
    version: Version,
    over: bool,
    drain: &mut watch::Receiver<()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if over {
        refuse(worker, io, origin.peer, drain).await;
    } else {
        serve(worker, io, origin, version, drain).await;
    }
}

/// Serves a connection under the cap.
async fn serve<IO>(
    worker: &Worker,
    io: IO,
    origin: Origin,
    version: Version,
    drain: &mut watch::Receiver<()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clients = worker.clients();
    let peer = origin.peer;
    let trusted = clients.trusted_proxies.contains(peer.ip());
    let client = Arc::new(Client::new(
        Arc::clone(&worker.shared),
        rewrite::client_ip(peer),
        trusted,
        origin.listener,
        origin.tls,
    ));
    let requests = Arc::clone(&client);
    let service = service_fn(move |req| {
        let active = Active::begin(Arc::clone(&requests));
        #[cfg(test)]
        super::seen::request(active.client(), &req);
        async move {
            let resp = handler::handle(active.client(), req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|body| ClientBody::new(body, active)))
        }
    });
    let conn = worker
        .builder(version)
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
        tracing::debug!(client = %peer, listener = client.listener.as_str(), tls = client.tls, error = %err, "client connection ended");
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
async fn refuse<IO>(worker: &Worker, io: IO, peer: SocketAddr, drain: &mut watch::Receiver<()>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
