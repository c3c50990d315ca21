//! The chart's security defaults and bounds, on the rendered objects: the
//! NetworkPolicies are on by default and fence the poke and admin ports, the
//! pokes are counted against the gateway's queue, the public Service carries
//! function traffic only, and the gateway's memory limit holds its memory
//! budget with headroom.
//! Renders the chart with the real `helm` (scripts/chart-tools installs it).

mod chart_support;

use chart_support::{container, env, find, object, render, s, try_render};
use serde_yaml::Value;

/// The ingress rules of NetworkPolicy `name` that open `port`.
fn rules_for<'a>(objects: &'a [Value], name: &str, port: &str) -> Vec<&'a Value> {
    object(objects, "NetworkPolicy", name)["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| {
            r["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| s(p, &["port"]) == port)
        })
        .collect()
}

/// The `app.kubernetes.io/component` a peer's podSelector names.
fn peer_component(peer: &Value) -> &str {
    s(
        peer,
        &["podSelector", "matchLabels", "app.kubernetes.io/component"],
    )
}

#[test]
fn network_policies_are_on_by_default_and_only_the_gateway_may_poke() {
    let objects = render(&[]);
    let pokes = rules_for(&objects, "flint-operator", "poke");
    assert_eq!(pokes.len(), 1, "{pokes:?}");
    let from = pokes[0]["from"].as_sequence().unwrap();
    assert_eq!(from.len(), 1, "{from:?}");
    assert_eq!(peer_component(&from[0]), "gateway");
    assert!(from[0].get("namespaceSelector").is_none());
    // The gateway's admin port (metrics, drains, capacity asks): the
    // operator and the other gateways only.
    let admin = rules_for(&objects, "flint-gateway", "admin");
    assert_eq!(admin.len(), 1);
    let from = admin[0]["from"].as_sequence().unwrap();
    assert_eq!(
        from.iter().map(peer_component).collect::<Vec<_>>(),
        ["operator", "gateway"]
    );
    // Turned off, none is rendered.
    let off = render(&["--set", "networkPolicy.enabled=false"]);
    assert!(!off.iter().any(|o| s(o, &["kind"]) == "NetworkPolicy"));
}

#[test]
fn both_components_hold_the_control_token_and_the_operator_knows_the_queue_size() {
    for (args, queue) in [
        (vec![], "1000"),
        (vec!["--set", "gateway.queueSize=37"], "37"),
    ] {
        let objects = render(&args);
        let operator = container(object(&objects, "Deployment", "flint-operator"));
        let gateway = container(object(&objects, "Deployment", "flint-gateway"));
        for c in [operator, gateway] {
            let token = env(c, "FLINT_CONTROL_TOKEN").expect("FLINT_CONTROL_TOKEN");
            assert_eq!(
                s(token, &["valueFrom", "secretKeyRef", "name"]),
                "flint-control"
            );
            assert!(token.get("value").is_none(), "never a literal value");
        }
        assert_eq!(
            s(env(gateway, "FLINT_QUEUE_SIZE").unwrap(), &["value"]),
            queue
        );
        assert_eq!(
            s(
                env(operator, "FLINT_GATEWAY_QUEUE_SIZE").unwrap(),
                &["value"]
            ),
            queue
        );
    }
    object(&render(&[]), "Secret", "flint-control");
}

#[test]
fn a_prometheus_source_fenced_off_by_the_policies_is_refused() {
    let args = [
        "--set",
        "autoscaler.metricsSource=prometheus",
        "--set",
        "autoscaler.prometheusUrl=http://prometheus:9090",
    ];
    let err = try_render(&args).unwrap_err();
    assert!(err.contains("networkPolicy.metricsScrapers"), "{err}");
    let mut with_scraper = args.to_vec();
    with_scraper.extend([
        "--set",
        "networkPolicy.metricsScrapers[0].podSelector.matchLabels.app=prometheus",
    ]);
    let objects = render(&with_scraper);
    let admin = rules_for(&objects, "flint-gateway", "admin");
    // The operator, the other gateways, and the scraper.
    assert_eq!(admin[0]["from"].as_sequence().unwrap().len(), 3);
}

