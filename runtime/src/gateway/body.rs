//! Response bodies: streamed from the replica, holding the request's slot,
//! connection and metrics until the last byte (or the client's departure),
//! so in-flight counts and the concurrency integral cover the whole response.
//! Request bodies: streamed from the client, each piece within the I/O
//! timeout and the whole at a minimum pace, so a client trickling its body
//! cannot hold a replica's slot.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;

use super::error::ProxyError;
use super::pool::Conn;
use super::revision::{RevisionState, Slot};
use super::server::{Pace, Stall};
use crate::metrics::Counted;

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the gateway sends.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed text.
pub fn full(text: impl Into<Bytes>) -> GatewayBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> GatewayBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Counts one request of a revision: started when it was routed, finished
/// (with its status code) when dropped.
#[derive(Debug)]
pub struct RequestGuard {
    revision: Arc<RevisionState>,
    counted: Counted,
    started: Instant,
    code: u16,
}

impl RequestGuard {
    /// Starts counting a request of `revision`.
    pub fn start(revision: Arc<RevisionState>) -> Self {
        let started = Instant::now();
        let counted = revision.metrics.request_started(started);
        Self {
            revision,
            counted,
            started,
            code: 500,
        }
    }

    /// The revision the request is counted for.
    pub fn key(&self) -> &flint_api::backend::RevisionKey {
        &self.revision.key
    }

    /// When the request entered the gateway (its timeout counts from here).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The revision's live state (the request's one reference to it, so the
    /// request path does not clone another).
    pub fn revision(&self) -> &Arc<RevisionState> {
        &self.revision
    }

    /// Sets the status code the request is counted under.
    pub fn set_code(&mut self, code: u16) {
        self.code = code;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.revision.metrics.request_finished(
            self.counted,
            self.started,
            Instant::now(),
            self.code,
        );
    }
}

/// Everything a proxied request holds until its response ends.
#[derive(Debug)]
pub struct InFlight {
    /// The connection, returned to the replica's pool at the end.
    pub conn: Option<Conn>,
    /// The replica slot.
    pub slot: Slot,
    /// The metrics record, finished when this is dropped.
    pub _guard: RequestGuard,
    /// Whether the response was read to its end: only then may the
    /// connection carry another request.
    pub complete: bool,
}

impl InFlight {
    /// The revision the request is counted for.
    pub fn key(&self) -> &flint_api::backend::RevisionKey {
        self._guard.key()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Give the connection back before the slot, so the request woken by
        // the freed slot can reuse it.
        if let Some(conn) = self.conn.take().filter(|_| self.complete) {
            self.slot.upstream.pool.checkin(conn);
        }
    }
}

/// A replica's response body that releases its [`InFlight`] at the end.
#[derive(Debug)]
pub struct Tracked {
    inner: Incoming,
    held: Option<InFlight>,
}

impl Tracked {
    /// Wraps `inner`, holding `held` until it ends or is dropped.
    pub fn new(inner: Incoming, held: InFlight) -> Self {
        let mut tracked = Self {
            inner,
            held: Some(held),
        };
        if tracked.inner.is_end_stream() {
            tracked.finish();
        }
        tracked
    }
}

