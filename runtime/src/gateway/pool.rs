//! Connections to one replica: idle HTTP/1 connections kept for reuse, one
//! shared HTTP/2 connection. Checking out happens before the request is
//! handed over, so a refused connection leaves the request intact for a
//! retry on another replica.
//!
//! An HTTP/1 connection has no task of its own: the request using it
//! drives it (while waiting for the response head, then from the response
//! body as the client reads it), so a request costs no hand-off between
//! tasks — the way an event-loop proxy works. A request takes an idle
//! connection its own thread opened (its socket is registered with that
//! thread's reactor, see [`super::server`]), else opens one.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::task::{Context, Poll};

use flint_api::Protocol;
use flint_api::sync::lock;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::body::RequestBody;
use crate::shard::{Sharded, worker};

/// Most idle HTTP/1 connections kept per replica and worker thread.
const MAX_IDLE: usize = 64;

/// The I/O half of an HTTP/1 connection to a replica (with protocol
/// switches; hyper's type for it cannot be named, hence the box — one per
/// connection, not per request).
type Http1Io = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// An HTTP/1 connection to a replica, driven by whoever holds it.
pub struct Http1 {
    sender: http1::SendRequest<RequestBody>,
    /// `None` once the connection ended.
    io: Option<Http1Io>,
    /// The worker whose thread opened it (`None`: not a worker thread).
    worker: Option<usize>,
}

impl std::fmt::Debug for Http1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1")
            .field("worker", &self.worker)
            .field("open", &self.io.is_some())
            .finish()
    }
}

/// Advances the connection's I/O; forgets it once it ended.
fn poll_io(io: &mut Option<Http1Io>, cx: &mut Context<'_>) {
    if let Some(conn) = io.as_mut()
        && let Poll::Ready(ended) = conn.as_mut().poll(cx)
    {
        if let Err(err) = ended {
            tracing::debug!(error = %err, "replica connection ended");
        }
        *io = None;
    }
}

/// Runs `fut` to completion while driving `io`.
async fn drive<F: Future>(io: &mut Option<Http1Io>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        poll_io(io, cx);
        fut.as_mut().poll(cx)
    })
    .await
}

impl Http1 {
    /// Whether it can carry another request: open and idle.
    async fn ready(&mut self) -> bool {
        self.io.is_some() && drive(&mut self.io, self.sender.ready()).await.is_ok()
    }

    /// Sends `req`, driving the connection until the response head is in.
    pub async fn send(
        &mut self,
        req: http::Request<RequestBody>,
    ) -> Result<
        http::Response<Incoming>,
        hyper::client::conn::TrySendError<http::Request<RequestBody>>,
    > {
        drive(&mut self.io, self.sender.try_send_request(req)).await
    }

    /// Drives the connection from a response body's poll: reads what the
    /// replica sent so the body can hand it on.
    pub fn poll_progress(&mut self, cx: &mut Context<'_>) {
        poll_io(&mut self.io, cx);
    }

    /// Hands the connection to a task of its own, to finish a protocol
    /// switch (the upgraded I/O is released only by driving it).
    pub fn detach(mut self) {
        if let Some(io) = self.io.take() {
            tokio::spawn(async move {
                if let Err(err) = io.await {
                    tracing::debug!(error = %err, "replica connection ended");
                }
            });
        }
    }

    fn is_open(&self) -> bool {
        self.io.is_some() && !self.sender.is_closed()
    }
}

/// Why no connection to a replica could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection failed (refused, reset, unreachable).
    #[error("connecting to {addr}: {source}")]
    Tcp {
        /// The replica.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP handshake failed.
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        /// The replica.
        addr: SocketAddr,
        /// What hyper reported.
        source: hyper::Error,
    },
}

impl ConnectError {
    /// As an I/O error, for the answer to the client.
    pub fn into_io(self) -> std::io::Error {
        match self {
            Self::Tcp { source, .. } => source,
            Self::Handshake { source, .. } => std::io::Error::other(source),
        }
    }
}

/// A connection ready to carry one request.
#[derive(Debug)]
pub enum Conn {
    /// An HTTP/1.1 connection, exclusive while in use.
    Http1(Http1),
    /// A handle on the replica's shared HTTP/2 connection.
    Http2(http2::SendRequest<RequestBody>),
}

/// The connections to one replica.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    /// Idle connections, by the worker thread that opened them.
    idle: Sharded<Mutex<Vec<Http1>>>,
    shared: Mutex<Option<http2::SendRequest<RequestBody>>>,
}

impl Pool {
    /// An empty pool for the replica at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            idle: Sharded::new(|| Mutex::new(Vec::new())),
            shared: Mutex::new(None),
        }
    }

    /// A connection speaking `protocol`: an idle one if any is still open,
    /// else a new one.
    pub async fn checkout(&self, protocol: Protocol) -> Result<Conn, ConnectError> {
        match protocol {
            Protocol::Http1 => {
                while let Some(mut conn) = self.pop_idle() {
                    if conn.ready().await {
                        return Ok(Conn::Http1(conn));
                    }
                }
                Ok(Conn::Http1(self.connect_http1().await?))
            }
            Protocol::H2c => {
                if let Some(conn) = self.shared_http2() {
                    return Ok(Conn::Http2(conn));
                }
                let conn = self.connect_http2().await?;
                *lock(&self.shared) = Some(conn.clone());
                Ok(Conn::Http2(conn))
            }
        }
    }

    /// Returns a connection after its response ended, for reuse.
    pub fn checkin(&self, conn: Conn) {
        if let Conn::Http1(conn) = conn
            && conn.is_open()
        {
            let mut idle = lock(self.idle.at(conn.worker.unwrap_or(0)));
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    /// Idle HTTP/1 connections held.
    pub fn idle(&self) -> usize {
        self.idle.iter().map(|idle| lock(idle).len()).sum()
    }

    /// The most recently used idle connection this thread opened.
    fn pop_idle(&self) -> Option<Http1> {
        let mut idle = lock(self.idle.local());
        let me = worker();
        let at = idle.iter().rposition(|c| c.worker == me)?;
        Some(idle.remove(at))
    }

    fn shared_http2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let shared = lock(&self.shared);
        shared.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    async fn tcp(&self) -> Result<TokioIo<TcpStream>, ConnectError> {
        let addr = self.addr;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Tcp { addr, source })?;
        // Small writes (headers) must not wait for Nagle.
        stream
            .set_nodelay(true)
            .map_err(|source| ConnectError::Tcp { addr, source })?;
        Ok(TokioIo::new(stream))
    }

    async fn connect_http1(&self) -> Result<Http1, ConnectError> {
        let addr = self.addr;
        let io = self.tcp().await?;
        let (sender, conn) = http1::Builder::new()
            // One buffer, one write(2) per request head (see the server).
            .writev(false)
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        Ok(Http1 {
            sender,
            io: Some(Box::pin(conn.with_upgrades())),
            worker: worker(),
        })
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<RequestBody>, ConnectError> {
        let addr = self.addr;
        let io = self.tcp().await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%addr, error = %err, "replica HTTP/2 connection ended");
            }
        });
        Ok(sender)
    }
}
