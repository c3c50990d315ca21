//! The gateway set on a cluster: the ready endpoints of the gateways' own
//! headless admin Service, watched through its EndpointSlices (the gateway
//! already lists and watches EndpointSlices), and handed to the gateway on
//! every change ([`Gateway::set_peers`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use futures::TryStreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::gateway::{Gateway, PeerGateways};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The name of the admin port in the gateways' Service.
const ADMIN_PORT_NAME: &str = "admin";

/// The ready gateways' admin addresses in one slice: ready (or unset) and
/// not terminating endpoints, on the slice's `admin` port (else `port`).
pub fn ready_gateways(slice: &EndpointSlice, port: u16) -> Vec<SocketAddr> {
    let port = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(port);
    slice
        .endpoints
        .iter()
        .filter(|e| {
            let c = e.conditions.as_ref();
            c.and_then(|c| c.ready).unwrap_or(true)
                && !c.and_then(|c| c.terminating).unwrap_or(false)
        })
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// Follows the gateway set `gateway.config().peers` names, forever: a
/// fixed set is given once; a Service's ready endpoints on every change
/// (the watcher relists and backs off after errors; a gateway that may not
/// watch them, e.g. for lack of RBAC in that namespace, logs it and shares
/// nothing, as if alone).
pub async fn follow(client: Client, gateway: Gateway) {
    match gateway.config().peers.clone() {
        PeerGateways::Alone => std::future::pending().await,
        PeerGateways::Fixed { me, all } => {
            gateway.set_peers(me, all);
            std::future::pending().await
        }
        PeerGateways::Service {
            namespace,
            name,
            me,
        } => watch_service(client, &namespace, &name, me, gateway).await,
    }
}

async fn watch_service(
    client: Client,
    namespace: &str,
    name: &str,
    me: SocketAddr,
    gateway: Gateway,
) {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={name}"));
    let mut events = Box::pin(watcher(api, config).default_backoff());
    let mut slices: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    let mut relist: Option<BTreeMap<String, Vec<SocketAddr>>> = None;
    loop {
        let event = match events.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => {
                tracing::warn!(%namespace, service = %name, "the gateway peer watch ended; the gateway set stays as it was");
                gateway.peers_unavailable();
                return std::future::pending().await;
            }
            Err(error) => {
                tracing::warn!(%namespace, service = %name, %error, "gateway peer watch error; retrying");
                // Not knowing the set must not keep the gateway unready.
                gateway.peers_unavailable();
                continue;
            }
        };
        let changed = match event {
            watcher::Event::Init => {
                relist = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(slice) => {
                if let Some(r) = relist.as_mut() {
                    r.insert(slice.name_any(), ready_gateways(&slice, me.port()));
                }
                false
            }
            watcher::Event::InitDone => {
                slices = relist.take().unwrap_or_default();
                true
            }
            watcher::Event::Apply(slice) => {
                slices.insert(slice.name_any(), ready_gateways(&slice, me.port()));
                true
            }
            watcher::Event::Delete(slice) => slices.remove(&slice.name_any()).is_some(),
        };
        if changed {
            let ready: Vec<SocketAddr> = slices.values().flatten().copied().collect();
            tracing::debug!(gateways = ready.len(), "gateway set from the admin Service");
            gateway.set_peers(me, ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_gateways_on_the_admin_port_count() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gw-admin-abc"},
            "addressType": "IPv4",
            "ports": [{"name": "admin", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true, "terminating": true}},
                {"addresses": ["10.0.0.4"]},
                {"addresses": ["not-an-ip"]}
            ]
        }))
        .unwrap();
        let got = ready_gateways(&slice, 1);
        let want: Vec<SocketAddr> = vec![
            "10.0.0.1:9090".parse().unwrap(),
            "10.0.0.4:9090".parse().unwrap(),
        ];
        assert_eq!(got, want);
        let no_ports = EndpointSlice {
            ports: None,
            ..slice
        };
        assert_eq!(ready_gateways(&no_ports, 7)[0].port(), 7);
    }
}
