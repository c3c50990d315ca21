//! `decide()` cost per revision per decision, on the default spec with a full
//! 60-second window, in steady state and in panic (target: ≤ 2 µs).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use flint_api::{KeepAlive, ScaleSpec};
use flint_operator::autoscaler::keepalive::IdleHistogram;
use flint_operator::autoscaler::{DecideConfig, Observation, Sample, ScaleState, Window, decide};

fn window(concurrency: f64, end: u64) -> Window {
    let mut w = Window::new(Duration::from_secs(60));
    for t in end - 60..=end {
        w.push(Sample {
            at: Duration::from_secs(t),
            concurrency,
            rps: concurrency * 10.0,
        });
    }
    w
}

fn bench(c: &mut Criterion) {
    let cfg = DecideConfig::default();
    for (name, keep_alive, load, ready) in [
        ("decide/steady", KeepAlive::Fixed, 700.0, 10),
        ("decide/panic", KeepAlive::Fixed, 7000.0, 10),
        ("decide/adaptive_idle", KeepAlive::Adaptive, 0.0, 1),
        ("decide/learned_idle", KeepAlive::Learned, 0.0, 1),
    ] {
        let spec = ScaleSpec {
            keep_alive,
            ..ScaleSpec::default()
        };
        let now = Duration::from_secs(1000);
        let w = window(load, 1000);
        let mut state = ScaleState::new(&spec, Duration::ZERO);
        if keep_alive == KeepAlive::Learned {
            // A learned revision carries its histogram (cloned with the state).
            let learned = &cfg.learned;
            let grace = spec.scale_to_zero_grace_period.as_std();
            let mut h = IdleHistogram::learned(grace, learned);
            for m in [3u64, 9, 59, 59, 60, 120] {
                h.record_learned(Duration::from_secs(m * 60), 2, grace, learned);
            }
            state.idle = Some(Box::new(h));
            state.last_active = Some(Duration::from_secs(400));
            state.last_active_observed = true;
        }
        let obs = Observation {
            ready,
            ..Observation::default()
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                decide(
                    black_box(&spec),
                    &cfg,
                    black_box(&w),
                    obs,
                    now,
                    black_box(state.clone()),
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
