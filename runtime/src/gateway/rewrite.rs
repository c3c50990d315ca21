//! Rewriting a request for the replica and its response for the client:
//! hop-by-hop headers out, `X-Forwarded-*` in, the path prefix stripped,
//! the HTTP version the replica speaks.
//!
//! What a client says about earlier hops (`X-Forwarded-Proto`,
//! `X-Forwarded-Host`, `X-Forwarded-Prefix`, `Forwarded`) reaches the app
//! only from a trusted proxy; from anyone else it is dropped and replaced
//! by what the gateway saw. `Proxy-Authorization` is never passed on: it
//! is meant for a proxy, and the gateway takes none.

use std::net::SocketAddr;

use bytes::Bytes;
use flint_api::Protocol;
use flint_api::names::HEADER_FORWARDED_PREFIX;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static(HEADER_FORWARDED_PREFIX);

/// What a client may claim about earlier hops; believed only from a
/// trusted proxy.
const CLAIMS: [HeaderName; 4] = [
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PREFIX,
    header::FORWARDED,
];

/// Removes `Proxy-Authorization`, and the forwarding claims of a client
/// that is not a trusted proxy.
fn strip_claims(headers: &mut HeaderMap, trusted: bool) {
    // Most requests carry none: one pass over the names is cheaper than a
    // removal of each.
    if !headers
        .keys()
        .any(|n| *n == header::PROXY_AUTHORIZATION || (!trusted && CLAIMS.contains(n)))
    {
        return;
    }
    headers.remove(header::PROXY_AUTHORIZATION);
    if !trusted {
        for name in &CLAIMS {
            headers.remove(name);
        }
    }
}

/// The client's address as an `X-Forwarded-For` entry, made once per client
/// connection rather than once per request.
pub fn client_ip(client: SocketAddr) -> HeaderValue {
    let ip = Bytes::from(client.ip().to_string());
    // An IP address in text is always a valid header value.
    HeaderValue::from_maybe_shared(ip).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Whether the request asks to switch protocols (e.g. WebSocket).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_has(req.headers(), "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, and those the `Connection` header names.
/// When `upgrade` is set, `Connection: upgrade` and `Upgrade` are kept so
/// the replica (or client) sees the protocol switch. `te: trailers` is
/// kept when `keep_te_trailers` (gRPC needs it over HTTP/2).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool, keep_te_trailers: bool) {
    // Most messages carry none: one pass over the names is cheaper than a
    // lookup of each.
    if !headers
        .keys()
        .any(|n| *n == header::UPGRADE || HOP_BY_HOP.contains(n))
    {
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && *n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = keep_te_trailers
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What the rewrite needs to know about the request's origin and target.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The client's address, as [`client_ip`] made it.
    pub client_ip: &'a HeaderValue,
    /// The host the client asked for (Host header or authority), as
    /// [`super::host::NamedHost::forwarded`] gives it.
    pub host: &'a HeaderValue,
    /// Set for the path form: the length of the `/function/<ns>/<fn>`
    /// prefix to strip.
    pub prefix_len: Option<usize>,
    /// What the replica speaks.
    pub protocol: Protocol,
    /// Whether this is a protocol upgrade.
    pub upgrade: bool,
    /// Whether the peer is a trusted proxy, whose forwarding headers pass.
    pub trusted: bool,
    /// Whether the client connection is over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
}

/// Rewrites `req` in place for the replica. Fails only on a URI that cannot
/// be rebuilt.
pub fn rewrite_request<B>(req: &mut Request<B>, fwd: Forwarding<'_>) -> Result<(), http::Error> {
    let full_path = req.uri().path();
    let (prefix, path) = match fwd.prefix_len.filter(|&n| full_path.is_char_boundary(n)) {
        Some(n) => (Some(full_path[..n].to_owned()), &full_path[n..]),
        None => (None, full_path),
    };
    let h2 = fwd.protocol == Protocol::H2c;
    let origin_form = req.uri().scheme().is_none() && req.uri().authority().is_none();
    // The common case (HTTP/1 in and out, host routing) keeps the URI as is.
    if h2 || prefix.is_some() || !origin_form {
        let path = if path.is_empty() { "/" } else { path };
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let uri = if h2 {
            Uri::builder()
                .scheme("http")
                .authority(fwd.host.as_bytes())
                .path_and_query(path_and_query)
                .build()?
        } else {
            Uri::builder().path_and_query(path_and_query).build()?
        };
        *req.uri_mut() = uri;
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, fwd.upgrade, h2);
    strip_claims(headers, fwd.trusted);
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        Some(prior) => {
            let mut list = Vec::with_capacity(prior.len() + 2 + fwd.client_ip.len());
            list.extend_from_slice(prior.as_bytes());
            list.extend_from_slice(b", ");
            list.extend_from_slice(fwd.client_ip.as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(list))?
        }
        None => fwd.client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR, forwarded_for);
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if fwd.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST, fwd.host.clone());
    }
    if let Some(prefix) = prefix {
        // Behind a trusted proxy that stripped a prefix of its own, the
        // app's public prefix is both.
        let value = match headers.get(&X_FORWARDED_PREFIX) {
            Some(prior) => {
                let mut both = Vec::with_capacity(prior.len() + prefix.len());
                both.extend_from_slice(
                    prior
                        .as_bytes()
                        .strip_suffix(b"/")
                        .unwrap_or(prior.as_bytes()),
                );
                both.extend_from_slice(prefix.as_bytes());
                HeaderValue::from_maybe_shared(Bytes::from(both))?
            }
            None => HeaderValue::try_from(prefix)?,
        };
        headers.insert(X_FORWARDED_PREFIX, value);
    }
    if h2 {
        headers.remove(header::HOST);
        *req.version_mut() = Version::HTTP_2;
    } else {
        // The host the request is routed by, which wins over a Host header
        // that names another (RFC 9112 §3.2.2).
        if headers.get(header::HOST) != Some(fwd.host) {
            headers.insert(header::HOST, fwd.host.clone());
        }
        *req.version_mut() = Version::HTTP_11;
    }
    Ok(())
}

