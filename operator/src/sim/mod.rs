//! `flint sim`: replays an invocation trace through the autoscaler's own
//! `decide()` in simulated time and reports, per keep-alive policy, the
//! cold-start percentages, idle replica-seconds and queueing delay.

pub mod engine;
pub mod plot;
pub mod report;
pub mod trace;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use flint_api::{KeepAlive, ScaleSpec};
use indicatif::{ProgressBar, ProgressStyle};

use crate::autoscaler::DecideConfig;
pub use engine::{FunctionStats, SimConfig, simulate};
pub use report::PolicyReport;
pub use trace::{FunctionTrace, TraceError};

/// Which policies to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyChoice {
    /// Fixed keep-alive of `--keepalive` after the last request.
    Fixed,
    /// Knative's defaults: 60 s stable window, 30 s grace period.
    Kpa,
    /// Adaptive (hybrid histogram) keep-alive, falling back to `--keepalive`.
    Adaptive,
    /// All three.
    All,
}

/// Arguments of `flint sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Trace file (`function,minute,count`, sparse per-minute counts).
    #[arg(long)]
    pub trace: PathBuf,
    /// Policy to replay.
    #[arg(long, value_enum, default_value = "all")]
    pub policy: PolicyChoice,
    /// Keep-alive of the fixed policy and fallback of the adaptive one.
    #[arg(long, default_value = "10m")]
    pub keepalive: flint_api::Duration,
    /// Time from a scale-up decision to a ready replica.
    #[arg(long, default_value = "1s")]
    pub cold_start: flint_api::Duration,
    /// Time a request takes once it has a replica.
    #[arg(long, default_value = "1s")]
    pub request_duration: flint_api::Duration,
    /// Print one JSON object per policy (a JSON array) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also sweep keep-alive settings and draw cold-start % against idle
    /// replica-seconds into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The trace file could not be opened.
    #[error("opening {path}: {error}")]
    Open {
        /// The file.
        path: String,
        /// The cause.
        error: std::io::Error,
    },
    /// The trace file is malformed.
    #[error("{path}: {error}")]
    Trace {
        /// The file.
        path: String,
        /// What is wrong, with the line.
        error: TraceError,
    },
    /// Writing the output failed.
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
    /// Serialising the JSON output failed.
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing the plot failed.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// One policy to replay: a name and the scale spec it runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Name in the report, e.g. `fixed-10m`.
    pub name: String,
    /// The spec every function runs with.
    pub spec: ScaleSpec,
}

fn minutes_label(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

impl Policy {
    fn base() -> ScaleSpec {
        ScaleSpec {
            min: 0,
            initial: 0,
            ..ScaleSpec::default()
        }
    }

    /// Fixed keep-alive of `keep`.
    pub fn fixed(keep: Duration) -> Self {
        Self {
            name: format!("fixed-{}", minutes_label(keep)),
            spec: ScaleSpec {
                scale_to_zero_grace_period: flint_api::Duration::from_millis(
                    u64::try_from(keep.as_millis()).unwrap_or(u64::MAX),
                ),
                ..Self::base()
            },
        }
    }

    /// Adaptive keep-alive falling back to `keep`.
    pub fn adaptive(keep: Duration) -> Self {
        let mut p = Self::fixed(keep);
        p.name = format!("adaptive-{}", minutes_label(keep));
        p.spec.keep_alive = KeepAlive::Adaptive;
        p
    }

    /// Knative's defaults.
    pub fn kpa() -> Self {
        Self {
            name: "kpa".to_owned(),
            spec: Self::base(),
        }
    }
}

/// Replays `traces` under each policy; reports come back in `policies` order.
pub fn replay(
    traces: &[FunctionTrace],
    policies: &[Policy],
    cfg: &DecideConfig,
    sim: &SimConfig,
    progress: &ProgressBar,
) -> Vec<PolicyReport> {
    let baseline = Policy::fixed(Duration::from_secs(600));
    let mut all = policies.to_vec();
    if !all
        .iter()
        .any(|p| p.spec == baseline.spec && p.spec.keep_alive == KeepAlive::Fixed)
    {
        all.push(baseline.clone());
    }
    progress.set_length((all.len() * traces.len()) as u64);
    let mut reports: Vec<PolicyReport> = all
        .iter()
        .map(|p| {
            progress.set_message(p.name.clone());
            let stats: Vec<FunctionStats> = traces
                .iter()
                .map(|t| {
                    let s = simulate(t, &p.spec, cfg, sim);
                    progress.inc(1);
                    s
                })
                .collect();
            report::aggregate(&p.name, &stats)
        })
        .collect();
    progress.finish_and_clear();
    let base_idle = reports
        .iter()
        .zip(&all)
        .find(|(_, p)| p.spec == baseline.spec)
        .map_or(0.0, |(r, _)| r.idle_replica_seconds);
    for r in &mut reports {
        r.idle_vs_fixed_10m = if base_idle > 0.0 {
            r.idle_replica_seconds / base_idle
        } else {
            0.0
        };
    }
    reports.truncate(policies.len());
    reports
}

/// The policies `choice` stands for.
pub fn policies(choice: PolicyChoice, keep: Duration) -> Vec<Policy> {
    match choice {
        PolicyChoice::Fixed => vec![Policy::fixed(keep)],
        PolicyChoice::Kpa => vec![Policy::kpa()],
        PolicyChoice::Adaptive => vec![Policy::adaptive(keep)],
        PolicyChoice::All => vec![Policy::fixed(keep), Policy::kpa(), Policy::adaptive(keep)],
    }
}

/// The keep-alive settings swept for the plot.
pub fn sweep() -> Vec<Policy> {
    let mut out = vec![Policy::kpa()];
    for m in [1u64, 2, 5, 10, 20, 30, 60] {
        out.push(Policy::fixed(Duration::from_secs(m * 60)));
    }
    for m in [2u64, 5, 10, 20] {
        out.push(Policy::adaptive(Duration::from_secs(m * 60)));
    }
    out
}

/// Runs `flint sim`: reads the trace, replays it and prints the report.
pub fn run(args: &SimArgs) -> Result<(), SimError> {
    let path = args.trace.display().to_string();
    let file = std::fs::File::open(&args.trace).map_err(|error| SimError::Open {
        path: path.clone(),
        error,
    })?;
    let traces = trace::read(std::io::BufReader::new(file))
        .map_err(|error| SimError::Trace { path, error })?;
    let sim = SimConfig {
        cold_start: args.cold_start.as_std(),
        request: args.request_duration.as_std(),
        ..SimConfig::default()
    };
    let cfg = DecideConfig::default();
    let mut chosen = policies(args.policy, args.keepalive.as_std());
    if args.plot.is_some() {
        for p in sweep() {
            if !chosen.iter().any(|c| c.name == p.name) {
                chosen.push(p);
            }
        }
    }
    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} functions, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let reports = replay(&traces, &chosen, &cfg, &sim, &progress);
    if let Some(plot_path) = &args.plot {
        let title = format!(
            "{}: p75 cold-start % vs idle replica-seconds",
            args.trace
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        );
        plot::svg(plot_path, &title, &reports)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report::table(&reports))?;
    }
    Ok(())
}
