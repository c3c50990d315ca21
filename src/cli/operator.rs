//! `flint operator`: its flags (each also an environment variable, as the
//! chart sets them) and how they become the operator's settings: leader
//! election, the autoscaler's signal source, image pinning.

use std::process::ExitCode;

use anyhow::Context;

use super::init_server_logs;

/// Settings of `flint operator`. Every flag can also be set from the
/// environment variable named in its help.
#[derive(Debug, clap::Args)]
pub(super) struct OperatorArgs {
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

/// The autoscaler's settings from the flags.
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

/// Runs the operator until it is stopped.
pub(super) fn run(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    use std::time::Duration;
    anyhow::ensure!(
        args.renew_deadline_seconds < args.lease_duration_seconds,
        "--renew-deadline-seconds ({}) must be less than --lease-duration-seconds ({}), so a leader stops before another can start",
        args.renew_deadline_seconds,
        args.lease_duration_seconds
    );
    init_server_logs(&args.log)?;
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
