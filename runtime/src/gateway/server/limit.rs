//! The gateway-wide cap on open client connections. A connection over the
//! cap is still answered, through hyper, with a 503 that says why (and
//! `Retry-After`), then closed; a silent reset would read as a network
//! fault. The refusals themselves are capped too, so a flood cannot hold
//! descriptors through them: past that, connections are closed at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderValue, Response, Version, header};

use super::super::body::GatewayBody;
use super::super::error::ProxyError;

/// Most over-the-cap connections being answered at once.
pub(super) const MAX_REFUSING: usize = 256;

/// Open client connections, counted against the cap.
#[derive(Debug)]
pub(super) struct Connections {
    open: AtomicUsize,
    refusing: AtomicUsize,
    max: usize,
}

/// What to do with a newly accepted connection.
#[derive(Debug)]
pub(super) enum Admission {
    /// Serve it.
    Serve(Permit),
    /// Answer it with 503 and close it.
    Refuse(Permit),
    /// Close it at once: too many refusals already.
    Close,
}

/// A connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    connections: Arc<Connections>,
    refusing: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let counter = if self.refusing {
            &self.connections.refusing
        } else {
            &self.connections.open
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}

fn try_take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Connections {
    /// A cap of `max` open connections.
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            max,
        })
    }

    /// The cap.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Decides about one more connection.
    pub(super) fn admit(self: &Arc<Self>) -> Admission {
        if try_take(&self.open, self.max) {
            return Admission::Serve(Permit {
                connections: Arc::clone(self),
                refusing: false,
            });
        }
        if try_take(&self.refusing, MAX_REFUSING) {
            return Admission::Refuse(Permit {
                connections: Arc::clone(self),
                refusing: true,
            });
        }
        Admission::Close
    }
}

/// The answer to every request on a connection over the cap.
pub(super) fn refusal(limit: usize, retry_after: u32, version: Version) -> Response<GatewayBody> {
    let mut resp = ProxyError::TooManyConnections { limit }.response(retry_after);
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_over_the_cap_are_refused_then_closed() {
        let conns = Connections::new(2);
        let served: Vec<_> = (0..2).map(|_| conns.admit()).collect();
        assert!(served.iter().all(|a| matches!(a, Admission::Serve(_))));
        let refused: Vec<_> = (0..MAX_REFUSING).map(|_| conns.admit()).collect();
        assert!(refused.iter().all(|a| matches!(a, Admission::Refuse(_))));
        assert!(matches!(conns.admit(), Admission::Close));
        drop(refused);
        assert!(matches!(conns.admit(), Admission::Refuse(_)));
        drop(served);
        assert!(matches!(conns.admit(), Admission::Serve(_)));
    }

    #[test]
    fn a_refusal_says_why_and_closes_http1() {
        let resp = refusal(7, 3, Version::HTTP_11);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "3");
        assert_eq!(resp.headers()["connection"], "close");
        let h2 = refusal(7, 3, Version::HTTP_2);
        assert!(!h2.headers().contains_key("connection"));
    }
}
