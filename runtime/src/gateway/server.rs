//! The data-plane server: HTTP/1.1 (with upgrades) and HTTP/2 cleartext on
//! one listener, bounded per-connection buffers, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

use super::{Gateway, GatewayError, handler};

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

impl Gateway {
    /// Serves the data plane on `listener` until `shutdown` completes, then
    /// stops accepting and waits for open connections to finish.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // One buffer, one write(2): cheaper than writev for the small
            // heads and bodies most functions answer with.
            .writev(false)
            .max_buf_size(self.shared.config.max_buffered_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(
                u32::try_from(self.shared.config.max_buffered_bytes).unwrap_or(u32::MAX),
            );
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let addr = listener.local_addr().map_err(GatewayError::Accept)?;
        tracing::info!(%addr, "gateway listening");
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
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%client, error = %err, "setting TCP_NODELAY failed");
            }
            let shared = Arc::clone(&self.shared);
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move {
                    Ok::<_, std::convert::Infallible>(handler::handle(shared, req, client).await)
                }
            });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(%client, error = %err, "client connection ended");
                }
            });
        }
        tracing::info!("gateway draining connections");
        graceful.shutdown().await;
        Ok(())
    }
}
