//! What the fuzz targets share: a routing table built from fuzzer-chosen
//! Functions, and requests built from fuzzer-chosen parts (parts that
//! `http` refuses are dropped, as a server would never hand them over).

use arbitrary::Arbitrary;
use flint_api::backend::{FunctionRoute, RevisionRoute};
use flint_api::{Protocol, TrafficStatus};
use flint_runtime::gateway::RouteTable;

/// The domain Functions are served under, unless a target picks one.
pub const DOMAIN: &str = "example.com";

/// A Function of the table: namespace, name, and a traffic tag.
#[derive(Debug, Clone, Arbitrary)]
pub struct FunctionSpec<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Tag of its only revision, if any.
    pub tag: Option<&'a str>,
}

/// The route of one Function with one revision taking all traffic.
pub fn route(spec: &FunctionSpec<'_>) -> FunctionRoute {
    let revision = format!("{}-00001", spec.name);
    FunctionRoute {
        namespace: spec.namespace.into(),
        name: spec.name.into(),
        revisions: vec![RevisionRoute {
            name: revision.clone(),
            concurrency: 0,
            timeout_seconds: 1,
            protocol: Protocol::Http1,
            failure: None,
            probe_starting: false,
        }],
        traffic: vec![TrafficStatus {
            revision_name: revision,
            percent: 100,
            tag: spec.tag.map(Into::into),
            latest_revision: true,
            url: None,
        }],
        access: Default::default(),
    }
}

/// The table of `specs` (at most 16 of them) under `domain`.
pub fn table(specs: &[FunctionSpec<'_>], domain: &str) -> RouteTable<()> {
    let routes: Vec<FunctionRoute> = specs.iter().take(16).map(route).collect();
    RouteTable::build(&routes, domain, |_| ())
}

/// A request with `method`, target `uri` and `headers`; `None` when `http`
/// refuses the method or the target. Headers it refuses are left out.
pub fn request<B>(
    method: &str,
    uri: &str,
    headers: &[(&str, &[u8])],
    body: B,
) -> Option<http::Request<B>> {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::from_bytes(method.as_bytes()).ok()?;
    *req.uri_mut() = uri.parse().ok()?;
    for (name, value) in headers.iter().take(32) {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        req.headers_mut().append(name, value);
    }
    Some(req)
}
