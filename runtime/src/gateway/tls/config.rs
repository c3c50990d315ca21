//! The rustls settings of the gateway's TLS listener.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ServerSessionMemoryCache;

use super::{CertStore, TlsError};

/// TLS 1.2 sessions remembered for resumption by session ID (clients
/// that take tickets need none: TLS 1.3 and most TLS 1.2 clients).
const SESSION_CACHE: usize = 4096;

/// The protocols offered by ALPN, preferred first: HTTP/2, then HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Settings for a TLS listener serving `store`'s certificates: TLS 1.3 and
/// 1.2 with the ring provider, no client certificates, ALPN `h2` and
/// `http/1.1`, and resumption by stateless tickets (keys rotated by
/// rustls) or a bounded session cache.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|err| TlsError::Config(err.to_string()))?;
    Ok(Arc::new(config))
}