#[test]
fn the_public_gateway_service_carries_function_traffic_only() {
    for service_type in ["ClusterIP", "NodePort", "LoadBalancer"] {
        let objects = render(&["--set", &format!("gateway.service.type={service_type}")]);
        let public = object(&objects, "Service", "flint-gateway");
        let ports = public["spec"]["ports"].as_sequence().unwrap();
        let targets: Vec<&str> = ports.iter().map(|p| s(p, &["targetPort"])).collect();
        assert_eq!(targets, ["http", "https"], "{ports:?}");
        // Cluster-local Functions have a Service of their own, inside the
        // cluster only.
        let internal = object(&objects, "Service", "flint-gateway-internal");
        assert_eq!(s(internal, &["spec", "type"]), "ClusterIP");
        let ports = internal["spec"]["ports"].as_sequence().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(s(&ports[0], &["targetPort"]), "internal");
        // The admin port has its own Service, inside the cluster only.
        let admin = object(&objects, "Service", "flint-gateway-admin");
        assert_eq!(s(admin, &["spec", "type"]), "ClusterIP");
        assert_eq!(s(admin, &["spec", "clusterIP"]), "None");
        let ports = admin["spec"]["ports"].as_sequence().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(s(&ports[0], &["targetPort"]), "admin");
        // No other Service selects the gateway pods.
        let selecting_gateway = objects
            .iter()
            .filter(|o| {
                s(o, &["kind"]) == "Service"
                    && s(o, &["spec", "selector", "app.kubernetes.io/component"]) == "gateway"
            })
            .count();
        assert_eq!(selecting_gateway, 3);
    }
    // Without TLS the public Service has the http port only.
    let objects = render(&["--set", "gateway.tls.enabled=false"]);
    let public = object(&objects, "Service", "flint-gateway");
    assert_eq!(public["spec"]["ports"].as_sequence().unwrap().len(), 1);
    // The gateway listens for each on its own port.
    let objects = render(&[]);
    let gateway = container(object(&objects, "Deployment", "flint-gateway"));
    let listen = s(env(gateway, "FLINT_LISTEN").unwrap(), &["value"]);
    let admin = s(env(gateway, "FLINT_ADMIN_ADDR").unwrap(), &["value"]);
    assert!(
        listen.ends_with(":8080") && admin.ends_with(":9090"),
        "{listen} {admin}"
    );
    assert!(find(&objects, "Ingress", "flint-gateway").is_none());
}

/// Bytes of a memory quantity as the chart's defaults write them.
fn bytes(quantity: &str) -> u64 {
    let units = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    units
        .iter()
        .find_map(|(suffix, unit)| {
            quantity
                .strip_suffix(suffix)
                .map(|n| n.parse::<u64>().unwrap() * unit)
        })
        .unwrap_or_else(|| quantity.parse().unwrap())
}

/// What the gateway needs beside its memory budget and its connections'
/// buffers, as the chart and the gateway both say (docs/gateway.md,
/// "Memory bounds").
const HEADROOM: u64 = 32 << 20;

#[test]
fn the_default_gateway_memory_limit_holds_its_budget_buffers_and_headroom() {
    let objects = render(&[]);
    let gateway = container(object(&objects, "Deployment", "flint-gateway"));
    let number =
        |name: &str| -> u64 { s(env(gateway, name).unwrap(), &["value"]).parse().unwrap() };
    let limit = bytes(s(gateway, &["resources", "limits", "memory"]));
    let budget = number("FLINT_MEMORY_BUDGET_BYTES");
    // The chart's default is the gateway's, and so is the headroom.
    assert_eq!(
        budget,
        flint_runtime::budget::DEFAULT_MEMORY_BUDGET_BYTES as u64
    );
    assert_eq!(HEADROOM, flint_runtime::budget::HEADROOM_BYTES as u64);
    // Every connection the gateway accepts, with its read buffer full.
    let buffers = number("FLINT_MAX_CONNECTIONS") * number("FLINT_MAX_BUFFERED_BYTES");
    assert_eq!(
        number("FLINT_MAX_CONNECTIONS"),
        flint_runtime::gateway::ClientSettings::default().max_connections as u64
    );
    assert!(
        budget + buffers + HEADROOM <= limit,
        "limit {limit} does not hold the budget {budget}, {buffers} of connection buffers and {HEADROOM} of headroom"
    );
    // The budget bounds every queue together: one revision's full queue of
    // the largest heads fits in it, with room to spare for the others.
    let one_queue = number("FLINT_QUEUE_SIZE") * number("FLINT_MAX_BUFFERED_BYTES");
    assert!(one_queue < budget, "{one_queue} >= {budget}");
}

