//! Per-revision metrics and the autoscaler tick at 1,000 and 10,000
//! revisions, 100 of them active (one request each per simulated second),
//! the rest idle past the gateway's grace. Prints, for each size:
//!
//! - the gateway's `/metrics` body (bytes) and the CPU to render it;
//! - the autoscaler's direct source: CPU to read one scrape (the line
//!   reader and the per-revision ledger; the HTTP fetch is not included);
//! - the autoscaler's tick: CPU for one decision pass over every revision;
//! - the same body and read with every revision exported (what expiry
//!   saves);
//! - the heap of the gateway's per-revision accounting and of the
//!   autoscaler's entries, per revision (a counting allocator,
//!   `counting.rs`);
//!
//! then the 10k/1k ratio of each. CPU is the thread's user+system time
//! (`getrusage(RUSAGE_THREAD)`), the mean over the measured rounds.
//!
//! Run: `cargo bench --bench metrics` (release build).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flint_api::ScaleSpec;
use flint_api::backend::{Replicas, RevisionKey, ScaleActuator, ScaleError, Standing};
use flint_operator::autoscaler::source::direct::Ledger;
use flint_operator::autoscaler::source::{MetricsSource, Pending, Readings, SourceError};
use flint_operator::autoscaler::{Autoscaler, AutoscalerConfig};
use flint_runtime::metrics::{GatewayMetrics, RevisionMetrics};

#[path = "counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// Revisions with traffic in every size.
const ACTIVE: usize = 100;
/// Rounds (simulated seconds) measured after warming up.
const ROUNDS: usize = 200;
/// Rounds before measuring: the autoscaler's first decisions and writes.
const WARM_UP: usize = 5;

/// CPU time of this thread so far.
fn cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(
                    u64::try_from(t.tv_sec()).unwrap_or(0),
                    u32::try_from(t.tv_usec()).unwrap_or(0) * 1000,
                )
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// The mean: the kernel charges thread CPU time in scheduler ticks, so a
/// single short segment reads 0 or a whole tick; over many rounds the
/// mean is the cost.
fn median(v: Vec<Duration>) -> Duration {
    let n = u32::try_from(v.len()).unwrap_or(1).max(1);
    v.iter().sum::<Duration>() / n
}

/// The gateway's revisions: `n`, each served once long ago.
struct Gateway {
    metrics: GatewayMetrics,
    revisions: Vec<RevisionMetrics>,
}

impl Gateway {
    fn new(n: usize, t0: Instant) -> Self {
        let metrics = GatewayMetrics::new().expect("metrics");
        let revisions: Vec<RevisionMetrics> = (0..n)
            .map(|i| {
                let name = format!("fn-{i:05}");
                metrics.revision(&RevisionKey::new("bench", &name, format!("{name}-00001")))
            })
            .collect();
        for rev in &revisions {
            let c = rev.request_started(t0);
            rev.request_finished(c, t0, t0, 200);
            rev.scrape(t0, metrics.grace());
        }
        Self { metrics, revisions }
    }

    /// One simulated second at `now`: the first `active` revisions serve a
    /// request each.
    fn serve(&self, now: Instant, active: usize) {
        for rev in self.revisions.iter().take(active) {
            let c = rev.request_started(now);
            rev.request_finished(c, now, now + Duration::from_millis(20), 200);
        }
    }

    /// `/metrics` at `now`, as `Gateway::metrics_text` renders it.
    fn render(&self, now: Instant) -> String {
        let grace = self.metrics.grace();
        let shown: Vec<&RevisionMetrics> = self
            .revisions
            .iter()
            .filter(|r| r.scrape(now, grace))
            .collect();
        self.metrics.encode_with(shown).expect("encode")
    }
}

/// An actuator in memory: ready at once with what was written.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<HashMap<RevisionKey, u32>>>);

impl ScaleActuator for Memory {
    async fn scale(&self, revision: &RevisionKey, replicas: u32) -> Result<(), ScaleError> {
        if let Ok(mut m) = self.0.lock() {
            m.insert(revision.clone(), replicas);
        }
        Ok(())
    }
    async fn replicas(&self, revision: &RevisionKey) -> Result<Replicas, ScaleError> {
        let n = self
            .0
            .lock()
            .map(|m| m.get(revision).copied().unwrap_or(0))
            .unwrap_or(0);
        Ok(Replicas {
            desired: n,
            ready: n,
        })
    }
    async fn standing(&self, _: &RevisionKey) -> Result<Option<Standing>, ScaleError> {
        Ok(None)
    }
}

/// The direct source's reading of the text the gateway last rendered.
struct Text {
    body: Arc<Mutex<(String, Instant)>>,
    ledger: Ledger,
}

impl MetricsSource for Text {
    fn name(&self) -> &'static str {
        "text"
    }
    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        let mut readings = Readings::new();
        let mut pending = Pending::new();
        if let Ok(body) = self.body.lock() {
            self.ledger
                .read(&body.0, body.1, &mut readings, &mut pending);
        }
        for key in revisions {
            readings.entry(key.clone()).or_default();
        }
        Ok(readings)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    body: usize,
    render: Duration,
    read: Duration,
    tick: Duration,
    body_all: usize,
    render_all: Duration,
    read_all: Duration,
    /// Heap of the gateway's per-revision accounting, per revision.
    metrics_bytes: usize,
    /// Heap of the autoscaler's entries, per revision, once tracked.
    tracked_bytes: usize,
}

