//! What `flint dev` prints: one line per thing a person wants to know
//! (URLs, scale events, cold starts, crashes, reloads, bad manifests).

use std::net::SocketAddr;
use std::path::Path;

use flint_runtime::gateway::GatewayConfig;
use flint_runtime::local::BackendEvent;

use super::loader::Loaded;

/// The first lines: where Flint listens.
pub fn banner(gateway_url: &str, admin: SocketAddr, dir: &Path) {
    println!("flint dev: serving the functions under {}", dir.display());
    println!("  gateway  {gateway_url}");
    println!("  status   http://{admin}/   (or: flint dev --status)");
    println!("  metrics  http://{admin}/metrics");
}

/// Each function's URLs.
pub fn urls(functions: &[Loaded], gateway_url: &str, config: &GatewayConfig) {
    if functions.is_empty() {
        println!("no Function manifests found yet; add one and it is picked up");
        return;
    }
    println!();
    for l in functions {
        let ns = l
            .function
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default");
        let name = l.function.metadata.name.as_deref().unwrap_or_default();
        let host = flint_api::names::function_host(name, ns, &config.domain);
        let spec = &l.function.spec;
        let local = spec.visibility == Some(flint_api::function::Visibility::ClusterLocal);
        if spec.tls.is_some() {
            println!("  {name:<20} https://{host}:{}/", config.access.https_port);
        }
        if local {
            println!("  {name:<20} cluster-local: on the in-cluster port only");
        } else {
            println!("  {name:<20} http://{host}:{}/", config.listen.port());
            println!("  {:<20} {gateway_url}/function/{ns}/{name}/", "");
        }
        for domain in &spec.domains {
            println!("  {:<20} domain {domain}", "");
        }
    }
    println!();
}

/// A manifest problem.
pub fn error(message: &str) {
    println!("error    {message}");
}

/// A state change (revision created, traffic moved).
pub fn note(message: &str) {
    println!("note     {message}");
}

/// A backend event.
pub fn event(event: &BackendEvent) {
    match event {
        BackendEvent::Scaled { revision, from, to } => {
            let zero = if *to == 0 { "  (scaled to zero)" } else { "" };
            println!("scale    {revision}  {from} -> {to}{zero}");
        }
        BackendEvent::ReplicaReady {
            revision,
            replica,
            startup,
            cold,
            ..
        } => {
            let ms = startup.as_secs_f64() * 1000.0;
            if *cold {
                println!("cold     {revision}  replica {replica} ready in {ms:.1} ms (cold start)");
            } else {
                println!("ready    {revision}  replica {replica} ready in {ms:.1} ms");
            }
        }
        BackendEvent::ReplicaExited {
            revision,
            replica,
            crashed: true,
            reason,
        } => {
            println!("crash    {revision}  replica {replica}: {reason}; restarting");
        }
        BackendEvent::ReplicaExited {
            revision,
            replica,
            crashed: false,
            ..
        } => {
            println!("stop     {revision}  replica {replica} stopped");
        }
        BackendEvent::RevisionFailed { revision, message } => {
            println!(
                "failed   {revision}  cannot start: {message}; requests get 503 until it recovers or the manifest is fixed"
            );
        }
        BackendEvent::RevisionRecovered { revision } => {
            println!("recover  {revision}  a replica started after all")
        }
        BackendEvent::ReplicaReadiness {
            revision,
            replica,
            ready: false,
            reason,
        } => {
            println!("unready  {revision}  replica {replica}: {reason}; out of rotation");
        }
        BackendEvent::ReplicaReadiness {
            revision,
            replica,
            ready: true,
            ..
        } => {
            println!("ready    {revision}  replica {replica} passes its readiness probe again");
        }
    }
}

/// Says which custom domains are not routed where their manifest asks:
/// claimed first by another Function, or under the platform domain.
pub fn domain_conflicts(routes: &[flint_api::backend::FunctionRoute], domain: &str) {
    let claimants: Vec<flint_api::domains::Claimant<'_>> = routes
        .iter()
        .filter(|r| !r.access.domains.is_empty())
        .map(|r| flint_api::domains::Claimant {
            function: flint_api::backend::FunctionKey::new(&r.namespace, &r.name),
            created: r.access.created.as_deref(),
            domains: &r.access.domains,
        })
        .collect();
    let (_, conflicts) = flint_api::domains::claims(&claimants, domain);
    for conflict in conflicts {
        println!(
            "warning  {}: {conflict}; not routed there",
            conflict.function
        );
    }
}
