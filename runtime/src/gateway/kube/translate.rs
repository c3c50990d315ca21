//! Pure translation of cluster objects into what the gateway routes on:
//! a Function's status and spec into a [`FunctionRoute`], a revision's
//! EndpointSlices into its [`Endpoint`]s.

use std::net::{IpAddr, SocketAddr};

use flint_api::Function;
use flint_api::backend::{Endpoint, FunctionAccess, FunctionRoute, RevisionKey, RevisionRoute};
use flint_api::names::{LABEL_FUNCTION, LABEL_REVISION};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Name of the app's port on a revision's Service and EndpointSlices.
pub const PORT_NAME: &str = "http";

/// The route of a Function, from its resolved `status.traffic`. Each
/// revision is routed with the concurrency, timeout and protocol it was
/// created with, as its `status.revisions[]` entry reports them: its pods
/// were built for those, and a spec change makes a new revision rather than
/// changing an old one. A setting the entry lacks (a status written before
/// they were recorded, or no entry yet) falls back to the Function's current
/// spec. A revision whose status says it is not ready with a reason carries
/// that reason as its failure. `None` when the Function has no namespace or
/// name.
pub fn function_route(function: &Function) -> Option<FunctionRoute> {
    let namespace = function.metadata.namespace.clone()?;
    let name = function.metadata.name.clone()?;
    let spec = &function.spec;
    let status = function.status.as_ref();
    let traffic = status.map(|s| s.traffic.clone()).unwrap_or_default();
    let mut revisions: Vec<RevisionRoute> = Vec::new();
    for target in &traffic {
        if revisions.iter().any(|r| r.name == target.revision_name) {
            continue;
        }
        let own = status.and_then(|s| s.revisions.iter().find(|r| r.name == target.revision_name));
        let failure = own
            .filter(|r| !r.ready)
            .and_then(|r| match (&r.reason, &r.message) {
                (Some(reason), Some(message)) => Some(format!("{reason}: {message}")),
                (Some(reason), None) => Some(reason.clone()),
                (None, Some(message)) => Some(message.clone()),
                (None, None) => None,
            });
        revisions.push(RevisionRoute {
            name: target.revision_name.clone(),
            concurrency: own.and_then(|r| r.concurrency).unwrap_or(spec.concurrency),
            timeout_seconds: own
                .and_then(|r| r.timeout_seconds)
                .unwrap_or(spec.timeout_seconds),
            protocol: own.and_then(|r| r.protocol).unwrap_or(spec.protocol),
            failure,
            probe_starting: spec.readiness_probe.is_none(),
        });
    }
    Some(FunctionRoute {
        namespace,
        name,
        revisions,
        traffic,
        access: FunctionAccess {
            visibility: spec.visibility,
            auth: spec.auth.clone(),
            domains: spec.domains.clone(),
            tls: spec.tls.clone(),
            created: function
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
        },
    })
}

/// The revision an EndpointSlice serves, from its labels and namespace.
pub fn slice_revision(slice: &EndpointSlice) -> Option<RevisionKey> {
    let labels = slice.metadata.labels.as_ref()?;
    Some(RevisionKey::new(
        slice.metadata.namespace.clone()?,
        labels.get(LABEL_FUNCTION)?.clone(),
        labels.get(LABEL_REVISION)?.clone(),
    ))
}

