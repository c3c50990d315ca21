//! Command-line interface: one subcommand per role, dispatched to the crate
//! that implements it.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flint_runtime::gateway::{ClientSettings, MinBodyRate, TrustedProxies};

/// Flint: a serverless platform for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "flint", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Function CustomResourceDefinition as YAML.
    Crd,
    /// Check Function manifests: parse and validate every file given.
    Validate {
        /// Manifest files (YAML, one or more documents each).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Run the operator: reconcile Functions into revisions and autoscale them (leader-elected).
    Operator(OperatorArgs),
    /// Print, as a YAML stream, every object the operator creates for the Function manifests given.
    Render {
        /// Manifest files (YAML, one or more Functions each).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Replay an invocation trace through the autoscaler and compare keep-alive policies.
    Sim(flint_operator::sim::SimArgs),
    /// Run the gateway: route requests to function pods, buffer at zero, export metrics.
    Gateway(GatewayArgs),
    /// Run the whole platform on this machine: every Function manifest under DIR, replicas as local processes.
    Dev(DevArgs),
}

/// Flags of `flint dev`.
#[derive(Debug, clap::Args)]
struct DevArgs {
    /// Directory holding the Function manifests (searched recursively; edits roll new revisions).
    #[arg(default_value = "examples")]
    dir: std::path::PathBuf,
    /// Address the gateway and the admin port listen on.
    #[arg(long, env = "FLINT_DEV_BIND", default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Gateway port.
    #[arg(long, env = "FLINT_DEV_PORT", default_value_t = 8080)]
    port: u16,
    /// Admin port: status page at /, gateway metrics at /metrics, health at /healthz.
    #[arg(long, env = "FLINT_DEV_ADMIN_PORT", default_value_t = 8081)]
    admin_port: u16,
    /// Requests that may wait per revision while it scales from zero (more get 503).
    #[arg(long, env = "FLINT_DEV_QUEUE_SIZE", default_value_t = flint_api::poke::DEFAULT_QUEUE_SIZE as usize)]
    queue_size: usize,
    /// Directory of the durable store of asynchronous invocations and schedule ticks, kept across restarts [default: DIR/.flint/events].
    #[arg(long, env = "FLINT_DEV_EVENTS_DIR")]
    events_dir: Option<std::path::PathBuf>,
    /// Print the status page of a running `flint dev` (functions, revisions, replicas, traffic) and exit.
    #[arg(long)]
    status: bool,
    /// Log filter for diagnostics on stderr (e.g. info, flint_runtime=debug).
    #[arg(long, env = "FLINT_LOG", default_value = "warn")]
    log: String,
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sim(args) => {
            flint_operator::sim::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crd => {
            let yaml = flint_api::crd::function_crd_yaml().context("rendering the CRD")?;
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .context("writing the CRD")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files } => {
            let mut failed = false;
            for file in files {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                match flint_api::parse_functions(&text) {
                    Ok(functions) => {
                        println!("{}: {} valid Function(s)", file.display(), functions.len())
                    }
                    Err(err) => {
                        failed = true;
                        eprintln!("{}: {err}", file.display());
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Operator(args) => run_operator(args),
        Command::Render { files } => render(&files),
        Command::Gateway(args) => run_gateway(args),
        Command::Dev(args) => run_dev(args),
    }
}

/// Settings of `flint gateway`. Every flag can also be set from the
/// environment variable named in its help.
#[derive(Debug, clap::Args)]
struct GatewayArgs {
    /// Address of the data plane (function traffic).
    #[arg(long, env = "FLINT_LISTEN", default_value = "0.0.0.0:8080")]
    listen: std::net::SocketAddr,
    /// Address of the admin endpoints (/metrics, /healthz, /readyz).
    #[arg(long, env = "FLINT_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: std::net::SocketAddr,
    /// Domain of Function hosts: <function>.<namespace>.<domain>.
    #[arg(long, env = "FLINT_DOMAIN", default_value = flint_api::names::DEFAULT_CLUSTER_DOMAIN)]
    domain: String,
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

/// Colours in logs only on a terminal: a pod's log is read by people and
/// machines that see escape codes as text.
fn colour_logs() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

fn run_gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {:?}", args.log))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .try_init();
    let peers = peer_gateways(&args)?;
    let opts = flint_runtime::gateway::kube::ClusterOptions {
        gateway: flint_runtime::gateway::GatewayConfig {
            domain: args.domain,
            queue_size: args.queue_size,
            max_buffered_bytes: args.max_buffered_bytes,
            listen: args.listen,
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
        },
        admin_addr: args.admin_addr,
        autoscaler_url: args.autoscaler_url,
        namespace: args.namespace,
        control_token: args
            .control_token
            .and_then(flint_api::drain::ControlToken::new),
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

/// Settings of `flint operator`. Every flag can also be set from the
/// environment variable named in its help.
#[derive(Debug, clap::Args)]
struct OperatorArgs {
    /// Address of the admin endpoints (/metrics, /healthz, /readyz).
    #[arg(long, env = "FLINT_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: std::net::SocketAddr,
    /// Base URL of the gateway; cron schedules are fired through its async intake [default: schedules are not run].
    #[arg(long, env = "FLINT_GATEWAY_URL")]
    gateway_url: Option<String>,
    /// Domain of Function hosts: <function>.<namespace>.<domain>.
    #[arg(long, env = "FLINT_DOMAIN", default_value = flint_api::names::DEFAULT_CLUSTER_DOMAIN)]
    domain: String,
    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, env = "FLINT_LEASE_NAME", default_value = "flint-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "FLINT_LEASE_NAMESPACE", default_value = "flint-system")]
    lease_namespace: String,
    /// This replica's identity in the election [default: $HOSTNAME, the pod name].
    #[arg(long, env = "FLINT_IDENTITY")]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal before another replica may take it over.
    #[arg(long, env = "FLINT_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds the leader keeps acting without a successful renewal; must be less than the lease duration.
    #[arg(long, env = "FLINT_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    renew_deadline_seconds: u64,
    /// Seconds between attempts to acquire or renew the Lease.
    #[arg(long, env = "FLINT_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    retry_period_seconds: u64,
    /// Where the autoscaler reads the scaling signal: `direct` scrapes every gateway pod, `prometheus` queries --prometheus-url.
    #[arg(long, env = "FLINT_METRICS_SOURCE", default_value = "direct", value_parser = ["direct", "prometheus"])]
    metrics_source: String,
    /// Token shared with the gateways (from a Secret; never on the command line): presented to drain replicas before a scale-down, and required of every scale-from-zero poke [default: scale-downs do not drain, pokes are refused].
    #[arg(long, env = flint_api::drain::CONTROL_TOKEN_ENV, hide_env_values = true)]
    control_token: Option<String>,
    /// The gateways' per-revision queue size (their --queue-size): a poke is believed for at most this many waiting requests.
    #[arg(long, env = "FLINT_GATEWAY_QUEUE_SIZE", default_value_t = flint_api::poke::DEFAULT_QUEUE_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
    gateway_queue_size: u32,
    /// Price of one idle replica-second for Functions with `keepAlive: learned`, in weighted cold starts: higher keeps fewer replicas warm and allows more cold starts (docs/autoscaling.md).
    #[arg(long, env = "FLINT_KEEP_ALIVE_PRICE", default_value_t = flint_operator::autoscaler::keepalive::LearnedConfig::default().price, value_parser = parse_price)]
    keep_alive_price: f64,
    /// Namespace of the gateway Service (direct source).
    #[arg(long, env = "FLINT_GATEWAY_NAMESPACE", default_value = "flint-system")]
    gateway_namespace: String,
    /// Service whose EndpointSlices list the gateway pods to scrape (direct source).
    #[arg(long, env = "FLINT_GATEWAY_SERVICE", default_value = "flint-gateway")]
    gateway_service: String,
    /// Port of the gateways' /metrics (their admin port; direct source).
    #[arg(long, env = "FLINT_GATEWAY_METRICS_PORT", default_value_t = 9090)]
    gateway_metrics_port: u16,
    /// Base URL of the Prometheus server (prometheus source), e.g. http://prometheus.monitoring:9090.
    #[arg(
        long,
        env = "FLINT_PROMETHEUS_URL",
        required_if_eq("metrics_source", "prometheus")
    )]
    prometheus_url: Option<String>,
    /// PromQL label matchers selecting the gateway targets (prometheus source).
    #[arg(
        long,
        env = "FLINT_PROMETHEUS_SELECTOR",
        default_value = "job=\"flint-gateway\""
    )]
    prometheus_selector: String,
    /// Range of the PromQL rate() windows in seconds (at least two scrape intervals).
    #[arg(long, env = "FLINT_PROMETHEUS_RANGE_SECONDS", default_value_t = 30)]
    prometheus_range_seconds: u64,
    /// Where the leader accepts the gateways' scale-from-zero pokes (POST /v1/poke).
    #[arg(long, env = "FLINT_POKE_ADDR", default_value = "0.0.0.0:8090")]
    poke_addr: std::net::SocketAddr,
    /// Registries whose image tags are not resolved to digests, comma-separated: `host` (any port), `host:port`, or `*` for all (images loaded straight into the nodes live there).
    #[arg(long, env = "FLINT_SKIP_TAG_RESOLUTION_REGISTRIES", value_delimiter = ',', default_values_t = flint_operator::image::DEFAULT_SKIP_REGISTRIES.iter().map(|r| (*r).to_owned()).collect::<Vec<String>>())]
    skip_tag_resolution_registries: Vec<String>,
    /// Registries spoken to over plain HTTP when resolving image tags, comma-separated (`host` or `host:port`; loopback and test registries only).
    #[arg(long, env = "FLINT_INSECURE_REGISTRIES", value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// Seconds one image tag resolution may take, token request included.
    #[arg(long, env = "FLINT_TAG_RESOLUTION_TIMEOUT_SECONDS", default_value_t = flint_operator::image::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=60))]
    tag_resolution_timeout_seconds: u64,
    /// Log filter (tracing EnvFilter syntax, e.g. info or flint_operator=debug).
    #[arg(long, env = "FLINT_LOG", default_value = "info")]
    log: String,
}

fn autoscaler_config(
    args: &OperatorArgs,
) -> flint_operator::autoscaler::cluster::ClusterAutoscalerConfig {
    use flint_operator::autoscaler::cluster::SignalConfig;
    let signal = match (args.metrics_source.as_str(), &args.prometheus_url) {
        ("prometheus", Some(url)) => SignalConfig::Prometheus(
            flint_operator::autoscaler::source::prometheus::PromQlConfig {
                url: url.clone(),
                range: std::time::Duration::from_secs(args.prometheus_range_seconds),
                gateway_selector: args.prometheus_selector.clone(),
                timeout: std::time::Duration::from_secs(2),
            },
        ),
        _ => SignalConfig::Direct,
    };
    flint_operator::autoscaler::cluster::ClusterAutoscalerConfig {
        signal,
        gateways: flint_operator::autoscaler::cluster::GatewayDiscovery {
            namespace: args.gateway_namespace.clone(),
            service: args.gateway_service.clone(),
            port: args.gateway_metrics_port,
        },
        control_token: args
            .control_token
            .clone()
            .and_then(flint_api::drain::ControlToken::new),
        poke_addr: args.poke_addr,
        gateway_queue_size: args.gateway_queue_size,
        keep_alive_price: args.keep_alive_price,
    }
}

/// A keep-alive price: a finite number above zero.
fn parse_price(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 => Ok(p),
        _ => Err(format!("{s:?} is not a price above zero (e.g. 1.3e-4)")),
    }
}

fn run_operator(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    use std::time::Duration;
    anyhow::ensure!(
        args.renew_deadline_seconds < args.lease_duration_seconds,
        "--renew-deadline-seconds ({}) must be less than --lease-duration-seconds ({}), so a leader stops before another can start",
        args.renew_deadline_seconds,
        args.lease_duration_seconds
    );
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {:?}", args.log))?;
    // A subscriber may already be installed (tests); keep the existing one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .try_init();
    let autoscaler = autoscaler_config(&args);
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("flint-operator-{}", std::process::id()));
    let config = flint_operator::process::OperatorConfig {
        admin_addr: args.admin_addr,
        domain: args.domain,
        leader: flint_operator::leader::LeaderConfig {
            lease_name: args.lease_name,
            namespace: args.lease_namespace,
            identity,
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_deadline: Duration::from_secs(args.renew_deadline_seconds),
            retry_period: Duration::from_secs(args.retry_period_seconds),
        },
        autoscaler,
        schedule_gateway_url: args.gateway_url,
        images: Some(flint_operator::reconcile::pin::ImagePinning {
            skip: flint_operator::image::RegistryList::new(&args.skip_tag_resolution_registries),
            resolver: flint_operator::image::Resolver::new(
                flint_operator::image::RegistryList::new(&args.insecure_registries),
                Duration::from_secs(args.tag_resolution_timeout_seconds),
            ),
        }),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(flint_operator::process::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn render(files: &[std::path::PathBuf]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let yaml = flint_operator::reconcile::render::render_manifest(&text)
            .with_context(|| format!("rendering {}", file.display()))?;
        out.write_all(yaml.as_bytes())
            .context("writing the objects")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {:?} is not a valid filter", args.log))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.status {
        let admin = std::net::SocketAddr::new(args.bind, args.admin_port);
        runtime.block_on(crate::dev::print_status(admin))?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = crate::dev::DevOptions {
        events_dir: args
            .events_dir
            .unwrap_or_else(|| args.dir.join(".flint").join("events")),
        dir: args.dir,
        bind: args.bind,
        port: args.port,
        admin_port: args.admin_port,
        queue_size: args.queue_size,
    };
    runtime.block_on(crate::dev::run(opts))?;
    Ok(ExitCode::SUCCESS)
}
