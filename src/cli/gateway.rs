//! `flint gateway`: its flags (each also an environment variable, as the
//! chart sets them) and how they become the gateway's settings, with or
//! without the NATS queue for asynchronous invocations.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use flint_runtime::gateway::{ClientSettings, MinBodyRate, TrustedProxies};

use super::init_server_logs;

/// Settings of `flint gateway`. Every flag can also be set from the
/// environment variable named in its help.
#[derive(Debug, clap::Args)]
pub(super) struct GatewayArgs {
    /// Address of the data plane (function traffic).
    #[arg(long, env = "FLINT_LISTEN", default_value = "0.0.0.0:8080")]
    listen: std::net::SocketAddr,
    /// Address of the in-cluster data plane, which the public Service does not expose: cluster-local Functions answer only there [default: none].
    #[arg(long, env = "FLINT_INTERNAL_LISTEN")]
    internal_listen: Option<std::net::SocketAddr>,
    /// Address of the TLS data plane (HTTP/2 and HTTP/1.1 by ALPN), serving Functions' certificates by SNI [default: none].
    #[arg(long, env = "FLINT_TLS_LISTEN")]
    tls_listen: Option<std::net::SocketAddr>,
    /// Address of the admin endpoints (/metrics, /healthz, /readyz).
    #[arg(long, env = "FLINT_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: std::net::SocketAddr,
    /// Domain of Function hosts: <function>.<namespace>.<domain>.
    #[arg(long, env = "FLINT_DOMAIN", default_value = flint_api::names::DEFAULT_CLUSTER_DOMAIN)]
    domain: String,
    /// Visibility of Functions that do not set spec.visibility: public or cluster-local.
    #[arg(long, env = "FLINT_DEFAULT_VISIBILITY", default_value = "public")]
    default_visibility: flint_api::function::Visibility,
    /// Port named in the https URL a plain-HTTP request is redirected to (spec.tls.redirect); 443 is left out.
    #[arg(long, env = "FLINT_HTTPS_PORT", default_value_t = 443)]
    https_port: u16,
    /// The default certificate: a kubernetes.io/tls Secret (namespace/name) served for hosts of Functions with spec.tls but no secretName of their own.
    #[arg(long, env = "FLINT_TLS_DEFAULT_SECRET")]
    tls_default_secret: Option<String>,
    /// Base URL of the operator's autoscaler, where scale-from-zero pokes go.
    #[arg(
        long,
        env = "FLINT_AUTOSCALER_URL",
        default_value = "http://flint-operator.flint-system:8090"
    )]
    autoscaler_url: String,
    /// Watch only this namespace [default: all namespaces].
    #[arg(long, env = "FLINT_NAMESPACE")]
    namespace: Option<String>,
    /// Requests that may wait per revision while it has no free replica.
    #[arg(long, env = "FLINT_QUEUE_SIZE", default_value_t = flint_api::poke::DEFAULT_QUEUE_SIZE as usize)]
    queue_size: usize,
    /// Most bytes buffered per client connection (request head and read-ahead).
    #[arg(long, env = "FLINT_MAX_BUFFERED_BYTES", default_value_t = 65536)]
    max_buffered_bytes: usize,
    /// Bytes the gateway may hold, all together, for requests waiting for a replica, asynchronous request bodies being stored and result callbacks being sent; past it such a request gets 503 with Retry-After (a callback is dropped). Keep it below the memory limit, with headroom for the rest of the process.
    #[arg(long, env = "FLINT_MEMORY_BUDGET_BYTES", default_value_t = flint_runtime::budget::DEFAULT_MEMORY_BUDGET_BYTES as u64, value_parser = clap::value_parser!(u64).range(flint_runtime::budget::MIN_MEMORY_BUDGET_BYTES as u64..))]
    memory_budget_bytes: u64,
    /// Open client connections served at once; one more is answered 503 with Retry-After and closed.
    #[arg(long, env = "FLINT_MAX_CONNECTIONS", default_value_t = ClientSettings::default().max_connections as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a new connection may take to send its first bytes (a silent socket, or a partial HTTP/2 preface, is closed then).
    #[arg(long, env = "FLINT_FIRST_BYTE_TIMEOUT_SECONDS", default_value_t = ClientSettings::default().first_byte_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    first_byte_timeout_seconds: u64,
    /// Seconds a client connection may stay open with no request in progress.
    #[arg(long, env = "FLINT_IDLE_TIMEOUT_SECONDS", default_value_t = ClientSettings::default().idle_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_seconds: u64,
    /// Seconds between HTTP/2 pings to a client (0: none).
    #[arg(long, env = "FLINT_HTTP2_KEEP_ALIVE_SECONDS", default_value_t = ClientSettings::default().http2_keep_alive_interval.map_or(0, |d| d.as_secs()))]
    http2_keep_alive_seconds: u64,
    /// Seconds an HTTP/2 ping may go unanswered before the connection is closed.
    #[arg(long, env = "FLINT_HTTP2_KEEP_ALIVE_TIMEOUT_SECONDS", default_value_t = ClientSettings::default().http2_keep_alive_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    http2_keep_alive_timeout_seconds: u64,
    /// Idle seconds before TCP keep-alive probes start on a client connection (0: SO_KEEPALIVE off).
    #[arg(long, env = "FLINT_TCP_KEEPALIVE_SECONDS", default_value_t = ClientSettings::default().tcp_keepalive.map_or(0, |d| d.as_secs()))]
    tcp_keepalive_seconds: u64,
    /// Seconds a request body may send nothing, or a client read nothing of its response, before the request fails (408 if the response has not started) and frees its replica slot.
    #[arg(long, env = "FLINT_IO_TIMEOUT_SECONDS", default_value_t = ClientSettings::default().io_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    io_timeout_seconds: u64,
    /// Slowest a request body may arrive, in bytes per second on average over the time spent waiting for it, before the request fails (408) and frees its replica slot (0: no minimum).
    #[arg(long, env = "FLINT_MIN_BODY_BYTES_PER_SECOND", default_value_t = ClientSettings::default().min_body_rate.map_or(0, |r| r.bytes_per_second))]
    min_body_bytes_per_second: u32,
    /// Seconds of waiting for a request body before its minimum rate applies.
    #[arg(long, env = "FLINT_MIN_BODY_RATE_GRACE_SECONDS", default_value_t = ClientSettings::default().min_body_rate.map_or(5, |r| r.grace.as_secs()))]
    min_body_rate_grace_seconds: u64,
    /// Seconds an upgraded connection (WebSocket) may pass no byte either way before it is closed.
    #[arg(long, env = "FLINT_UPGRADE_IDLE_TIMEOUT_SECONDS", default_value_t = ClientSettings::default().upgrade_idle_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    upgrade_idle_timeout_seconds: u64,
    /// Seconds upgraded connections may run on once shutdown began, before they are closed.
    #[arg(long, env = "FLINT_UPGRADE_DRAIN_SECONDS", default_value_t = ClientSettings::default().upgrade_drain_timeout.as_secs())]
    upgrade_drain_seconds: u64,
    /// Peers trusted to forward X-Forwarded-Proto/-Host/-Prefix and Forwarded (from others they are dropped): comma-separated addresses or CIDRs, e.g. 10.0.0.0/8 [default: none].
    #[arg(long, env = "FLINT_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: TrustedProxies,
    /// Log filter (tracing EnvFilter syntax, e.g. info or flint_runtime=debug).
    #[arg(long, env = "FLINT_LOG", default_value = "info")]
    log: String,
    /// NATS server with JetStream for asynchronous invocations (e.g. nats://nats.flint-system:4222) [default: async requests are proxied as usual].
    #[arg(long, env = "FLINT_NATS_URL")]
    nats_url: Option<String>,
    /// Auth token of the NATS server (from a Secret; never on the command line) [default: none, for a server without authentication].
    #[arg(long, env = "FLINT_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// Bytes Flint's JetStream streams may hold together (70% pending invocations, refused with 503 when full; 20% dead letters; 10% settle records); keep it below the NATS server's store.
    #[arg(long, env = "FLINT_NATS_MAX_BYTES", default_value_t = flint_runtime::events::nats::DEFAULT_MAX_BYTES, value_parser = clap::value_parser!(u64).range(flint_runtime::events::nats::MIN_MAX_BYTES..))]
    nats_max_bytes: u64,
    /// Address blocks result callbacks (X-Callback-Url) may reach although they are loopback, link-local, private or cluster addresses: comma-separated CIDRs, e.g. 10.20.0.0/16,fd00:1::/64 [default: none].
    #[arg(long, env = "FLINT_CALLBACK_ALLOW_CIDRS", value_delimiter = ',')]
    callback_allow_cidrs: Vec<flint_runtime::events::Cidr>,
    /// The cluster's pod and Service ranges, refused to result callbacks like private ones: comma-separated CIDRs [default: none; private ranges are refused anyway].
    #[arg(long, env = "FLINT_CLUSTER_CIDRS", value_delimiter = ',')]
    cluster_cidrs: Vec<flint_runtime::events::Cidr>,
    /// Token shared with the operator (from a Secret; never on the command line): required of its drains, and presented with every scale-from-zero poke [default: drains are refused, and the operator refuses the pokes].
    #[arg(long, env = flint_api::drain::CONTROL_TOKEN_ENV, hide_env_values = true)]
    control_token: Option<String>,
    /// Headless Service whose ready endpoints are every gateway's admin port (the chart's `<release>-gateway-admin`): each replica's `concurrency` is split over them, and they lend each other free slots (needs the control token and --pod-ip) [default: the gateway admits a replica's whole concurrency, as if alone].
    #[arg(long, env = "FLINT_PEER_SERVICE")]
    peer_service: Option<String>,
    /// Namespace of --peer-service (the pod's own, from the downward API).
    #[arg(long, env = "FLINT_POD_NAMESPACE", default_value = "default")]
    pod_namespace: String,
    /// This gateway's pod IP, as the other gateways see it in --peer-service's endpoints (from the downward API).
    #[arg(long, env = "FLINT_POD_IP")]
    pod_ip: Option<std::net::IpAddr>,
    /// A fixed set of gateways instead of --peer-service: every gateway's admin address, this one's (--pod-ip and the admin port) included, comma-separated.
    #[arg(
        long,
        env = "FLINT_PEERS",
        value_delimiter = ',',
        conflicts_with = "peer_service"
    )]
    peers: Vec<std::net::SocketAddr>,
}

