//! Callback URLs under the [`AddressPolicy`]: the intake resolves a
//! callback's host and refuses the URL if any address it resolves to is
//! refused ([`check_url`]); the callbacks' HTTP client connects through
//! [`PolicyConnector`], which resolves again and connects only to
//! addresses the policy allows. The address connected to is therefore
//! always one that was checked, whatever a name resolves to between the
//! intake and the callback (DNS rebinding).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::address::{AddressPolicy, Refusal};

/// Longest a callback host's resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a callback URL may not be called, or could not be.
#[derive(Debug, thiserror::Error)]
pub enum CallbackTargetError {
    /// The URL names no host.
    #[error("the URL has no host")]
    NoHost,
    /// The host does not resolve.
    #[error("{host} does not resolve: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The resolver did not answer in time.
    #[error("resolving {host} took longer than {RESOLVE_TIMEOUT:?}")]
    ResolveTimeout {
        /// The host.
        host: String,
    },
    /// The host resolves to nothing.
    #[error("{host} resolves to no address")]
    NoAddress {
        /// The host.
        host: String,
    },
    /// The host is, or resolves to, an address the policy refuses.
    #[error("{host} resolves to {addr}, {refusal}")]
    Refused {
        /// The host.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// Why it is refused.
        refusal: Refusal,
    },
    /// No allowed address accepted the connection.
    #[error("connecting to {host}: {source}")]
    Connect {
        /// The host.
        host: String,
        /// The last connection error.
        #[source]
        source: std::io::Error,
    },
}

impl CallbackTargetError {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NoHost => "no_host",
            Self::Resolve { .. } => "resolve",
            Self::ResolveTimeout { .. } => "resolve_timeout",
            Self::NoAddress { .. } => "no_address",
            Self::Refused { .. } => "refused",
            Self::Connect { .. } => "connect",
        }
    }
}

/// The host (IPv6 literals without their brackets) and port (80 unless
/// given) of a callback URL.
fn host_port(uri: &Uri) -> Result<(&str, u16), CallbackTargetError> {
    let host = uri.host().ok_or(CallbackTargetError::NoHost)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok((host, uri.port_u16().unwrap_or(80)))
}

/// Every address `host` stands for: itself when it is an IP literal, what
/// the system resolver answers otherwise.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, CallbackTargetError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = tokio::net::lookup_host((host, port));
    let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| CallbackTargetError::ResolveTimeout {
            host: host.to_owned(),
        })?
        .map_err(|source| CallbackTargetError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(CallbackTargetError::NoAddress {
            host: host.to_owned(),
        });
    }
    Ok(addrs)
}

/// The intake's check of a callback URL: its host must resolve, and every
/// address it resolves to must pass `policy` (a name with one refused
/// address is refused, though a later resolution might avoid it).
pub async fn check_url(policy: &AddressPolicy, uri: &Uri) -> Result<(), CallbackTargetError> {
    let (host, port) = host_port(uri)?;
    for addr in resolve(host, port).await? {
        policy
            .check(addr.ip())
            .map_err(|refusal| CallbackTargetError::Refused {
                host: host.to_owned(),
                addr: addr.ip(),
                refusal,
            })?;
    }
    Ok(())
}

/// The addresses of `uri` that `policy` allows; an error naming the first
/// refusal when there is none.
async fn allowed_addrs(
    policy: &AddressPolicy,
    uri: &Uri,
) -> Result<(String, Vec<SocketAddr>), CallbackTargetError> {
    let (host, port) = host_port(uri)?;
    let mut first_refusal = None;
    let mut allowed = Vec::new();
    for addr in resolve(host, port).await? {
        match policy.check(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(refusal) => {
                first_refusal.get_or_insert((addr.ip(), refusal));
            }
        }
    }
    match (allowed.is_empty(), first_refusal) {
        (true, Some((addr, refusal))) => Err(CallbackTargetError::Refused {
            host: host.to_owned(),
            addr,
            refusal,
        }),
        _ => Ok((host.to_owned(), allowed)),
    }
}

/// The connector of the callbacks' HTTP client: resolves each URL's host
/// itself and connects only to addresses `policy` allows (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct PolicyConnector {
    policy: Arc<AddressPolicy>,
}

impl PolicyConnector {
    /// A connector enforcing `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl tower::Service<Uri> for PolicyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = CallbackTargetError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let (host, allowed) = match allowed_addrs(&policy, &uri).await {
                Ok(found) => found,
                Err(err) => {
                    tracing::warn!(%uri, reason = err.metric_label(), error = %err, "callback connection refused");
                    return Err(err);
                }
            };
            // Tried in order; every one of them passed the policy.
            let stream = TcpStream::connect(allowed.as_slice())
                .await
                .map_err(|source| CallbackTargetError::Connect { host, source })?;
            let _ = stream.set_nodelay(true);
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::address::loopback;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn urls_are_checked_on_every_address_they_resolve_to() {
        let strict = AddressPolicy::default();
        for url in [
            "http://127.0.0.1:9/cb",
            "http://[::1]:9/cb",
            "http://[::ffff:127.0.0.1]/cb",
            "http://localhost:9/cb",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0:9/",
        ] {
            let err = check_url(&strict, &uri(url)).await.unwrap_err();
            assert!(
                matches!(err, CallbackTargetError::Refused { .. }),
                "{url}: {err}"
            );
        }
        let local = AddressPolicy::new(loopback(), Vec::new());
        for url in [
            "http://127.0.0.1:9/cb",
            "http://[::1]:9/cb",
            "http://localhost/",
        ] {
            check_url(&local, &uri(url)).await.unwrap();
        }
        assert!(matches!(
            check_url(&strict, &uri("/relative")).await,
            Err(CallbackTargetError::NoHost)
        ));
    }

    #[tokio::test]
    async fn the_connector_connects_only_to_allowed_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
        let url = uri(&format!("http://localhost:{port}/cb"));
        let mut strict = PolicyConnector::new(Arc::new(AddressPolicy::default()));
        let err = tower::Service::call(&mut strict, url.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CallbackTargetError::Refused {
                    refusal: Refusal::Loopback,
                    ..
                }
            ),
            "{err}"
        );
        // Allowed: only 127.0.0.0/8, so of localhost's addresses only an
        // IPv4 one may be connected to.
        let v4_only = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], Vec::new());
        let mut connector = PolicyConnector::new(Arc::new(v4_only));
        let io = tower::Service::call(&mut connector, url).await.unwrap();
        let peer = io.inner().peer_addr().unwrap();
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 1]));
        assert!(accepted.await.unwrap().is_ok());
    }
}