/// Rewrites the replica's response headers for the client.
pub fn rewrite_response<B>(resp: &mut Response<B>) {
    let upgrade = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(resp.headers_mut(), upgrade, false);
}

#[cfg(test)]
mod forwarding_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::host::function_path;

    fn client() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 7], 5555))
    }

    /// Forwarding over HTTP/1 for the client at 10.0.0.7 asking for `host`.
    fn forwarding(host: &'static str) -> Forwarding<'static> {
        Forwarding {
            client_ip: Box::leak(Box::new(client_ip(client()))),
            host: Box::leak(Box::new(HeaderValue::from_static(host))),
            prefix_len: None,
            protocol: Protocol::Http1,
            upgrade: false,
            trusted: false,
            tls: false,
        }
    }

    #[test]
    fn path_form_is_stripped_and_prefix_forwarded() {
        let mut req = Request::builder()
            .uri("/function/ns/hello/a/b?x=1")
            .header("host", "127.0.0.1:8080")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("x-forwarded-for", "1.2.3.4")
            .body(())
            .unwrap();
        let fwd = Forwarding {
            prefix_len: function_path("/function/ns/hello/a/b").map(|p| p.prefix.len()),
            ..forwarding("127.0.0.1:8080")
        };
        rewrite_request(&mut req, fwd).unwrap();
        assert_eq!(req.uri(), "/a/b?x=1");
        let h = req.headers();
        assert_eq!(h["x-forwarded-prefix"], "/function/ns/hello");
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["host"], "127.0.0.1:8080");
        let mut tls = Request::builder().uri("/").body(()).unwrap();
        let fwd = Forwarding {
            tls: true,
            ..forwarding("h.ns.localhost")
        };
        rewrite_request(&mut tls, fwd).unwrap();
        assert_eq!(tls.headers()["x-forwarded-proto"], "https");
        for gone in ["connection", "keep-alive", "x-secret"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn messages_without_hop_by_hop_headers_keep_every_header() {
        let mut headers = HeaderMap::new();
        for (name, value) in [("host", "a"), ("accept", "*/*"), ("x-trace", "7")] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let before = headers.clone();
        strip_hop_by_hop(&mut headers, false, false);
        assert_eq!(headers, before);
        // An upgrade still tells the next hop it is one.
        strip_hop_by_hop(&mut headers, true, false);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers.len(), before.len() + 1);
    }

    #[test]
    fn the_client_is_added_to_the_forwarded_for_list() {
        let mut first = Request::builder().uri("/").body(()).unwrap();
        rewrite_request(&mut first, forwarding("h.ns.localhost")).unwrap();
        assert_eq!(first.headers()["x-forwarded-for"], "10.0.0.7");
        assert_eq!(first.headers()["host"], "h.ns.localhost");
        let v6 = client_ip(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 80)));
        assert_eq!(v6, "::1");
    }

    #[test]
    fn host_routed_requests_keep_their_uri_and_absolute_forms_become_origin_forms() {
        let fwd = forwarding("hello.ns.localhost");
        let cases = [
            ("/a/b?x=1", "/a/b?x=1"),
            ("/", "/"),
            ("http://hello.ns.localhost/a?y=2", "/a?y=2"),
            ("http://hello.ns.localhost", "/"),
        ];
        for (given, sent) in cases {
            let mut req = Request::builder()
                .uri(given)
                .header("host", "hello.ns.localhost")
                .body(())
                .unwrap();
            rewrite_request(&mut req, fwd).unwrap();
            assert_eq!(req.uri(), sent, "{given}");
            assert_eq!(req.headers()["x-forwarded-host"], "hello.ns.localhost");
        }
    }

    #[test]
    fn upgrades_keep_their_headers_and_h2_gets_an_authority() {
        let mut req = Request::builder()
            .uri("/ws")
            .header("host", "hello.ns.localhost")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(is_upgrade(&req));
        let fwd = Forwarding {
            upgrade: true,
            ..forwarding("hello.ns.localhost")
        };
        rewrite_request(&mut req, fwd).unwrap();
        assert_eq!(req.headers()["upgrade"], "websocket");
        assert_eq!(req.headers()["connection"], "upgrade");

        let mut grpc = Request::builder()
            .uri("/pkg.Svc/Call")
            .header("host", "hello.ns.localhost")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let fwd = Forwarding {
            protocol: Protocol::H2c,
            upgrade: false,
            ..fwd
        };
        rewrite_request(&mut grpc, fwd).unwrap();
        assert_eq!(grpc.uri(), "http://hello.ns.localhost/pkg.Svc/Call");
        assert_eq!(grpc.version(), Version::HTTP_2);
        assert_eq!(grpc.headers()["te"], "trailers");
        assert!(!grpc.headers().contains_key("host"));
    }
}
