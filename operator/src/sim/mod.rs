//! `flint sim`: replays an invocation trace through the autoscaler's own
//! `decide()` in simulated time and reports, per keep-alive policy, the
//! cold-start percentages, idle replica-seconds and queueing delay.

pub mod engine;
pub mod frontier;
pub mod plot;
pub mod report;
pub mod trace;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use flint_api::{KeepAlive, ScaleSpec};
use indicatif::{ProgressBar, ProgressStyle};

use crate::autoscaler::DecideConfig;
use crate::autoscaler::keepalive::LearnedConfig;
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
    /// Per-function cost-aware windows from the function's own idle times,
    /// falling back to `--keepalive` (the baseline the learned policy is
    /// measured against).
    CostAware,
    /// Learned keep-alive: cost-aware windows with a population prior and
    /// cold starts weighed per request.
    Learned,
    /// All of them, each swept over its settings: the trade-off frontier
    /// as a table, and whether the learned one is below the others.
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
    /// Draw cold-start % against idle replica-seconds into this SVG file
    /// (sweeping every policy's settings, as `--policy all` does).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Replay only one half of the functions, split by function id (see
    /// [`Half`]): tune on one half, check on the other.
    #[arg(long, value_enum)]
    pub half: Option<Half>,
}

/// A half of a trace's functions, split by function id: the parity of the
/// id's first 8 hex digits (ids are hashes, so the split is random but
/// fixed; an id that is not hex goes by the parity of its bytes' sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Half {
    /// Even ids.
    A,
    /// Odd ids.
    B,
}

impl Half {
    /// Whether the function with `id` is in this half.
    pub fn contains(self, id: &str) -> bool {
        let prefix = id.get(..8).unwrap_or(id);
        let odd = match u64::from_str_radix(prefix, 16) {
            Ok(x) => x % 2 == 1,
            Err(_) => id.bytes().map(u64::from).sum::<u64>() % 2 == 1,
        };
        odd == (self == Half::B)
    }
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
    /// Tunables of the learned policy, when they differ from the defaults.
    pub learned: Option<LearnedConfig>,
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
            learned: None,
        }
    }

    /// Adaptive keep-alive falling back to `keep`.
    pub fn adaptive(keep: Duration) -> Self {
        let mut p = Self::fixed(keep);
        p.name = format!("adaptive-{}", minutes_label(keep));
        p.spec.keep_alive = KeepAlive::Adaptive;
        p
    }

    /// Learned keep-alive at `price` (None: the default), with `keep` as
    /// the grace period the spec carries.
    pub fn learned(keep: Duration, price: Option<f64>) -> Self {
        let mut p = Self::fixed(keep);
        p.spec.keep_alive = KeepAlive::Learned;
        match price {
            None => p.name = "learned".to_owned(),
            Some(price) => {
                p.name = format!("learned-{price:e}");
                p.learned = Some(LearnedConfig::at_price(price));
            }
        }
        p
    }

    /// The per-function cost-aware baseline at `price`, falling back to
    /// `keep` until a function has an idle time.
    pub fn cost_aware(keep: Duration, price: f64) -> Self {
        let mut p = Self::fixed(keep);
        p.spec.keep_alive = KeepAlive::Learned;
        p.name = if keep == Duration::from_secs(600) {
            format!("cost-aware-{price:e}")
        } else {
            format!("cost-aware-{price:e}-{}", minutes_label(keep))
        };
        p.learned = Some(LearnedConfig::baseline(price));
        p
    }

    /// Knative's defaults.
    pub fn kpa() -> Self {
        Self {
            name: "kpa".to_owned(),
            spec: Self::base(),
            learned: None,
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
    if !all.iter().any(|p| p.spec == baseline.spec) {
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
                    let cfg = DecideConfig {
                        learned: p.learned.unwrap_or(cfg.learned),
                        ..*cfg
                    };
                    let s = simulate(t, &p.spec, &cfg, sim);
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
        PolicyChoice::CostAware => vec![Policy::cost_aware(keep, COST_AWARE_PRICE)],
        PolicyChoice::Learned => vec![Policy::learned(keep, None)],
        PolicyChoice::All => vec![
            Policy::fixed(keep),
            Policy::kpa(),
            Policy::adaptive(keep),
            Policy::cost_aware(keep, COST_AWARE_PRICE),
            Policy::learned(keep, None),
        ],
    }
}

/// The price of the cost-aware baseline in `--policy all`: where its idle
/// time is about that of the learned policy's default, so the two compare
/// at the same cost.
pub const COST_AWARE_PRICE: f64 = 1e-4;

/// The idle budgets (relative to fixed 10 minutes) over which the learned
/// curve is compared with the fixed and cost-aware ones.
pub const FRONTIER_RANGE: (f64, f64) = (0.5, 1.5);

/// The keep-alive settings swept for the plot.
pub fn sweep() -> Vec<Policy> {
    let mut out = vec![Policy::kpa()];
    for s in [30u64, 45, 60, 120, 300, 600, 1200, 1800, 3600, 5400] {
        out.push(Policy::fixed(Duration::from_secs(s)));
    }
    for m in [2u64, 5, 10, 20] {
        out.push(Policy::adaptive(Duration::from_secs(m * 60)));
    }
    let keep = Duration::from_secs(600);
    for price in [1e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2] {
        out.push(Policy::cost_aware(keep, price));
    }
    // Its own idle times never keep it longer than it has seen: above about
    // 1x only a longer fallback (until a function's first idle time) spends
    // more.
    for m in [20u64, 30, 60] {
        out.push(Policy::cost_aware(Duration::from_secs(m * 60), 1e-5));
    }
    for price in [
        2e-5, 4e-5, 7e-5, 1.3e-4, 2.5e-4, 3.5e-4, 5e-4, 7e-4, 1e-3, 1.4e-3, 2e-3, 3e-3, 4e-3,
    ] {
        out.push(Policy::learned(keep, Some(price)));
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
    let mut traces = trace::read(std::io::BufReader::new(file))
        .map_err(|error| SimError::Trace { path, error })?;
    if let Some(half) = args.half {
        traces.retain(|t| half.contains(&t.id));
    }
    let sim = SimConfig {
        cold_start: args.cold_start.as_std(),
        request: args.request_duration.as_std(),
        ..SimConfig::default()
    };
    let cfg = DecideConfig::default();
    let mut chosen = policies(args.policy, args.keepalive.as_std());
    let frontier = args.plot.is_some() || args.policy == PolicyChoice::All;
    if frontier {
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
        if frontier {
            let learned = frontier::Curve::of(&reports, "learned");
            for other in ["fixed", "cost-aware"] {
                let (lo, hi) = FRONTIER_RANGE;
                let cmp =
                    frontier::compare(&learned, &frontier::Curve::of(&reports, other), lo, hi);
                let verdict = if cmp.below_over(lo, hi) {
                    "strictly below"
                } else {
                    "NOT strictly below"
                };
                writeln!(
                    out,
                    "learned vs {other}: {verdict} over {lo:.2}x-{hi:.2}x; {cmp}"
                )?;
            }
        }
    }
    Ok(())
}
