//! The routing table at scale: the cost of changing one Function through
//! the gateway's API (`upsert_route`, `remove_route`, and `set_routes`
//! with one Function changed in the whole list) with 1,000 and 10,000
//! Functions routed, and the cost of a lookup (`RouteTable::route`) with
//! 1, 1,000 and 10,000. Prints each figure, then the 10k/1k ratio.
//!
//! It also prints the gateway's heap at rest per Function (a counting
//! allocator, `counting.rs`).
//!
//! `cargo bench -p flint-runtime --bench routing` (release build; about a
//! minute once built). `FLINT_BENCH_CHANGES` sets the changes timed per
//! figure (default 300), `FLINT_BENCH_LOOKUPS` the lookups (1,000,000).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flint_api::backend::{FunctionAccess, FunctionRoute, PokeSink, RevisionRoute};
use flint_api::poke::ScalePoke;
use flint_api::{Protocol, TrafficStatus};
use flint_runtime::gateway::{Gateway, GatewayConfig};

#[path = "counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

struct NoPoke;
impl PokeSink for NoPoke {
    fn poke(&self, _: ScalePoke) {}
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Function `ns-<i % 20>/fn-<i>`, `revision` its latest of two; every
/// tenth has a tag on the previous revision, every fiftieth a custom
/// domain (contested by its neighbour, so domains change hands).
fn route(i: usize, revision: u32) -> FunctionRoute {
    let (ns, name) = (format!("ns-{}", i % 20), format!("fn-{i}"));
    let rev = |n: u32| RevisionRoute {
        name: format!("{name}-{n:05}"),
        concurrency: 0,
        timeout_seconds: 300,
        protocol: Protocol::Http1,
        failure: None,
        probe_starting: false,
    };
    let target = |n: u32, percent: u32, tag: Option<&str>| TrafficStatus {
        revision_name: format!("{name}-{n:05}"),
        percent,
        latest_revision: tag.is_none(),
        tag: tag.map(Into::into),
        url: None,
    };
    let mut traffic = vec![target(revision, 100, None)];
    if i.is_multiple_of(10) {
        traffic.push(target(revision - 1, 0, Some("previous")));
    }
    let domains = if i % 50 <= 1 {
        vec![format!("d{}.example.org", i / 50)]
    } else {
        Vec::new()
    };
    let revisions = vec![rev(revision - 1), rev(revision)];
    FunctionRoute {
        namespace: ns,
        name,
        revisions,
        traffic,
        access: FunctionAccess {
            domains,
            created: Some(format!("2026-01-01T00:00:{:02}.{i:09}Z", i % 60)),
            ..FunctionAccess::default()
        },
    }
}

fn routes(n: usize) -> Vec<FunctionRoute> {
    (0..n).map(|i| route(i, 2)).collect()
}

fn gateway(n: usize) -> Result<Gateway, Box<dyn std::error::Error>> {
    let gw = Gateway::new(GatewayConfig::dev(), Arc::new(NoPoke))?;
    gw.set_routes(routes(n));
    Ok(gw)
}

/// p50 and p99 of `samples`.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
        samples.get(i).copied().unwrap_or_default()
    };
    (at(0.5), at(0.99))
}

/// Times `changes` runs of `f(k)`.
fn time(changes: usize, mut f: impl FnMut(usize)) -> (Duration, Duration) {
    let samples = (0..changes)
        .map(|k| {
            let t = Instant::now();
            f(k);
            t.elapsed()
        })
        .collect();
    percentiles(samples)
}