/// The other gateways named by `args`: a Service's endpoints, a fixed
/// list, or none (alone). Either needs this pod's IP.
fn peer_gateways(args: &GatewayArgs) -> anyhow::Result<flint_runtime::gateway::PeerGateways> {
    use flint_runtime::gateway::PeerGateways;
    if args.peer_service.is_none() && args.peers.is_empty() {
        return Ok(PeerGateways::Alone);
    }
    let ip = args
        .pod_ip
        .context("--pod-ip (FLINT_POD_IP) is needed with --peer-service or --peers")?;
    let me = std::net::SocketAddr::new(ip, args.admin_addr.port());
    Ok(match &args.peer_service {
        Some(name) => PeerGateways::Service {
            namespace: args.pod_namespace.clone(),
            name: name.clone(),
            me,
        },
        None => PeerGateways::Fixed {
            me,
            all: args.peers.clone(),
        },
    })
}

/// Runs the gateway until it is stopped.
pub(super) fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    init_server_logs(&args.log)?;
    let peers = peer_gateways(&args)?;
    let opts = flint_runtime::gateway::kube::ClusterOptions {
        gateway: flint_runtime::gateway::GatewayConfig {
            domain: args.domain,
            queue_size: args.queue_size,
            max_buffered_bytes: args.max_buffered_bytes,
            listen: args.listen,
            internal_listen: args.internal_listen,
            tls_listen: args.tls_listen,
            retry_after_seconds: 1,
            memory_budget_bytes: usize::try_from(args.memory_budget_bytes).unwrap_or(usize::MAX),
            clients: ClientSettings {
                max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
                first_byte_timeout: Duration::from_secs(args.first_byte_timeout_seconds),
                idle_timeout: Duration::from_secs(args.idle_timeout_seconds),
                http2_keep_alive_interval: (args.http2_keep_alive_seconds > 0)
                    .then(|| Duration::from_secs(args.http2_keep_alive_seconds)),
                http2_keep_alive_timeout: Duration::from_secs(
                    args.http2_keep_alive_timeout_seconds,
                ),
                tcp_keepalive: (args.tcp_keepalive_seconds > 0)
                    .then(|| Duration::from_secs(args.tcp_keepalive_seconds)),
                io_timeout: Duration::from_secs(args.io_timeout_seconds),
                min_body_rate: (args.min_body_bytes_per_second > 0).then(|| MinBodyRate {
                    bytes_per_second: args.min_body_bytes_per_second,
                    grace: Duration::from_secs(args.min_body_rate_grace_seconds),
                }),
                upgrade_idle_timeout: Duration::from_secs(args.upgrade_idle_timeout_seconds),
                upgrade_drain_timeout: Duration::from_secs(args.upgrade_drain_seconds),
                trusted_proxies: args.trusted_proxies,
            },
            peers,
            access: flint_runtime::gateway::AccessSettings {
                default_visibility: args.default_visibility,
                https_port: args.https_port,
                allow_http_jwks: false,
            },
        },
        admin_addr: args.admin_addr,
        autoscaler_url: args.autoscaler_url,
        namespace: args.namespace,
        control_token: args
            .control_token
            .and_then(flint_api::drain::ControlToken::new),
        tls_default_secret: args
            .tls_default_secret
            .as_deref()
            .map(parse_secret_ref)
            .transpose()?,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async move {
            match args.nats_url {
                Some(url) => {
                    let callbacks = flint_runtime::events::AddressPolicy::new(
                        args.callback_allow_cidrs,
                        args.cluster_cidrs,
                    );
                    let mut nats = flint_runtime::events::NatsSettings::new(url)
                        .with_max_bytes(args.nats_max_bytes);
                    if let Some(token) = args.nats_token.filter(|t| !t.is_empty()) {
                        nats = nats.with_token(token);
                    }
                    Ok(flint_runtime::events::cluster::run_gateway(opts, nats, callbacks).await?)
                }
                None => flint_runtime::gateway::kube::run_cluster(opts)
                    .await
                    .map_err(anyhow::Error::from),
            }
        })?;
    Ok(ExitCode::SUCCESS)
}

/// A Secret named `namespace/name`.
fn parse_secret_ref(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => anyhow::bail!("--tls-default-secret {text:?}: expected namespace/name"),
    }
}
