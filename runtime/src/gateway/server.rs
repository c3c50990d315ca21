//! The data-plane server: HTTP/1.1 (with upgrades) and HTTP/2 cleartext on
//! one listener, bounded per-connection buffers, graceful shutdown.
//!
//! Thread per core: the listener hands each accepted connection to one of
//! several worker threads, each with a single-threaded runtime. A client
//! connection, its requests and the replica connections they use (see
//! [`super::pool`]) then stay on one thread: a request's replica connection
//! is driven by the request itself, so no wake-up crosses threads and no
//! task migrates between cores.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Gateway, GatewayError, Shared, handler, proxy};

/// How long a client may take to send a request head (slow clients).
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
struct Accepted {
    stream: std::net::TcpStream,
    client: SocketAddr,
    /// Taken when accepted, so a shutdown signalled while the connection
    /// is on its way still reaches it.
    watcher: Watcher,
}

impl Gateway {
    /// Serves the data plane on `listener` with one worker thread per core
    /// until `shutdown` completes, then stops accepting and waits for open
    /// connections to finish.
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
        let graceful = GracefulShutdown::new();
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
            std::thread::Builder::new()
                .name(format!("flint-gateway-{id}"))
                .spawn(move || {
                    crate::shard::set_worker(id);
                    runtime.block_on(worker(shared, rx));
                    drop(done_tx);
                })
                .map_err(GatewayError::Worker)?;
            queues.push(tx);
            threads.push(done_rx);
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let addr = listener.local_addr().map_err(GatewayError::Accept)?;
        tracing::info!(%addr, workers = queues.len(), "gateway listening");
        let mut next = 0usize;
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
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
                        watcher: graceful.watcher(),
                    })
                    .is_err()
            {
                tracing::warn!(worker = next, "gateway worker stopped; connection dropped");
            }
        }
        tracing::info!("gateway draining connections");
        drop(queues);
        graceful.shutdown().await;
        for done in threads {
            let _ = done.await;
        }
        Ok(())
    }
}

/// The HTTP server settings of every client connection.
fn connection_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
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
        .max_header_list_size(u32::try_from(shared.config.max_buffered_bytes).unwrap_or(u32::MAX));
    builder
}

/// One worker thread's loop: serves the connections handed to it until the
/// listener stops, then until they have all ended.
async fn worker(shared: Arc<Shared>, mut accepted: mpsc::UnboundedReceiver<Accepted>) {
    let builder = connection_builder(&shared);
    // Requests clone this worker's own reference, whose count only this
    // thread writes, rather than the gateway-wide one every worker shares.
    let shared: handler::WorkerShared = Arc::new(shared);
    let mut conns = JoinSet::new();
    loop {
        let Accepted {
            stream,
            client,
            watcher,
        } = tokio::select! {
            next = accepted.recv() => match next {
                Some(next) => next,
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%client, error = %err, "taking over a connection failed");
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%client, error = %err, "setting TCP_NODELAY failed");
        }
        let shared = Arc::clone(&shared);
        let client_ip = proxy::client_ip(client);
        let service = service_fn(move |req| {
            let shared = Arc::clone(&shared);
            let client_ip = client_ip.clone();
            async move {
                Ok::<_, std::convert::Infallible>(handler::handle(shared, req, client_ip).await)
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = watcher.watch(conn);
        conns.spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%client, error = %err, "client connection ended");
            }
        });
    }
    while conns.join_next().await.is_some() {}
}
