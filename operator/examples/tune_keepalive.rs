//! Tuning aid for the learned keep-alive policy: replays a trace's half
//! under learned settings given on the command line and prints one line per
//! setting, so the defaults in `LearnedConfig` can be chosen on one half of
//! the functions and checked on the other (docs/autoscaling.md).
//!
//! cargo run --release -p flint-operator --example tune_keepalive -- \
//!     TRACE a|b|all price=5e-5,7e-5 prior_weight=4 ...

use std::time::Duration;

use flint_operator::autoscaler::DecideConfig;
use flint_operator::autoscaler::keepalive::LearnedConfig;
use flint_operator::sim::{Half, Policy, SimConfig, replay, trace};
use indicatif::ProgressBar;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, half) = match args.as_slice() {
        [path, half, ..] => (path, half.as_str()),
        _ => return Err("usage: tune_keepalive TRACE a|b|all [key=v1,v2 ...]".into()),
    };
    let mut traces = trace::read(std::io::BufReader::new(std::fs::File::open(path)?))?;
    match half {
        "a" => traces.retain(|t| Half::A.contains(&t.id)),
        "b" => traces.retain(|t| Half::B.contains(&t.id)),
        _ => {}
    }
    // Every combination of the listed values.
    let mut configs = vec![LearnedConfig::default()];
    for kv in &args[2..] {
        let (key, values) = kv.split_once('=').ok_or("settings are key=v1,v2")?;
        let values: Vec<f64> = values
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        configs = configs
            .iter()
            .flat_map(|c| {
                values.iter().map(move |&v| {
                    let mut c = *c;
                    match key {
                        "price" => c.price = v,
                        "prior_weight" => c.prior_weight = v,
                        "prior_power" => c.prior_power = v,
                        "prior_timer_share" => c.prior_timer_share = v,
                        "prior_beyond" => c.prior_beyond = v,
                        "prior_requests_per_hour" => c.prior_requests_per_hour = v,
                        "prior_hours" => c.prior_hours = v,
                        "prewarm_lead" => c.prewarm_lead = Duration::from_secs_f64(v),
                        "min_idle" => c.min_idle = Duration::from_secs_f64(v),
                        "rate_exponent" => c.rate_exponent = v,
                        "base_weight" => c.base_weight = v,
                        other => eprintln!("unknown setting {other}"),
                    }
                    c
                })
            })
            .collect();
    }
    let keep = Duration::from_secs(600);
    let policies: Vec<Policy> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut p = Policy::learned(keep, Some(c.price));
            p.name = format!("#{i}");
            p.learned = Some(*c);
            p
        })
        .collect();
    let reports = replay(
        &traces,
        &policies,
        &DecideConfig::default(),
        &SimConfig::default(),
        &ProgressBar::hidden(),
    );
    if std::env::var_os("DETAIL").is_some() {
        // The functions around the 75th percentile under the first setting.
        let cfg = DecideConfig {
            learned: configs[0],
            ..DecideConfig::default()
        };
        let fixed = Policy::fixed(keep);
        let mut rows: Vec<(f64, u64, &str, f64, f64, f64)> = traces
            .iter()
            .map(|t| {
                let s = flint_operator::sim::simulate(
                    t,
                    &policies[0].spec,
                    &cfg,
                    &SimConfig::default(),
                );
                let f = flint_operator::sim::simulate(t, &fixed.spec, &cfg, &SimConfig::default());
                (
                    s.cold_start_pct(),
                    s.requests,
                    t.id.as_str(),
                    s.idle_replica_seconds,
                    f.idle_replica_seconds,
                    f.cold_start_pct(),
                )
            })
            .collect();
        let mut by_idle = rows.clone();
        by_idle.sort_by(|a, b| (b.3 - b.4).total_cmp(&(a.3 - a.4)));
        println!("most idle added over fixed-10m:");
        for r in by_idle.iter().take(8) {
            println!(
                "  {:8.0} vs {:8.0}  cold {:6.2}% vs {:6.2}% of {:6}  {}",
                r.3, r.4, r.0, r.5, r.1, r.2
            );
        }
        println!("most idle saved:");
        for r in by_idle.iter().rev().take(8) {
            println!(
                "  {:8.0} vs {:8.0}  cold {:6.2}% vs {:6.2}% of {:6}  {}",
                r.3, r.4, r.0, r.5, r.1, r.2
            );
        }
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let at = rows.len() * 3 / 4;
        for (i, r) in rows.iter().enumerate().skip(at.saturating_sub(12)).take(24) {
            println!(
                "{i:3} {:6.2}% of {:6} requests  {}  idle {:.0} (fixed {:.0}, {:.2}%)",
                r.0, r.1, r.2, r.3, r.4, r.5
            );
        }
    }
    for (c, r) in configs.iter().zip(&reports) {
        println!(
            "p75 {:6.2}  p50 {:5.2}  all {:.3}  idle {:.3}x  | {c:?}",
            r.cold_start_p75_pct, r.cold_start_p50_pct, r.cold_start_rate_pct, r.idle_vs_fixed_10m
        );
    }
    Ok(())
}
