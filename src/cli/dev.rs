//! `flint dev`: its flags and how they become [`crate::dev::DevOptions`];
//! `--status` prints a running instance's status page instead.

use std::process::ExitCode;

use anyhow::Context;

/// Flags of `flint dev`.
#[derive(Debug, clap::Args)]
pub(super) struct DevArgs {
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
    /// TLS port, for Functions with spec.tls (a self-signed certificate for their hosts, localhost and *.localhost); 0: none.
    #[arg(long, env = "FLINT_DEV_TLS_PORT", default_value_t = 8443)]
    tls_port: u16,
    /// In-cluster port: where cluster-local Functions answer (public ones too); 0: none.
    #[arg(long, env = "FLINT_DEV_INTERNAL_PORT", default_value_t = 8082)]
    internal_port: u16,
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

/// Runs `flint dev` until it is stopped, or prints the status page of a
/// running one.
pub(super) fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
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
        tls_port: args.tls_port,
        internal_port: args.internal_port,
        queue_size: args.queue_size,
    };
    runtime.block_on(crate::dev::run(opts))?;
    Ok(ExitCode::SUCCESS)
}
