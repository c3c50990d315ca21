//! The data-plane server: HTTP/1.1 (with upgrades) and HTTP/2, cleartext or
//! over TLS, on any number of listeners ([`listener`]), bounded
//! per-connection buffers, graceful shutdown.
//!
//! Thread per core: one accept loop takes the connections of every
//! listener and hands each to one of several worker threads, each with a
//! single-threaded runtime; a TLS handshake happens on the worker. A client
//! connection, its requests and the replica connections they use (see
//! [`super::pool`]) then stay on one thread: a request's replica connection
//! is driven by the request itself, so no wake-up crosses threads and no
//! task migrates between cores.
//!
//! Every connection ([`connection`]) is bounded in time and number (see
//! [`super::ClientSettings`]): a cap on open connections ([`limit`]; over
//! it, a 503 through hyper), a deadline on the first bytes
//! ([`first_bytes`]; over TLS, on the whole handshake), the request head
//! timeout, an idle timeout, HTTP/2
//! keep-alive pings, TCP keep-alive, and an I/O timeout on writes ([`io`])
//! and request bodies. An upgraded connection goes on in its connection's
//! task ([`tunnel`]), which graceful shutdown waits for.

mod client;
mod connection;
mod first_bytes;
mod io;
mod limit;
mod listeners;
mod pace;
#[cfg(test)]
pub(crate) mod seen;
mod stall;
#[cfg(test)]
mod tests;
mod tunnel;

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub(crate) use client::Client;
pub use listeners::{Listener, ListenerKind};
pub use pace::MinBodyRate;
pub(crate) use pace::Pace;
pub(crate) use stall::Stall;
pub(crate) use tunnel::Tunnel;

use super::tls::{CertStore, server_config};
use super::{ClientSettings, Gateway, GatewayError, Shared, handler};
use limit::{Admission, Connections};

/// How long a client may take to send a request head (slow clients); also
/// how long an HTTP/1 connection may wait for its next request.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections the kernel may hold for the gateway before it accepts them
/// (capped by `net.core.somaxconn`). A burst of clients larger than the
/// usual 1024 would otherwise overflow it, and the kernel resets some of
/// them.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a data-plane listener on `addr` with [`LISTEN_BACKLOG`].
pub fn listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pause after an accept error (e.g. out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A connection accepted by the listener, on its way to a worker.
pub(super) struct Accepted {
    stream: std::net::TcpStream,
    client: SocketAddr,
    /// Subscribed when accepted, so a shutdown signalled while the
    /// connection is on its way still reaches it; held until the
    /// connection (and its upgrade) ends, which shutdown waits for.
    drain: watch::Receiver<()>,
    /// Its place under the connection cap.
    admission: Admission,
    /// The listener it came on.
    listener: ListenerKind,
    /// The TLS it is to be accepted with, on a TLS listener.
    tls: Option<TlsAcceptor>,
}

impl Gateway {
    /// Serves the data plane with one worker thread per core until
    /// `shutdown` completes, then stops accepting and waits for open
    /// connections to finish: on `listener` (public, plain HTTP), and on
    /// the internal and TLS listeners the configuration names
    /// ([`super::GatewayConfig::internal_listen`],
    /// [`super::GatewayConfig::tls_listen`]), bound here.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        self.serve_with_workers(listener, workers, shutdown).await
    }

    /// [`Gateway::serve`] with `workers` worker threads (at least one).
    pub async fn serve_with_workers(
        &self,
        listener: TcpListener,
        workers: usize,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let mut listeners = vec![Listener::plain(listener, ListenerKind::Public)];
        let config = &self.shared.config;
        if let Some(addr) = config.internal_listen {
            listeners.push(Listener::plain(bind(addr)?, ListenerKind::Internal));
        }
        if let Some(addr) = config.tls_listen {
            let tls = self.tls_config()?;
            listeners.push(Listener::tls(bind(addr)?, ListenerKind::Public, tls));
        }
        self.serve_listeners_with_workers(listeners, workers, shutdown)
            .await
    }

    /// The certificates the gateway's TLS listeners serve; whoever watches
    /// them swaps new ones in with [`CertStore::set`].
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.shared.certs
    }

    /// TLS settings serving [`Gateway::certs`], for a [`Listener::tls`].
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, GatewayError> {
        Ok(server_config(Arc::clone(&self.shared.certs))?)
    }

    /// Serves the data plane on `listeners` (at least one), one worker
    /// thread per core, until `shutdown` completes; then as
    /// [`Gateway::serve`].
    pub async fn serve_listeners(
        &self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        self.serve_listeners_with_workers(listeners, workers, shutdown)
            .await
    }

    /// [`Gateway::serve_listeners`] with `workers` worker threads (at least
    /// one).
    pub async fn serve_listeners_with_workers(
        &self,
        listeners: Vec<Listener>,
        workers: usize,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        self.shared
            .config
            .clients
            .check()
            .map_err(GatewayError::Config)?;
        if listeners.is_empty() {
            return Err(GatewayError::Config("the gateway needs a listener"));
        }
        let (drain, _) = watch::channel(());
        let connections = Connections::new(self.shared.config.clients.max_connections);
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for id in 0..workers.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let shared = Arc::clone(&self.shared);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(GatewayError::Worker)?;
            let max = connections.max();
            std::thread::Builder::new()
                .name(format!("flint-gateway-{id}"))
                .spawn(move || {
                    crate::shard::set_worker(id);
                    runtime.block_on(worker(Worker::new(shared, max), rx));
                    drop(done_tx);
                })
                .map_err(GatewayError::Worker)?;
            queues.push(tx);
            threads.push(done_rx);
        }
        let mut shutdown = pin!(shutdown);
        for l in &listeners {
            let addr = l.local_addr().map_err(GatewayError::Accept)?;
            tracing::info!(%addr, listener = l.kind().as_str(), tls = l.is_tls(), workers = queues.len(), max_connections = connections.max(), "gateway listening");
        }
        let (mut next, mut turn) = (0usize, 0usize);
        loop {
            let (at, accepted) = tokio::select! {
                next = listeners::accept(&listeners, &mut turn) => next,
                () = &mut shutdown => break,
            };
            let (stream, client) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(from) = listeners.get(at) else {
                continue;
            };
            let admission = connections.admit();
            if matches!(admission, Admission::Close) {
                tracing::debug!(%client, "too many connections, and too many being refused: closed");
                continue;
            }
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%client, error = %err, "handing over a connection failed");
                    continue;
                }
            };
            next = (next + 1) % queues.len();
            if let Some(queue) = queues.get(next)
                && queue
                    .send(Accepted {
                        stream,
                        client,
                        drain: drain.subscribe(),
                        admission,
                        listener: from.kind(),
                        tls: from.acceptor().cloned(),
                    })
                    .is_err()
            {
                tracing::warn!(worker = next, "gateway worker stopped; connection dropped");
            }
        }
        tracing::info!("gateway draining connections");
        // New connections are refused at once, not left in the backlog.
        drop(listeners);
        drop(queues);
        let _ = drain.send(());
        drain.closed().await;
        for done in threads {
            let _ = done.await;
        }
        Ok(())
    }
}

