//! The gateway's listeners: each is public or in-cluster, and plain or
//! terminating TLS. One accept loop takes connections from all of them
//! (the next one ready, in turn, so no listener starves another) and
//! tags each connection with where it came from, for the request path:
//! a cluster-local Function is not found on a public listener, and a
//! plain connection may be redirected to https.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Which of the gateway's listeners a connection came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// The one the public Service exposes: cluster-local Functions are
    /// not found here.
    Public,
    /// The in-cluster one: every Function, cluster-local ones included.
    Internal,
}

impl ListenerKind {
    /// The kind in logs: `public` or `internal`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
        }
    }
}

/// A bound socket the gateway serves, with its kind and, for a TLS
/// listener, the TLS settings its connections are accepted with.
pub struct Listener {
    socket: TcpListener,
    kind: ListenerKind,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.socket.local_addr().ok())
            .field("kind", &self.kind)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Listener {
    /// A plain-HTTP listener (HTTP/1.1 and HTTP/2 cleartext).
    pub fn plain(socket: TcpListener, kind: ListenerKind) -> Self {
        Self {
            socket,
            kind,
            tls: None,
        }
    }

    /// A listener terminating TLS with `config` (see
    /// [`crate::gateway::tls::server_config`]); HTTP/2 when the client
    /// picks `h2` by ALPN, HTTP/1.1 otherwise.
    pub fn tls(socket: TcpListener, kind: ListenerKind, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            socket,
            kind,
            tls: Some(TlsAcceptor::from(config)),
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Its kind.
    pub fn kind(&self) -> ListenerKind {
        self.kind
    }

    /// Whether it terminates TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS acceptor its connections go through, if it terminates TLS.
    pub(super) fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }
}

/// What [`accept`] returns: the listener's position, and its accept's
/// outcome.
pub(super) type Next = (usize, io::Result<(TcpStream, SocketAddr)>);

/// The next connection of any of `listeners`, starting the search after
/// the listener that gave the last one (`turn`).
pub(super) async fn accept(listeners: &[Listener], turn: &mut usize) -> Next {
    poll_fn(|cx| {
        let n = listeners.len();
        for i in 0..n {
            let at = (*turn + i) % n;
            let Some(listener) = listeners.get(at) else {
                continue;
            };
            if let Poll::Ready(accepted) = listener.socket.poll_accept(cx) {
                *turn = (at + 1) % n;
                return Poll::Ready((at, accepted));
            }
        }
        Poll::Pending
    })
    .await
}
