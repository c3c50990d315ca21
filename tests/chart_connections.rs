//! The gateway's connection bounds in the chart: every `gateway.connections`
//! value reaches its environment variable, the defaults are the gateway's
//! own, trusted proxies are passed as one list the gateway can read, and
//! the schema refuses values that would close every connection or outlast
//! the pod's termination grace period.
//! Renders the chart with the real `helm` (scripts/chart-tools installs it).

mod chart_support;

use chart_support::{container, env, object, render, s, try_render};
use flint_runtime::gateway::{ClientSettings, TrustedProxies};

fn gateway_env(args: &[&str], name: &str) -> Option<String> {
    let objects = render(args);
    let gateway = container(object(&objects, "Deployment", "flint-gateway"));
    env(gateway, name).map(|e| s(e, &["value"]).to_owned())
}

#[test]
fn connection_bounds_default_to_the_gateways_own() {
    let d = ClientSettings::default();
    let secs = |o: Option<std::time::Duration>| o.map_or(0, |d| d.as_secs()).to_string();
    let cases = [
        ("FLINT_MAX_CONNECTIONS", d.max_connections.to_string()),
        (
            "FLINT_FIRST_BYTE_TIMEOUT_SECONDS",
            d.first_byte_timeout.as_secs().to_string(),
        ),
        (
            "FLINT_IDLE_TIMEOUT_SECONDS",
            d.idle_timeout.as_secs().to_string(),
        ),
        (
            "FLINT_HTTP2_KEEP_ALIVE_SECONDS",
            secs(d.http2_keep_alive_interval),
        ),
        (
            "FLINT_HTTP2_KEEP_ALIVE_TIMEOUT_SECONDS",
            d.http2_keep_alive_timeout.as_secs().to_string(),
        ),
        ("FLINT_TCP_KEEPALIVE_SECONDS", secs(d.tcp_keepalive)),
        (
            "FLINT_IO_TIMEOUT_SECONDS",
            d.io_timeout.as_secs().to_string(),
        ),
        (
            "FLINT_MIN_BODY_BYTES_PER_SECOND",
            d.min_body_rate
                .map_or(0, |r| r.bytes_per_second)
                .to_string(),
        ),
        (
            "FLINT_MIN_BODY_RATE_GRACE_SECONDS",
            d.min_body_rate.map_or(0, |r| r.grace.as_secs()).to_string(),
        ),
        (
            "FLINT_UPGRADE_IDLE_TIMEOUT_SECONDS",
            d.upgrade_idle_timeout.as_secs().to_string(),
        ),
        (
            "FLINT_UPGRADE_DRAIN_SECONDS",
            d.upgrade_drain_timeout.as_secs().to_string(),
        ),
    ];
    for (name, want) in cases {
        assert_eq!(
            gateway_env(&[], name).as_deref(),
            Some(want.as_str()),
            "{name}"
        );
    }
    // No trusted proxy by default: the variable is not set at all.
    assert_eq!(gateway_env(&[], "FLINT_TRUSTED_PROXIES"), None);
}

#[test]
fn connection_values_reach_the_gateway() {
    let cases = [
        ("gateway.connections.max=50", "FLINT_MAX_CONNECTIONS", "50"),
        (
            "gateway.connections.ioTimeoutSeconds=7",
            "FLINT_IO_TIMEOUT_SECONDS",
            "7",
        ),
        (
            "gateway.connections.minBodyBytesPerSecond=0",
            "FLINT_MIN_BODY_BYTES_PER_SECOND",
            "0",
        ),
        (
            "gateway.connections.http2KeepAliveSeconds=0",
            "FLINT_HTTP2_KEEP_ALIVE_SECONDS",
            "0",
        ),
        (
            "gateway.connections.upgradeDrainSeconds=12",
            "FLINT_UPGRADE_DRAIN_SECONDS",
            "12",
        ),
    ];
    for (set, name, want) in cases {
        assert_eq!(
            gateway_env(&["--set", set], name).as_deref(),
            Some(want),
            "{set}"
        );
    }
    let trusted = gateway_env(
        &[
            "--set",
            "gateway.trustedProxies={10.0.0.0/8,fd00::/8,192.168.1.7}",
        ],
        "FLINT_TRUSTED_PROXIES",
    )
    .unwrap();
    let list: TrustedProxies = trusted.parse().unwrap();
    assert!(list.contains("10.1.2.3".parse().unwrap()));
    assert!(list.contains("fd00::1".parse().unwrap()));
    assert!(list.contains("192.168.1.7".parse().unwrap()));
    assert!(!list.contains("192.168.1.8".parse().unwrap()));
}

#[test]
fn the_schema_refuses_bounds_that_cannot_work() {
    for set in [
        "gateway.connections.max=0",
        "gateway.connections.firstByteTimeoutSeconds=0",
        "gateway.connections.ioTimeoutSeconds=0",
        // Longer than the termination grace period less the preStop pause.
        "gateway.connections.upgradeDrainSeconds=90",
        "gateway.trustedProxies={not-an-address}",
        "gateway.connections.typo=1",
    ] {
        assert!(try_render(&["--set", set]).is_err(), "{set} was accepted");
    }
}
