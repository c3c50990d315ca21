//! Gateway settings: where it listens, which domain it serves, the bounds
//! that keep its memory flat under any backlog, and how long a client
//! connection may hold the gateway's resources.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use flint_api::function::Visibility;

use super::server::MinBodyRate;
use crate::cidr::{Cidr, CidrError, CidrProblem};

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
    /// requests is thus at most `queue_size × max_buffered_bytes` per
    /// revision, and at most `memory_budget_bytes` for all of them.
    pub max_buffered_bytes: usize,
    /// Address of the data-plane listener.
    pub listen: SocketAddr,
    /// Address of the in-cluster listener, which the public Service does
    /// not expose: cluster-local Functions answer only there (`None`: no
    /// such listener).
    pub internal_listen: Option<SocketAddr>,
    /// Address of the TLS listener, serving the gateway's certificates
    /// ([`super::Gateway::certs`]) by SNI (`None`: no TLS listener).
    pub tls_listen: Option<SocketAddr>,
    /// Seconds a client is told to wait (`Retry-After`) when a queue is full.
    pub retry_after_seconds: u32,
    /// Bytes the gateway may hold, all together, for requests waiting for
    /// a replica, asynchronous bodies being stored and callbacks being sent
    /// ([`crate::budget::MemoryBudget`]); past it, such a request gets 503
    /// with `Retry-After`. Requests that go straight to a replica are not
    /// counted.
    pub memory_budget_bytes: usize,
    /// Limits and timeouts of client connections, and the peers trusted to
    /// say who the client is.
    pub clients: ClientSettings,
    /// The other gateways in front of the same replicas, with which each
    /// replica's `concurrency` is shared ([`super::capacity`]).
    pub peers: PeerGateways,
    /// Defaults and bounds of Functions' visibility, auth and TLS.
    pub access: AccessSettings,
}

/// Gateway-wide settings of who may reach Functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    /// Visibility of Functions whose spec does not set one.
    pub default_visibility: Visibility,
    /// The port https URLs name when a plain-HTTP request is redirected
    /// (`spec.tls.redirect`); 443 is left out of the URL.
    pub https_port: u16,
    /// Whether a Function's `jwksUrl` may be plain http. Off on clusters
    /// (a key set fetched in the clear could be swapped on the way), on in
    /// `flint dev`, where issuers run on loopback.
    pub allow_http_jwks: bool,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            default_visibility: Visibility::Public,
            https_port: 443,
            allow_http_jwks: false,
        }
    }
}

/// Where a gateway learns the other gateways in front of the same
/// replicas. Sharing needs the control token too: peers present it to
/// each other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PeerGateways {
    /// No other gateway: each replica's whole `concurrency` is this
    /// gateway's (`flint dev`, a single gateway).
    #[default]
    Alone,
    /// A fixed set of gateways, by admin address, this one's (`me`) among
    /// them.
    Fixed {
        /// This gateway's admin address, as the others reach it.
        me: SocketAddr,
        /// Every gateway's admin address.
        all: Vec<SocketAddr>,
    },
    /// The ready endpoints of a Service's EndpointSlices: on a cluster,
    /// the gateways' own (headless) admin Service, so gateways that come
    /// and go are followed.
    Service {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// This gateway's admin address, as it appears in the slices.
        me: SocketAddr,
    },
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
            internal_listen: None,
            tls_listen: None,
            retry_after_seconds: 1,
            memory_budget_bytes: crate::budget::DEFAULT_MEMORY_BUDGET_BYTES,
            clients: ClientSettings::default(),
            peers: PeerGateways::Alone,
            access: AccessSettings {
                allow_http_jwks: true,
                ..AccessSettings::default()
            },
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self::dev()
    }
}

/// How long a client connection may hold the gateway's resources, how many
/// may be open, and which peers are proxies whose forwarding headers are
/// believed. Every bound is there so that a silent, slow or idle client
/// costs the gateway a descriptor and a few kilobytes for a bounded time,
/// and a replica's `concurrency` slot for a bounded time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Open client connections the gateway serves at once (upgraded ones
    /// included). One more is answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
    /// How long a new connection may take to send its first bytes: enough
    /// of them to tell an HTTP/2 preface from an HTTP/1 request. A silent
    /// socket, or one stuck in a partial preface, is closed then.
    pub first_byte_timeout: Duration,
    /// How long a connection may stay open with no request in progress
    /// (HTTP/1 keep-alive connections are also closed by the request head
    /// timeout, 30 s).
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged to check that the client is
    /// still there (`None`: never).
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long an HTTP/2 ping may go unanswered before the connection is
    /// closed.
    pub http2_keep_alive_timeout: Duration,
    /// Idle time after which the kernel starts TCP keep-alive probes on a
    /// client connection (SO_KEEPALIVE), so a peer that vanished without a
    /// FIN or RST is noticed (`None`: off).
    pub tcp_keepalive: Option<Duration>,
    /// Longest wait for the next piece of a request body, and for a write
    /// to the client to make progress. A client that trickles its body, or
    /// stops reading its response, loses the request (408 when its
    /// response has not started) and frees the replica's slot.
    pub io_timeout: Duration,
    /// The slowest a request body may arrive, on average over the time the
    /// gateway waited for it, after a grace period (`None`: no minimum). A
    /// client sending one byte just inside each I/O timeout loses the
    /// request (408) once below it, and frees the replica's slot.
    pub min_body_rate: Option<MinBodyRate>,
    /// How long an upgraded connection (WebSocket) may pass no byte either
    /// way before it is closed.
    pub upgrade_idle_timeout: Duration,
    /// On shutdown, how long upgraded connections may run on before they
    /// are closed (requests in progress finish; an upgraded connection has
    /// no end of its own).
    pub upgrade_drain_timeout: Duration,
    /// Peers whose `X-Forwarded-Proto`, `X-Forwarded-Host`,
    /// `X-Forwarded-Prefix` and `Forwarded` headers are passed on; from any
    /// other peer they are dropped.
    pub trusted_proxies: TrustedProxies,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            // With 64 KiB buffers: 125 MiB of connection buffers at most,
            // which the chart's default memory limit holds (budget.rs).
            max_connections: 2_000,
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            tcp_keepalive: Some(Duration::from_secs(60)),
            io_timeout: Duration::from_secs(30),
            // Kestrel's MinRequestBodyDataRate.
            min_body_rate: Some(MinBodyRate {
                bytes_per_second: 240,
                grace: Duration::from_secs(5),
            }),
            upgrade_idle_timeout: Duration::from_secs(300),
            upgrade_drain_timeout: Duration::from_secs(30),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

