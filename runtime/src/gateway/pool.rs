//! Connections to one replica: idle HTTP/1 connections kept for reuse, one
//! shared HTTP/2 connection. Checking out happens before the request is
//! handed over, so a refused connection leaves the request intact for a
//! retry on another replica.
//!
//! Each HTTP/1 connection is driven by a task on the thread that opened it.
//! A request takes, when it can, an idle connection its own thread opened,
//! so that its hand-offs with that task stay on one thread (see
//! [`super::server`]).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Mutex;

use flint_api::Protocol;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Most idle HTTP/1 connections kept per replica.
const MAX_IDLE: usize = 64;

/// The worker id of threads that are not gateway workers.
const NO_WORKER: usize = usize::MAX;

thread_local! {
    /// The gateway worker this thread is, if it is one.
    static WORKER: Cell<usize> = const { Cell::new(NO_WORKER) };
}

/// Marks the current thread as gateway worker `id`: connections it opens
/// are preferred by the requests it serves.
pub(super) fn set_worker(id: usize) {
    WORKER.with(|w| w.set(id));
}

fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// An idle HTTP/1 connection and the worker whose thread drives it.
#[derive(Debug)]
struct Idle {
    worker: usize,
    conn: http1::SendRequest<Incoming>,
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
    /// An HTTP/1.1 connection (exclusive while in use) and the worker
    /// whose thread drives it.
    Http1(http1::SendRequest<Incoming>, usize),
    /// A handle on the replica's shared HTTP/2 connection.
    Http2(http2::SendRequest<Incoming>),
}

/// The connections to one replica.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Idle>>,
    shared: Mutex<Option<http2::SendRequest<Incoming>>>,
}

impl Pool {
    /// An empty pool for the replica at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
        }
    }

    /// A connection speaking `protocol`: an idle one if any is still open,
    /// else a new one.
    pub async fn checkout(&self, protocol: Protocol) -> Result<Conn, ConnectError> {
        match protocol {
            Protocol::Http1 => {
                while let Some(Idle { worker, mut conn }) = self.pop_idle() {
                    if !conn.is_closed() && conn.ready().await.is_ok() {
                        return Ok(Conn::Http1(conn, worker));
                    }
                }
                let conn = self.connect_http1().await?;
                Ok(Conn::Http1(conn, worker()))
            }
            Protocol::H2c => {
                if let Some(conn) = self.shared_http2() {
                    return Ok(Conn::Http2(conn));
                }
                let conn = self.connect_http2().await?;
                if let Ok(mut shared) = self.shared.lock() {
                    *shared = Some(conn.clone());
                }
                Ok(Conn::Http2(conn))
            }
        }
    }

    /// Returns a connection after its response ended, for reuse.
    pub fn checkin(&self, conn: Conn) {
        if let Conn::Http1(conn, worker) = conn
            && !conn.is_closed()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(Idle { worker, conn });
        }
    }

    /// Idle HTTP/1 connections held.
    pub fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// The most recently used idle connection of this thread, else of any.
    fn pop_idle(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().ok()?;
        let me = worker();
        match idle.iter().rposition(|i| i.worker == me) {
            Some(at) => Some(idle.remove(at)),
            None => idle.pop(),
        }
    }

    fn shared_http2(&self) -> Option<http2::SendRequest<Incoming>> {
        let shared = self.shared.lock().ok()?;
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

    async fn connect_http1(&self) -> Result<http1::SendRequest<Incoming>, ConnectError> {
        let addr = self.addr;
        let io = self.tcp().await?;
        let (sender, conn) = http1::Builder::new()
            // One buffer, one write(2) per request head (see the server).
            .writev(false)
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %err, "replica connection ended");
            }
        });
        Ok(sender)
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<Incoming>, ConnectError> {
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