impl Tracked {
    fn finish(&mut self) {
        if let Some(mut held) = self.held.take() {
            held.complete = true;
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending()
            && let Some(Conn::Http1(conn)) = self.held.as_mut().and_then(|h| h.conn.as_mut())
        {
            // The body's bytes come from the connection this body drives.
            conn.poll_progress(cx);
            polled = Pin::new(&mut self.inner).poll_frame(cx);
        }
        match &polled {
            Poll::Ready(None) => self.finish(),
            // A broken connection does not go back to the pool.
            Poll::Ready(Some(Err(_))) => self.held = None,
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(),
            _ => {}
        }
        polled.map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client's request body on its way to the replica. A piece that does
/// not arrive within the I/O timeout ends it with [`ProxyError::BodyStalled`],
/// and a body below its minimum pace with [`ProxyError::BodyTooSlow`]; either
/// fails the replica request (freeing the slot) and, when the response has
/// not started, answers the client 408.
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    stall: Stall,
    pace: Option<Pace>,
    /// Set to why the body failed, for a caller that cannot see the error
    /// itself (an HTTP/2 replica connection resets the stream instead).
    failed: Option<Arc<AtomicU8>>,
}

/// [`RequestBody::report_failure`]'s flag: nothing went wrong.
const FINE: u8 = 0;
/// The flag: a piece did not arrive within the I/O timeout.
const STALLED: u8 = 1;
/// The flag: the body fell below its minimum pace.
const TOO_SLOW: u8 = 2;

impl RequestBody {
    /// `inner`, whose pieces may each take at most `stall`'s limit, and
    /// which must keep `pace` when given.
    pub(crate) fn new(inner: Incoming, stall: Stall, pace: Option<Pace>) -> Self {
        let pace = pace.filter(|_| !inner.is_end_stream());
        Self {
            inner,
            stall,
            pace,
            failed: None,
        }
    }

    /// A flag set if the body fails. Only HTTP/2 replica requests with a
    /// body need it (it costs an allocation): over HTTP/1 the failure comes
    /// back as the request's error (see [`RequestBody::failure`]).
    pub(crate) fn report_failure(&mut self) -> Option<Arc<AtomicU8>> {
        if self.inner.is_end_stream() {
            return None;
        }
        let flag = Arc::new(AtomicU8::new(FINE));
        self.failed = Some(Arc::clone(&flag));
        Some(flag)
    }

    /// The client's fault a replica request's failure `err` came from, if
    /// it came from the request body.
    pub fn failure(err: &(dyn std::error::Error + 'static)) -> Option<ProxyError> {
        let mut source = Some(err);
        while let Some(err) = source {
            match err.downcast_ref::<ProxyError>() {
                Some(ProxyError::BodyStalled { seconds }) => {
                    return Some(ProxyError::BodyStalled { seconds: *seconds });
                }
                Some(ProxyError::BodyTooSlow {
                    bytes_per_second,
                    grace_seconds,
                }) => {
                    return Some(ProxyError::BodyTooSlow {
                        bytes_per_second: *bytes_per_second,
                        grace_seconds: *grace_seconds,
                    });
                }
                _ => source = err.source(),
            }
        }
        None
    }

    /// The failure `flag` (from [`RequestBody::report_failure`]) records,
    /// given the settings the body was held to.
    pub(crate) fn flagged(
        flag: &AtomicU8,
        io_timeout: std::time::Duration,
        pace: Option<super::server::MinBodyRate>,
    ) -> Option<ProxyError> {
        match flag.load(Ordering::Acquire) {
            STALLED => Some(ProxyError::BodyStalled {
                seconds: io_timeout.as_secs_f64(),
            }),
            TOO_SLOW => pace.map(|p| ProxyError::BodyTooSlow {
                bytes_per_second: p.bytes_per_second,
                grace_seconds: p.grace.as_secs_f64(),
            }),
            _ => None,
        }
    }

    fn fail(&self, why: u8, error: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(flag) = &self.failed {
            flag.store(why, Ordering::Release);
        }
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.stall.waited_too_long(polled.is_ready(), cx) {
            let seconds = this.stall.limit().as_secs_f64();
            return this.fail(STALLED, ProxyError::BodyStalled { seconds });
        }
        if let Some(pace) = this.pace.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    pace.progress(frame.data_ref().map_or(0, Bytes::len));
                }
                Poll::Ready(_) => this.pace = None,
                Poll::Pending if pace.too_slow(cx) => {
                    let min = pace.min();
                    return this.fail(
                        TOO_SLOW,
                        ProxyError::BodyTooSlow {
                            bytes_per_second: min.bytes_per_second,
                            grace_seconds: min.grace.as_secs_f64(),
                        },
                    );
                }
                Poll::Pending => {}
            }
        }
        polled.map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