#[test]
fn a_gateway_memory_limit_below_its_budget_is_refused() {
    let refused = |args: &[&str]| {
        let err = try_render(args).unwrap_err();
        assert!(err.contains("is below what the gateway may hold"), "{err}");
    };
    refused(&["--set", "gateway.resources.limits.memory=100Mi"]);
    // One byte more budget than the default limit holds with the default
    // connections' buffers and the headroom.
    refused(&["--set", "gateway.memoryBudgetBytes=103809025"]);
    // More connections, or larger buffers, than the default limit holds.
    refused(&["--set", "gateway.connections.max=4000"]);
    refused(&["--set", "gateway.maxBufferedBytes=131072"]);
    refused(&[
        "--set",
        "gateway.memoryBudgetBytes=268435456",
        "--set",
        "gateway.resources.limits.memory=0.3Gi",
    ]);
    let fits = |args: &[&str]| try_render(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    fits(&[
        "--set",
        "gateway.memoryBudgetBytes=268435456",
        "--set",
        "gateway.resources.limits.memory=448Mi",
    ]);
    fits(&[
        "--set",
        "gateway.connections.max=10000",
        "--set",
        "gateway.resources.limits.memory=768Mi",
    ]);
    // Exactly at the default limit: 96Mi + 2000 × 64Ki + 32Mi = 253Mi; the
    // largest budget that still fits it.
    fits(&["--set", "gateway.memoryBudgetBytes=103809024"]);
    // Larger queues need no larger limit: the budget bounds them all.
    fits(&["--set", "gateway.queueSize=4000"]);
    // No limit, nothing to exceed.
    fits(&[
        "--set",
        "gateway.memoryBudgetBytes=1073741824",
        "--set",
        "gateway.resources.limits=null",
    ]);
    let err = try_render(&["--set", "gateway.resources.limits.memory=12x"]).unwrap_err();
    assert!(err.contains("not a memory quantity"), "{err}");
    let err = try_render(&["--set", "gateway.memoryBudgetBytes=1048576"]).unwrap_err();
    assert!(err.contains("/gateway/memoryBudgetBytes"), "{err}");
}

#[test]
fn a_memory_budget_reaches_the_gateway_as_a_whole_number() {
    let objects = render(&[
        "--set",
        "gateway.memoryBudgetBytes=1073741824",
        "--set",
        "gateway.resources.limits.memory=2Gi",
    ]);
    let gateway = container(object(&objects, "Deployment", "flint-gateway"));
    assert_eq!(
        s(
            env(gateway, "FLINT_MEMORY_BUDGET_BYTES").unwrap(),
            &["value"]
        ),
        "1073741824"
    );
}

#[test]
fn a_deployed_nats_server_has_a_disruption_budget() {
    let objects = render(&[
        "--set",
        "events.nats.deploy=true",
        "--set",
        "events.nats.persistence.enabled=false",
    ]);
    let pdb = object(&objects, "PodDisruptionBudget", "flint-nats");
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(1));
    assert_eq!(
        s(pdb, &["spec", "unhealthyPodEvictionPolicy"]),
        "AlwaysAllow"
    );
    // It selects the NATS server's pods, and nothing else of the release.
    let selector = pdb["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    let nats = object(&objects, "StatefulSet", "flint-nats");
    let pod_labels = nats["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .unwrap();
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(pod_labels.get(k), Some(v), "{k:?}");
    }
    for name in ["flint-gateway", "flint-operator"] {
        let labels = object(&objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
            .as_mapping()
            .unwrap();
        assert!(
            selector.iter().any(|(k, v)| labels.get(k) != Some(v)),
            "{name}"
        );
    }
    // No NATS in the release, no budget for it.
    for args in [
        vec![],
        vec!["--set", "events.nats.url=nats://nats.nats-system:4222"],
        vec![
            "--set",
            "events.nats.deploy=true",
            "--set",
            "events.nats.podDisruptionBudget.enabled=false",
        ],
    ] {
        assert!(find(&render(&args), "PodDisruptionBudget", "flint-nats").is_none());
    }
}
