//! Gateway settings: where it listens, which domain it serves, and the
//! bounds that keep its memory flat under any backlog.

use std::net::SocketAddr;

/// How a gateway is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Domain of Function hosts: `<fn>.<ns>.<domain>`.
    pub domain: String,
    /// Requests that may wait per revision while it has no free replica;
    /// one more is refused with 503 and `Retry-After`.
    pub queue_size: usize,
    /// Most bytes the gateway buffers per client connection (request head
    /// and read-ahead; bodies are streamed, never buffered whole). A request
    /// head larger than this is refused with 431. Memory held by waiting
    /// requests is thus at most `queue_size × max_buffered_bytes` per revision.
    pub max_buffered_bytes: usize,
    /// Address of the data-plane listener.
    pub listen: SocketAddr,
    /// Seconds a client is told to wait (`Retry-After`) when a queue is full.
    pub retry_after_seconds: u32,
}

impl GatewayConfig {
    /// Smallest per-connection buffer the HTTP/1 server accepts.
    pub const MIN_BUFFERED_BYTES: usize = 8192;

    /// Defaults for `flint dev`: `*.localhost` on 127.0.0.1:8080.
    pub fn dev() -> Self {
        Self {
            domain: flint_api::names::DEV_DOMAIN.to_owned(),
            queue_size: 1000,
            max_buffered_bytes: 64 * 1024,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            retry_after_seconds: 1,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self::dev()
    }
}
