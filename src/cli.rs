//! Command-line interface: one subcommand per role, dispatched to the crate
//! that implements it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
    /// Run the gateway: route requests to function pods, buffer at zero, export metrics.
    Gateway(GatewayArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
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
        Command::Gateway(args) => run_gateway(args),
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
    #[arg(long, env = "FLINT_AUTOSCALER_URL", default_value = "http://flint-operator.flint-system:9090")]
    autoscaler_url: String,
    /// Watch only this namespace [default: all namespaces].
    #[arg(long, env = "FLINT_NAMESPACE")]
    namespace: Option<String>,
    /// Requests that may wait per revision while it has no free replica.
    #[arg(long, env = "FLINT_QUEUE_SIZE", default_value_t = 1000)]
    queue_size: usize,
    /// Most bytes buffered per client connection (request head and read-ahead).
    #[arg(long, env = "FLINT_MAX_BUFFERED_BYTES", default_value_t = 65536)]
    max_buffered_bytes: usize,
    /// Log filter (tracing EnvFilter syntax, e.g. info or flint_runtime=debug).
    #[arg(long, env = "FLINT_LOG", default_value = "info")]
    log: String,
}

fn run_gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {:?}", args.log))?;
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let opts = flint_runtime::gateway::kube::ClusterOptions {
        gateway: flint_runtime::gateway::GatewayConfig {
            domain: args.domain,
            queue_size: args.queue_size,
            max_buffered_bytes: args.max_buffered_bytes,
            listen: args.listen,
            retry_after_seconds: 1,
        },
        admin_addr: args.admin_addr,
        autoscaler_url: args.autoscaler_url,
        namespace: args.namespace,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(flint_runtime::gateway::kube::run_cluster(opts))?;
    Ok(ExitCode::SUCCESS)
}