fn measure(n: usize) -> Figures {
    let t0 = Instant::now();
    // Idle revisions served once, more than a grace before the rounds.
    let base = t0 + Duration::from_secs(3600);
    let before = counting::live();
    let gateway = Gateway::new(n, t0);
    let metrics_bytes = counting::live().saturating_sub(before);
    let everyone = Gateway::new(n, t0);
    let body = Arc::new(Mutex::new((String::new(), base)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = prometheus::Registry::new();
    let mut scaler = Autoscaler::new(
        Memory::default(),
        Text {
            body: Arc::clone(&body),
            ledger: Ledger::default(),
        },
        AutoscalerConfig::default(),
        &registry,
    )
    .expect("autoscaler");
    let handle = scaler.handle();
    let spec = ScaleSpec {
        initial: 0,
        ..ScaleSpec::default()
    };
    let before = counting::live();
    for i in 0..n {
        let name = format!("fn-{i:05}");
        handle.upsert(
            RevisionKey::new("bench", &name, format!("{name}-00001")),
            spec.clone(),
        );
    }
    let tracked_bytes = counting::live().saturating_sub(before);
    let (mut render, mut read, mut tick) = (Vec::new(), Vec::new(), Vec::new());
    let (mut render_all, mut read_all) = (Vec::new(), Vec::new());
    let mut figures = Figures::default();
    let mut ledger_all = Ledger::default();
    for round in 0..WARM_UP + ROUNDS {
        let now = base + Duration::from_secs(round as u64);
        gateway.serve(now, ACTIVE);
        everyone.serve(now, n);
        let c = cpu();
        let text = gateway.render(now);
        let rendered = cpu() - c;
        let c = cpu();
        let mut probe = Ledger::default();
        let (mut r, mut p) = (Readings::new(), Pending::new());
        probe.read(&text, now, &mut r, &mut p);
        let parsed = cpu() - c;
        figures.body = text.len();
        if let Ok(mut b) = body.lock() {
            *b = (text, now);
        }
        rt.block_on(scaler.scrape());
        let c = cpu();
        rt.block_on(scaler.tick());
        let ticked = cpu() - c;
        let c = cpu();
        let all = everyone.render(now);
        let rendered_all = cpu() - c;
        let c = cpu();
        let (mut r, mut p) = (Readings::new(), Pending::new());
        ledger_all.read(&all, now, &mut r, &mut p);
        let parsed_all = cpu() - c;
        figures.body_all = all.len();
        if round >= WARM_UP {
            render.push(rendered);
            read.push(parsed);
            tick.push(ticked);
            render_all.push(rendered_all);
            read_all.push(parsed_all);
        }
    }
    figures.metrics_bytes = metrics_bytes / n;
    figures.tracked_bytes = tracked_bytes / n;
    figures.render = median(render);
    figures.read = median(read);
    figures.tick = median(tick);
    figures.render_all = median(render_all);
    figures.read_all = median(read_all);
    figures
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}x", a / b)
    } else {
        "-".to_owned()
    }
}

fn main() {
    let started = Instant::now();
    let small = measure(1_000);
    let large = measure(10_000);
    println!("revisions: 1,000 and 10,000, {ACTIVE} active; mean of {ROUNDS} rounds");
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "figure", "1,000", "10,000", "10k/1k"
    );
    let bytes = |name: &'static str, a: usize, b: usize| {
        (name, a.to_string(), b.to_string(), b as f64, a as f64)
    };
    let rows: [(&str, String, String, f64, f64); 10] = [
        (
            "/metrics body, idle expired (bytes)",
            small.body.to_string(),
            large.body.to_string(),
            large.body as f64,
            small.body as f64,
        ),
        (
            "gateway render CPU",
            ms(small.render),
            ms(large.render),
            large.render.as_secs_f64(),
            small.render.as_secs_f64(),
        ),
        (
            "direct source read CPU per scrape",
            ms(small.read),
            ms(large.read),
            large.read.as_secs_f64(),
            small.read.as_secs_f64(),
        ),
        (
            "autoscaler tick CPU",
            ms(small.tick),
            ms(large.tick),
            large.tick.as_secs_f64(),
            small.tick.as_secs_f64(),
        ),
        (
            "/metrics body, all exported (bytes)",
            small.body_all.to_string(),
            large.body_all.to_string(),
            large.body_all as f64,
            small.body_all as f64,
        ),
        (
            "gateway render CPU, all exported",
            ms(small.render_all),
            ms(large.render_all),
            large.render_all.as_secs_f64(),
            small.render_all.as_secs_f64(),
        ),
        (
            "direct source read CPU, all exported",
            ms(small.read_all),
            ms(large.read_all),
            large.read_all.as_secs_f64(),
            small.read_all.as_secs_f64(),
        ),
        (
            "direct source at 1 scrape/s, % of a core",
            format!("{:.3} %", small.read.as_secs_f64() * 100.0),
            format!("{:.3} %", large.read.as_secs_f64() * 100.0),
            large.read.as_secs_f64(),
            small.read.as_secs_f64(),
        ),
        bytes(
            "gateway accounting heap per revision (B)",
            small.metrics_bytes,
            large.metrics_bytes,
        ),
        bytes(
            "autoscaler heap per revision, tracked (B)",
            small.tracked_bytes,
            large.tracked_bytes,
        ),
    ];
    for (name, a, b, x, y) in rows {
        println!("{name:<44} {a:>14} {b:>14} {:>8}", ratio(x, y));
    }
    println!("runtime: {:.1} s", started.elapsed().as_secs_f64());
}