impl ClientSettings {
    /// Why these settings cannot be served with, if they cannot: a zero
    /// cap or timeout would refuse or close every connection.
    pub fn check(&self) -> Result<(), &'static str> {
        let positive = [
            (
                self.first_byte_timeout,
                "first_byte_timeout must be positive",
            ),
            (self.idle_timeout, "idle_timeout must be positive"),
            (self.io_timeout, "io_timeout must be positive"),
            (
                self.upgrade_idle_timeout,
                "upgrade_idle_timeout must be positive",
            ),
            (
                self.http2_keep_alive_timeout,
                "http2_keep_alive_timeout must be positive",
            ),
        ];
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1");
        }
        match positive.into_iter().find(|(d, _)| d.is_zero()) {
            Some((_, problem)) => Err(problem),
            None => Ok(()),
        }
    }
}

/// A list of networks (`10.0.0.0/8`, `fd00::/8`, or single addresses)
/// whose connections are proxies the gateway trusts to forward what the
/// client asked for. An IPv4-mapped IPv6 entry or peer (`::ffff:10.0.0.1`)
/// counts as the IPv4 address it maps, since a dual-stack listener sees
/// IPv4 peers in that form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

/// Why a trusted-proxy list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxiesError {
    /// An entry is not an address.
    #[error("{0:?} is not an IP address or network (e.g. 10.0.0.0/8)")]
    Address(String),
    /// A prefix length is longer than the address.
    #[error("{0:?}: the prefix length is longer than the address")]
    Prefix(String),
}

impl TrustedProxies {
    /// Whether a connection from `ip` comes from a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(ip))
    }

    /// Whether no peer is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One entry of a trusted-proxy list. An IPv4-mapped address is taken as
/// its IPv4 address, with the prefix length (if given) counted in IPv4
/// bits: `::ffff:10.0.0.0/8` is `10.0.0.0/8`.
fn trusted_block(entry: &str) -> Result<Cidr, TrustedProxiesError> {
    let block: Cidr = entry.parse().map_err(|err: CidrError| match err.problem {
        CidrProblem::NotAnAddress => TrustedProxiesError::Address(entry.to_owned()),
        CidrProblem::PrefixTooLong => TrustedProxiesError::Prefix(entry.to_owned()),
    })?;
    let IpAddr::V6(v6) = block.addr() else {
        return Ok(block);
    };
    let Some(v4) = v6.to_ipv4_mapped() else {
        return Ok(block);
    };
    let bits = if entry.contains('/') {
        block.prefix()
    } else {
        32
    };
    Cidr::new(IpAddr::V4(v4), bits).ok_or_else(|| TrustedProxiesError::Prefix(entry.to_owned()))
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    /// Reads a comma-separated list of addresses and networks; an empty
    /// string trusts nobody.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(trusted_block)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_caps_and_timeouts_are_refused() {
        assert_eq!(ClientSettings::default().check(), Ok(()));
        let zero = [
            ClientSettings {
                max_connections: 0,
                ..ClientSettings::default()
            },
            ClientSettings {
                first_byte_timeout: Duration::ZERO,
                ..ClientSettings::default()
            },
            ClientSettings {
                io_timeout: Duration::ZERO,
                ..ClientSettings::default()
            },
        ];
        for settings in zero {
            assert!(settings.check().is_err(), "{settings:?}");
        }
    }

    #[test]
    fn trusted_proxies_match_by_prefix() {
        let list: TrustedProxies = "10.0.0.0/8, 192.168.1.7, fd00::/8, ::ffff:172.16.0.1"
            .parse()
            .unwrap();
        let cases = [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("172.16.0.1", true),
            ("::ffff:10.9.9.9", true),
            ("::1", false),
        ];
        for (ip, trusted) in cases {
            assert_eq!(list.contains(ip.parse().unwrap()), trusted, "{ip}");
        }
    }

    #[test]
    fn trusted_proxy_lists_are_checked() {
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        let all: TrustedProxies = "0.0.0.0/0,::/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
        let err = |list: &str| list.parse::<TrustedProxies>().unwrap_err();
        assert_eq!(
            err("10.0.0.0/8, 10.0.0.0/33"),
            TrustedProxiesError::Prefix("10.0.0.0/33".into())
        );
        assert_eq!(err("nope"), TrustedProxiesError::Address("nope".into()));
        assert_eq!(
            err("10.0.0.0/300"),
            TrustedProxiesError::Address("10.0.0.0/300".into())
        );
        // An IPv4-mapped entry is its IPv4 network, its prefix in IPv4 bits.
        let mapped: TrustedProxies = "::ffff:10.0.0.0/8".parse().unwrap();
        assert!(mapped.contains("10.9.9.9".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(
            err("::ffff:10.0.0.0/104"),
            TrustedProxiesError::Prefix("::ffff:10.0.0.0/104".into())
        );
    }
}