/// One figure: what was timed, its p50 and its p99 in µs.
type Figure = (&'static str, f64, f64);

/// Figures for a gateway with `n` Functions.
fn changes(n: usize, count: usize) -> Result<Vec<Figure>, Box<dyn std::error::Error>> {
    let gw = gateway(n)?;
    let us = |(p50, p99): (Duration, Duration)| (p50.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6);
    let mut out = Vec::new();
    // A new Function each time, then the same ones removed.
    let (p50, p99) = us(time(count, |k| gw.upsert_route(route(n + k, 2))));
    out.push(("upsert (add) one", p50, p99));
    let (p50, p99) = us(time(count, |k| {
        let r = route(n + k, 2);
        gw.remove_route(&r.namespace, &r.name);
    }));
    out.push(("remove one", p50, p99));
    // A new revision of an existing Function (some with tags and domains).
    let (p50, p99) = us(time(count, |k| {
        gw.upsert_route(route((k * 7) % n, 3 + k as u32))
    }));
    out.push(("upsert (change) one", p50, p99));
    // The owner of a contested domain leaves and comes back.
    let (p50, p99) = us(time(count, |k| {
        let i = ((k / 2) * 50) % n;
        if k % 2 == 0 {
            let r = route(i, 2);
            gw.remove_route(&r.namespace, &r.name);
        } else {
            gw.upsert_route(route(i, 2));
        }
    }));
    out.push(("domain owner leaves/returns", p50, p99));
    // The whole list, one Function changed: the diff costs O(n). The
    // list is made before the clock starts, as its owner has it.
    let mut list = routes(n);
    let mut samples = Vec::new();
    for k in 0..count.min(50) {
        let i = (k * 13) % n;
        if let Some(slot) = list.get_mut(i) {
            *slot = route(i, 10 + k as u32);
        }
        let given = list.clone();
        let t = Instant::now();
        gw.set_routes(given);
        samples.push(t.elapsed());
    }
    let (p50, p99) = us(percentiles(samples));
    out.push(("set_routes, one changed", p50, p99));
    Ok(out)
}

/// ns per `route()` lookup with `n` Functions, over hosts that hit (own
/// and tag hosts, custom domains and the path form).
fn lookup(n: usize, lookups: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let gw = gateway(n)?;
    let table = gw.table();
    let domain = &gw.config().domain;
    let mut hosts: Vec<(String, &str)> = (0..n.min(4096))
        .map(|i| (format!("fn-{i}.ns-{}.{domain}", i % 20), "/"))
        .collect();
    hosts.push((format!("previous-fn-0.ns-0.{domain}"), "/"));
    if n > 50 {
        hosts.push(("d0.example.org".into(), "/x"));
    }
    hosts.push(("127.0.0.1:8080".into(), "/function/ns-0/fn-0/a"));
    let t = Instant::now();
    let mut found = 0usize;
    for k in 0..lookups {
        let (host, path) = &hosts[k % hosts.len()];
        found += usize::from(table.route(black_box(host), black_box(path)).is_some());
    }
    let took = t.elapsed();
    if found != lookups {
        return Err(format!("{} of {lookups} lookups missed", lookups - found).into());
    }
    Ok(took.as_secs_f64() * 1e9 / lookups as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let count = env_or("FLINT_BENCH_CHANGES", 300);
    let lookups = env_or("FLINT_BENCH_LOOKUPS", 1_000_000);
    let started = Instant::now();
    println!("routing table: {count} changes per figure, {lookups} lookups per size");
    let sizes = [1_000, 10_000];
    let mut by_size = Vec::new();
    for n in sizes {
        let before = counting::live();
        let built = Instant::now();
        let gw = gateway(n)?;
        println!(
            "n={n}: first set_routes (whole table) {:.1} ms",
            built.elapsed().as_secs_f64() * 1e3
        );
        // Two revisions a Function: the table, gate, revision states and
        // their metrics.
        let held = counting::live().saturating_sub(before);
        println!(
            "n={n}: gateway heap at rest {:.1} MiB, {} bytes a Function ({} a revision)",
            held as f64 / 1048576.0,
            held / n,
            held / (2 * n)
        );
        drop(gw);
        let figures = changes(n, count)?;
        for (name, p50, p99) in &figures {
            println!("n={n}: {name}: p50 {p50:.1} µs, p99 {p99:.1} µs");
        }
        by_size.push(figures);
    }
    if let [small, large] = by_size.as_slice() {
        for ((name, p50a, p99a), (_, p50b, p99b)) in small.iter().zip(large) {
            println!(
                "10k/1k {name}: p50 {:.2}×, p99 {:.2}×",
                p50b / p50a,
                p99b / p99a
            );
        }
    }
    let mut ns = Vec::new();
    for n in [1, 1_000, 10_000] {
        let per = lookup(n, lookups)?;
        println!("route() with {n} Functions: {per:.1} ns/lookup");
        ns.push(per);
    }
    if let [one, k1, k10] = ns.as_slice() {
        println!("route() 10k/1k: {:.2}×, 10k/1: {:.2}×", k10 / k1, k10 / one);
    }
    println!("took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
