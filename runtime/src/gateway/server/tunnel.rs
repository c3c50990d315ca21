//! Upgraded connections (WebSocket and other protocol switches): bytes
//! copied both ways between the client and the replica, in the client
//! connection's own task, so graceful shutdown waits for them as for any
//! connection. The request's replica slot and metrics record are held
//! until the tunnel ends: it counts against the replica's `concurrency`.
//! A tunnel ends when either side closes, when no byte has passed either
//! way for the upgrade idle timeout, or, once shutdown began, after the
//! upgrade drain timeout.

use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::super::body::InFlight;

/// An upgraded exchange, waiting for both sides to let go of their sockets.
pub(crate) struct Tunnel {
    /// The client's side.
    pub(crate) client: OnUpgrade,
    /// The replica's side.
    pub(crate) replica: OnUpgrade,
    /// The request's slot, connection and metrics record.
    pub(crate) held: InFlight,
}

/// How long a tunnel may last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest time with no byte either way.
    pub(crate) idle: Duration,
    /// Longest time it runs on after shutdown began.
    pub(crate) drain: Duration,
}

/// Counts reads that brought bytes, so an idle tunnel can be told from a
/// busy one without a clock read per read.
struct Watched<'a, T> {
    io: T,
    progress: &'a AtomicUsize,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.progress.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Idle,
    Drained,
}

/// Runs `tunnel` until it ends (see the module doc); `drain` says when
/// shutdown begins.
pub(crate) async fn run(tunnel: Tunnel, limits: Limits, drain: &mut watch::Receiver<()>) {
    let Tunnel {
        client,
        replica,
        held,
    } = tunnel;
    let key = held.key();
    let both = tokio::time::timeout(limits.idle, async { tokio::try_join!(client, replica) });
    let (client, replica) = match both.await {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => {
            tracing::debug!(revision = %key, error = %err, "upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!(revision = %key, "upgrade did not complete");
            return;
        }
    };
    let progress = AtomicUsize::new(0);
    let mut client = Watched {
        io: TokioIo::new(client),
        progress: &progress,
    };
    let mut replica = Watched {
        io: TokioIo::new(replica),
        progress: &progress,
    };
    let mut copy = pin!(tokio::io::copy_bidirectional(&mut client, &mut replica));
    let mut idle = pin!(tokio::time::sleep(limits.idle));
    let mut drained = pin!(tokio::time::sleep(limits.drain));
    let mut draining = false;
    let mut seen = 0;
    let end = loop {
        tokio::select! {
            copied = copy.as_mut() => {
                if let Err(err) = copied {
                    tracing::debug!(revision = %key, error = %err, "upgraded connection failed");
                }
                break End::Closed;
            }
            () = idle.as_mut() => {
                let now = progress.load(Ordering::Relaxed);
                if now == seen {
                    break End::Idle;
                }
                seen = now;
                idle.as_mut().reset(Instant::now() + limits.idle);
            }
            _ = drain.changed(), if !draining => {
                draining = true;
                drained.as_mut().reset(Instant::now() + limits.drain);
            }
            () = drained.as_mut(), if draining => break End::Drained,
        }
    };
    match end {
        End::Closed => {}
        End::Idle => {
            tracing::debug!(revision = %key, idle_seconds = limits.idle.as_secs_f64(), "closing an idle upgraded connection");
        }
        End::Drained => {
            tracing::info!(revision = %key, "closing an upgraded connection at shutdown");
        }
    }
    drop(held);
}