/// The replicas an EndpointSlice lists, on its `http` port (or its only
/// port). Unset conditions follow the Kubernetes meaning: unknown
/// readiness counts as ready, unknown termination as not terminating.
pub fn slice_endpoints(slice: &EndpointSlice) -> Vec<Endpoint> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(PORT_NAME))
        .or_else(|| (ports.len() == 1).then(|| &ports[0]))
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok());
    let Some(port) = port else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .flat_map(|e| {
            let conditions = e.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let pod = e.target_ref.as_ref().and_then(|r| r.name.clone());
            e.addresses.iter().filter_map(move |a| {
                let ip: IpAddr = a.parse().ok()?;
                Some(Endpoint {
                    id: pod.clone().unwrap_or_else(|| a.clone()),
                    addr: SocketAddr::new(ip, port),
                    ready,
                    terminating,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flint_api::{FunctionSpec, FunctionStatus, Protocol, RevisionStatus, TrafficStatus};
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{
        Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn function() -> Function {
        let spec: FunctionSpec = serde_json::from_value(serde_json::json!({
            "image": "registry.example/hello:1",
            "concurrency": 4,
            "timeoutSeconds": 20,
            "protocol": "h2c",
        }))
        .unwrap();
        let mut f = Function::new("hello", spec);
        f.metadata.namespace = Some("ns".into());
        f
    }

    fn traffic(rev: &str, percent: u32, tag: Option<&str>) -> TrafficStatus {
        TrafficStatus {
            revision_name: rev.into(),
            percent,
            latest_revision: tag.is_none(),
            tag: tag.map(Into::into),
            url: None,
        }
    }

    fn rev_status(
        name: &str,
        ready: bool,
        reason: Option<&str>,
        message: Option<&str>,
    ) -> RevisionStatus {
        RevisionStatus {
            name: name.into(),
            ready,
            replicas: 0,
            reason: reason.map(Into::into),
            message: message.map(Into::into),
            concurrency: None,
            timeout_seconds: None,
            protocol: None,
            scale: None,
        }
    }

    fn settings(route: &FunctionRoute) -> Vec<(&str, u32, u32, Protocol)> {
        route
            .revisions
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.concurrency,
                    r.timeout_seconds,
                    r.protocol,
                )
            })
            .collect()
    }

    #[test]
    fn each_revision_keeps_the_settings_it_was_created_with() {
        // The spec moved on to concurrency 10 (revision 2); revision 1 was
        // created with concurrency 1, timeout 5 and http1, and still has a
        // share of the traffic.
        let mut f = function();
        f.spec.concurrency = 10;
        let mut old = rev_status("hello-00001", true, None, None);
        old.concurrency = Some(1);
        old.timeout_seconds = Some(5);
        old.protocol = Some(Protocol::Http1);
        let mut new = rev_status("hello-00002", true, None, None);
        new.concurrency = Some(10);
        new.timeout_seconds = Some(20);
        new.protocol = Some(Protocol::H2c);
        f.status = Some(FunctionStatus {
            traffic: vec![
                traffic("hello-00002", 50, None),
                traffic("hello-00001", 50, Some("previous")),
            ],
            revisions: vec![new, old],
            ..FunctionStatus::default()
        });
        let route = function_route(&f).unwrap();
        assert_eq!(
            settings(&route),
            [
                ("hello-00002", 10, 20, Protocol::H2c),
                ("hello-00001", 1, 5, Protocol::Http1),
            ]
        );
    }

    #[test]
    fn settings_missing_from_the_status_fall_back_to_the_spec() {
        // hello-00001: an entry written before settings were recorded;
        // hello-00002: only its timeout recorded; hello-00003: no entry.
        let mut f = function();
        f.spec.concurrency = 10;
        let mut partial = rev_status("hello-00002", true, None, None);
        partial.timeout_seconds = Some(7);
        f.status = Some(FunctionStatus {
            traffic: vec![
                traffic("hello-00001", 50, None),
                traffic("hello-00002", 25, Some("b")),
                traffic("hello-00003", 25, Some("c")),
            ],
            revisions: vec![rev_status("hello-00001", true, None, None), partial],
            ..FunctionStatus::default()
        });
        let route = function_route(&f).unwrap();
        assert_eq!(
            settings(&route),
            [
                ("hello-00001", 10, 20, Protocol::H2c),
                ("hello-00002", 10, 7, Protocol::H2c),
                ("hello-00003", 10, 20, Protocol::H2c),
            ]
        );
    }

    #[test]
    fn function_becomes_a_route_with_spec_settings_and_failures() {
        let mut f = function();
        f.status = Some(FunctionStatus {
            traffic: vec![
                traffic("hello-00002", 90, None),
                traffic("hello-00001", 10, Some("previous")),
                traffic("hello-00002", 0, Some("latest")),
            ],
            revisions: vec![
                rev_status("hello-00001", true, None, None),
                rev_status(
                    "hello-00002",
                    false,
                    Some("ImagePullBackOff"),
                    Some("image not found"),
                ),
            ],
            ..FunctionStatus::default()
        });
        let route = function_route(&f).unwrap();
        assert_eq!(
            (route.namespace.as_str(), route.name.as_str()),
            ("ns", "hello")
        );
        assert_eq!(route.traffic.len(), 3);
        let names: Vec<_> = route.revisions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["hello-00002", "hello-00001"]);
        let r2 = &route.revisions[0];
        assert_eq!(
            (r2.concurrency, r2.timeout_seconds, r2.protocol),
            (4, 20, Protocol::H2c)
        );
        assert_eq!(
            r2.failure.as_deref(),
            Some("ImagePullBackOff: image not found")
        );
        assert_eq!(route.revisions[1].failure, None);
    }

    #[test]
    fn function_without_status_has_no_traffic_and_unnamed_is_skipped() {
        let route = function_route(&function()).unwrap();
        assert!(route.traffic.is_empty() && route.revisions.is_empty());
        let mut unnamed = function();
        unnamed.metadata.namespace = None;
        assert!(function_route(&unnamed).is_none());
    }

    fn endpoint(
        addr: &str,
        pod: &str,
        ready: Option<bool>,
        terminating: Option<bool>,
    ) -> SliceEndpoint {
        SliceEndpoint {
            addresses: vec![addr.into()],
            conditions: Some(EndpointConditions {
                ready,
                serving: None,
                terminating,
            }),
            target_ref: Some(ObjectReference {
                name: Some(pod.into()),
                ..ObjectReference::default()
            }),
            ..SliceEndpoint::default()
        }
    }

    fn slice(ports: Vec<EndpointPort>, endpoints: Vec<SliceEndpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints,
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                labels: Some(
                    [
                        (LABEL_FUNCTION.to_owned(), "hello".to_owned()),
                        (LABEL_REVISION.to_owned(), "hello-00001".to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ports: Some(ports),
        }
    }

    fn port(name: Option<&str>, port: i32) -> EndpointPort {
        EndpointPort {
            name: name.map(Into::into),
            port: Some(port),
            ..EndpointPort::default()
        }
    }

    #[test]
    fn slices_become_endpoints_with_their_conditions() {
        let s = slice(
            vec![port(Some("metrics"), 9090), port(Some("http"), 8080)],
            vec![
                endpoint("10.0.0.1", "pod-a", Some(true), Some(false)),
                endpoint("10.0.0.2", "pod-b", Some(false), None),
                endpoint("10.0.0.3", "pod-c", None, Some(true)),
                endpoint("not-an-ip", "pod-d", Some(true), None),
            ],
        );
        assert_eq!(
            slice_revision(&s),
            Some(RevisionKey::new("ns", "hello", "hello-00001"))
        );
        let got: Vec<_> = slice_endpoints(&s)
            .into_iter()
            .map(|e| (e.id, e.addr.to_string(), e.ready, e.terminating))
            .collect();
        assert_eq!(
            got,
            [
                ("pod-a".to_owned(), "10.0.0.1:8080".to_owned(), true, false),
                ("pod-b".to_owned(), "10.0.0.2:8080".to_owned(), false, false),
                ("pod-c".to_owned(), "10.0.0.3:8080".to_owned(), true, true),
            ]
        );
    }

    #[test]
    fn slices_without_a_usable_port_or_labels_give_nothing() {
        let single = slice(
            vec![port(None, 7000)],
            vec![endpoint("10.0.0.1", "a", None, None)],
        );
        assert_eq!(slice_endpoints(&single)[0].addr.port(), 7000);
        let ambiguous = slice(
            vec![port(Some("a"), 1), port(Some("b"), 2)],
            vec![endpoint("10.0.0.1", "a", None, None)],
        );
        assert!(slice_endpoints(&ambiguous).is_empty());
        let mut unlabelled = single;
        unlabelled.metadata.labels = None;
        assert_eq!(slice_revision(&unlabelled), None);
    }
}
