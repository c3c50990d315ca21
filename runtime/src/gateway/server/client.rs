//! What the request path knows of the client connection a request came
//! on: who the peer is, whether it is a trusted proxy, which listener it
//! came on and whether over TLS, how many of its
//! requests are in progress (for the idle timeout), and the upgrade a
//! request left for the connection to carry on with.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use flint_api::sync::lock;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};

use super::super::body::{BoxError, GatewayBody};
use super::super::handler::WorkerShared;
use super::listeners::ListenerKind;
use super::tunnel::Tunnel;

/// Requests of one connection: how many starts and ends so far, and how
/// many are in progress.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    changes: AtomicUsize,
    active: AtomicUsize,
}

impl Activity {
    /// Requests started or ended on the connection so far: unchanged over
    /// a period, with none active, means idle for all of it.
    pub(crate) fn changes(&self) -> usize {
        self.changes.load(Ordering::Relaxed)
    }

    /// Requests whose response has not ended.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// One client connection, as its requests see it.
pub(crate) struct Client {
    /// The worker's state (one reference per connection, not per request).
    pub(crate) shared: WorkerShared,
    /// The peer's address, as an `X-Forwarded-For` entry.
    pub(crate) ip: HeaderValue,
    /// Whether the peer is a trusted proxy (its forwarding headers pass).
    pub(crate) trusted: bool,
    /// The listener the connection came on (cluster-local Functions are
    /// not found on a public one).
    pub(crate) listener: ListenerKind,
    /// Whether the connection is over TLS (`X-Forwarded-Proto: https`; a
    /// plain one may be redirected to https).
    pub(crate) tls: bool,
    activity: Activity,
    tunnel: Mutex<Option<Tunnel>>,
}

impl Client {
    /// A connection from a peer at `ip`, on a `listener`, over TLS or not.
    pub(crate) fn new(
        shared: WorkerShared,
        ip: HeaderValue,
        trusted: bool,
        listener: ListenerKind,
        tls: bool,
    ) -> Self {
        Self {
            shared,
            ip,
            trusted,
            listener,
            tls,
            activity: Activity::default(),
            tunnel: Mutex::new(None),
        }
    }

    /// Its requests.
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Leaves an upgraded exchange for the connection to carry on with
    /// once hyper lets go of the socket.
    pub(crate) fn set_tunnel(&self, tunnel: Tunnel) {
        *lock(&self.tunnel) = Some(tunnel);
    }

    /// The upgraded exchange left by a request, if any.
    pub(crate) fn take_tunnel(&self) -> Option<Tunnel> {
        lock(&self.tunnel).take()
    }
}

/// A request in progress on its connection, from its head until its
/// response body ends or is dropped.
pub(crate) struct Active(Arc<Client>);

impl Active {
    /// Counts a new request of `client`.
    pub(crate) fn begin(client: Arc<Client>) -> Self {
        client.activity.changes.fetch_add(1, Ordering::Relaxed);
        client.activity.active.fetch_add(1, Ordering::Relaxed);
        Self(client)
    }

    /// The connection.
    pub(crate) fn client(&self) -> &Client {
        &self.0
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.activity.active.fetch_sub(1, Ordering::Relaxed);
        self.0.activity.changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in progress.
pub(crate) struct ClientBody {
    inner: GatewayBody,
    _active: Active,
}

impl ClientBody {
    /// `inner`, counted under `active` until it ends.
    pub(crate) fn new(inner: GatewayBody, active: Active) -> Self {
        Self {
            inner,
            _active: active,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
