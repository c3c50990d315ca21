//! The chart's fence around result callbacks: the gateway's egress
//! NetworkPolicy leaves loopback, link-local (cloud metadata), private and
//! the cluster's ranges closed while letting the gateway reach what it
//! needs, and the callback allow-list reaches both the gateway (its
//! environment) and the policy. Renders the chart with the real `helm`.

mod chart_support;

use chart_support::{container, env, find, object, render, s, strings, try_render};
use serde_yaml::Value;

const EGRESS: &str = "flint-gateway-egress";

fn rules(objects: &[Value]) -> &Vec<Value> {
    object(objects, "NetworkPolicy", EGRESS)["spec"]["egress"]
        .as_sequence()
        .unwrap()
}

/// The ipBlocks of every egress rule, as (cidr, except).
fn ip_blocks(objects: &[Value]) -> Vec<(String, Vec<String>)> {
    rules(objects)
        .iter()
        .filter_map(|r| r["to"].as_sequence())
        .flatten()
        .filter_map(|peer| peer.get("ipBlock"))
        .map(|b| (s(b, &["cidr"]).to_owned(), strings(b, "except")))
        .collect()
}

/// Whether some rule opens `port` to any destination.
fn open_port(objects: &[Value], port: u64) -> bool {
    rules(objects).iter().any(|r| {
        r.get("to").is_none()
            && r["ports"]
                .as_sequence()
                .is_some_and(|ps| ps.iter().any(|p| p["port"].as_u64() == Some(port)))
    })
}

#[test]
fn the_gateway_egress_policy_keeps_callbacks_off_internal_ranges() {
    let objects = render(&[]);
    let policy = object(&objects, "NetworkPolicy", EGRESS);
    assert_eq!(strings(&policy["spec"], "policyTypes"), ["Egress"]);
    assert_eq!(
        s(
            policy,
            &[
                "spec",
                "podSelector",
                "matchLabels",
                "app.kubernetes.io/component"
            ]
        ),
        "gateway"
    );
    // Callbacks: the two "anywhere" blocks, with the internal ranges cut out.
    let blocks = ip_blocks(&objects);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let (v4, v4_except) = &blocks[0];
    assert_eq!(v4, "0.0.0.0/0");
    for internal in [
        "127.0.0.0/8",
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/8",
    ] {
        assert!(v4_except.iter().any(|e| e == internal), "{internal}");
    }
    let (v6, v6_except) = &blocks[1];
    assert_eq!(v6, "::/0");
    for internal in ["fc00::/7", "fe80::/10"] {
        assert!(v6_except.iter().any(|e| e == internal), "{internal}");
    }
    // What the gateway itself needs stays reachable.
    assert!(open_port(&objects, 53), "DNS");
    assert!(open_port(&objects, 443) && open_port(&objects, 6443), "API");
    let to_operator = rules(&objects).iter().any(|r| {
        r["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"].as_str()
            == Some("operator")
            && r["ports"][0]["port"].as_u64() == Some(8090)
    });
    assert!(to_operator, "pokes");
    let to_functions = rules(&objects).iter().any(|r| {
        r["to"][0]["podSelector"]["matchExpressions"][0]["key"].as_str()
            == Some("flint.dev/revision")
    });
    assert!(to_functions, "function pods");
    // Without a callback allow-list, the gateway gets none.
    let gateway = container(object(&objects, "Deployment", "flint-gateway"));
    assert!(env(gateway, "FLINT_CALLBACK_ALLOW_CIDRS").is_none());
    assert!(env(gateway, "FLINT_CLUSTER_CIDRS").is_none());
}

#[test]
fn the_callback_allow_list_and_cluster_ranges_reach_the_gateway_and_the_policy() {
    let objects = render(&[
        "--set",
        "events.callbacks.allowCIDRs={10.20.0.0/16,fd00:1::/64}",
        "--set",
        "events.callbacks.clusterCIDRs={30.96.0.0/12,2600:1f00::/24}",
    ]);
    let gateway = container(object(&objects, "Deployment", "flint-gateway"));
    assert_eq!(
        s(
            env(gateway, "FLINT_CALLBACK_ALLOW_CIDRS").unwrap(),
            &["value"]
        ),
        "10.20.0.0/16,fd00:1::/64"
    );
    assert_eq!(
        s(env(gateway, "FLINT_CLUSTER_CIDRS").unwrap(), &["value"]),
        "30.96.0.0/12,2600:1f00::/24"
    );
    let blocks = ip_blocks(&objects);
    let cidrs: Vec<&str> = blocks.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        cidrs,
        ["0.0.0.0/0", "::/0", "10.20.0.0/16", "fd00:1::/64"],
        "the allow-list is opened"
    );
    assert!(blocks[0].1.iter().any(|e| e == "30.96.0.0/12"));
    assert!(blocks[1].1.iter().any(|e| e == "2600:1f00::/24"));
}

#[test]
fn the_egress_policy_can_be_turned_off_and_bad_blocks_are_refused() {
    let off = render(&["--set", "networkPolicy.gatewayEgress.enabled=false"]);
    assert!(find(&off, "NetworkPolicy", EGRESS).is_none());
    assert!(find(&off, "NetworkPolicy", "flint-gateway").is_some());
    let none = render(&["--set", "networkPolicy.enabled=false"]);
    assert!(find(&none, "NetworkPolicy", EGRESS).is_none());
    let err =
        try_render(&["--set", "events.callbacks.allowCIDRs={metadata.internal}"]).unwrap_err();
    assert!(err.contains("allowCIDRs"), "{err}");
    // Extra rules are appended as given.
    let extra = render(&[
        "--set",
        "networkPolicy.gatewayEgress.extraRules[0].ports[0].port=4222",
    ]);
    let last = rules(&extra).last().unwrap();
    assert_eq!(last["ports"][0]["port"].as_u64(), Some(4222));
}
