//! Command-line interface: one subcommand per role, dispatched to the crate
//! that implements it. The roles with many flags (`gateway`, `operator`,
//! `dev`) each have a module holding their flags and how those become the
//! role's settings, so a flag and its use sit in one file; the small
//! commands (`crd`, `validate`, `render`) are run here.

mod dev;
mod gateway;
mod operator;

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
    /// Run the operator: reconcile Functions into revisions and autoscale them (leader-elected).
    Operator(operator::OperatorArgs),
    /// Print, as a YAML stream, every object the operator creates for the Function manifests given.
    Render {
        /// Manifest files (YAML, one or more Functions each).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Replay an invocation trace through the autoscaler and compare keep-alive policies.
    Sim(flint_operator::sim::SimArgs),
    /// Run the gateway: route requests to function pods, buffer at zero, export metrics.
    Gateway(gateway::GatewayArgs),
    /// Run the whole platform on this machine: every Function manifest under DIR, replicas as local processes.
    Dev(dev::DevArgs),
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
        Command::Operator(args) => operator::run(args),
        Command::Render { files } => render(&files),
        Command::Gateway(args) => gateway::run(args),
        Command::Dev(args) => dev::run(args),
    }
}

/// Installs the log subscriber of a server role (operator, gateway) with the
/// `--log` filter `log`. Colours only on a terminal: a pod's log is read by
/// people and machines that see escape codes as text. A subscriber may
/// already be installed (tests); the existing one is kept.
fn init_server_logs(log: &str) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(log).with_context(|| format!("--log {log:?}"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
    Ok(())
}

/// Prints every object the operator creates for the Functions in `files`.
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