/// Binds one of the listeners the configuration names.
fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    listener(addr).map_err(|source| GatewayError::Listen { addr, source })
}

/// The HTTP server settings of every client connection.
fn connection_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let clients = &shared.config.clients;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // One buffer, one write(2): cheaper than writev for the small
        // heads and bodies most functions answer with.
        .writev(false)
        .max_buf_size(shared.config.max_buffered_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(clients.http2_keep_alive_interval)
        .keep_alive_timeout(clients.http2_keep_alive_timeout)
        .max_header_list_size(u32::try_from(shared.config.max_buffered_bytes).unwrap_or(u32::MAX));
    builder
}

/// What a worker thread's connections share.
pub(super) struct Worker {
    shared: handler::WorkerShared,
    /// Tells HTTP/2 from HTTP/1 by the connection's first bytes.
    builder: auto::Builder<TokioExecutor>,
    /// For TLS connections whose client chose `http/1.1` by ALPN.
    http1: auto::Builder<TokioExecutor>,
    /// For TLS connections whose client chose `h2` by ALPN.
    http2: auto::Builder<TokioExecutor>,
    /// For connections over the cap: one answer, then closed.
    refusing: auto::Builder<TokioExecutor>,
    max_connections: usize,
}

impl Worker {
    fn new(shared: Arc<Shared>, max_connections: usize) -> Arc<Self> {
        let builder = connection_builder(&shared);
        let mut refusing = connection_builder(&shared);
        refusing.http1().keep_alive(false);
        // Requests clone this worker's own reference, whose count only this
        // thread writes, rather than the gateway-wide one every worker shares.
        Arc::new(Self {
            shared: Arc::new(shared),
            http1: builder.clone().http1_only(),
            http2: builder.clone().http2_only(),
            builder,
            refusing,
            max_connections,
        })
    }

    fn clients(&self) -> &ClientSettings {
        &self.shared.config.clients
    }
}

/// One worker thread's loop: serves the connections handed to it until the
/// listener stops, then until they have all ended.
async fn worker(worker: Arc<Worker>, mut accepted: mpsc::UnboundedReceiver<Accepted>) {
    let mut conns = JoinSet::new();
    loop {
        let next = tokio::select! {
            next = accepted.recv() => match next {
                Some(next) => next,
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        conns.spawn(connection::run(Arc::clone(&worker), next));
    }
    while conns.join_next().await.is_some() {}
}
