//! The chart lets its gateways share each replica's `concurrency`: each
//! gateway finds the others as the ready endpoints of the headless admin
//! Service (its name, namespace and the pod's own IP reach the gateway),
//! and the NetworkPolicies let gateways reach each other's admin port.
//! Renders the chart with the real `helm` (scripts/chart-tools installs it).

mod chart_support;

use chart_support::{container, env, object, render, s};
use serde_yaml::Value;

/// The `app.kubernetes.io/component` a policy peer selects.
fn component(peer: &Value) -> &str {
    s(
        peer,
        &["podSelector", "matchLabels", "app.kubernetes.io/component"],
    )
}

#[test]
fn gateways_find_each_other_through_their_admin_service() {
    let objects = render(&[]);
    let gateway = container(object(&objects, "Deployment", "flint-gateway"));
    let service = s(env(gateway, "FLINT_PEER_SERVICE").unwrap(), &["value"]);
    let admin = object(&objects, "Service", service);
    assert_eq!(s(admin, &["spec", "clusterIP"]), "None", "headless");
    let ports = admin["spec"]["ports"].as_sequence().unwrap();
    assert!(ports.iter().any(|p| s(p, &["name"]) == "admin"));
    let field = |name: &str| {
        s(
            env(gateway, name).unwrap(),
            &["valueFrom", "fieldRef", "fieldPath"],
        )
        .to_owned()
    };
    assert_eq!(field("FLINT_POD_IP"), "status.podIP");
    assert_eq!(field("FLINT_POD_NAMESPACE"), "metadata.namespace");
    assert!(
        env(gateway, "FLINT_CONTROL_TOKEN").is_some(),
        "asks need the token"
    );
}

#[test]
fn gateways_may_reach_each_others_admin_port() {
    let objects = render(&[]);
    let egress = object(&objects, "NetworkPolicy", "flint-gateway-egress")["spec"]["egress"]
        .as_sequence()
        .unwrap();
    let admin_port = render(&[])
        .iter()
        .find(|o| {
            s(o, &["kind"]) == "Service" && s(o, &["metadata", "name"]) == "flint-gateway-admin"
        })
        .map(|svc| svc["spec"]["ports"][0]["port"].as_u64().unwrap())
        .unwrap();
    let to_gateways = egress.iter().any(|rule| {
        rule["to"]
            .as_sequence()
            .is_some_and(|to| to.iter().any(|peer| component(peer) == "gateway"))
            && rule["ports"]
                .as_sequence()
                .is_some_and(|ps| ps.iter().any(|p| p["port"].as_u64() == Some(admin_port)))
    });
    assert!(to_gateways, "{egress:?}");
}
