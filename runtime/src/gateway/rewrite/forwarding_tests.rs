//! Table tests of what a request carries to the replica about its client
//! and its host: one table per rule.

use std::net::SocketAddr;

use flint_api::Protocol;
use http::{Request, Version};

use super::{Forwarding, client_ip, rewrite_request};
use crate::gateway::host::NamedHost;

/// Rewrites a request to `uri` with `headers` as the gateway would for a
/// peer that is (or is not) `trusted`, with `prefix_len` set for the path
/// form.
fn rewritten(
    uri: &str,
    headers: &[(&str, &str)],
    trusted: bool,
    prefix_len: Option<usize>,
) -> Request<()> {
    let mut req = Request::builder().uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(()).unwrap();
    let ip = client_ip(SocketAddr::from(([10, 0, 0, 7], 5555)));
    let host = NamedHost::first(&req).forwarded();
    let fwd = Forwarding {
        client_ip: &ip,
        host: &host,
        prefix_len,
        protocol: Protocol::Http1,
        upgrade: false,
        trusted,
        tls: false,
    };
    rewrite_request(&mut req, fwd).unwrap();
    req
}

fn header<'r>(req: &'r Request<()>, name: &str) -> Option<&'r str> {
    req.headers().get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn forwarding_claims_pass_only_from_trusted_proxies() {
    let host = ("host", "hello.ns.localhost");
    // (header, client's value, trusted, what the app gets)
    let cases = [
        ("x-forwarded-proto", "https", false, Some("http")),
        ("x-forwarded-proto", "https", true, Some("https")),
        (
            "x-forwarded-host",
            "evil.example",
            false,
            Some("hello.ns.localhost"),
        ),
        (
            "x-forwarded-host",
            "public.example",
            true,
            Some("public.example"),
        ),
        ("x-forwarded-prefix", "/admin", false, None),
        ("x-forwarded-prefix", "/api", true, Some("/api")),
        ("forwarded", "for=1.2.3.4;proto=https", false, None),
        (
            "forwarded",
            "for=1.2.3.4;proto=https",
            true,
            Some("for=1.2.3.4;proto=https"),
        ),
    ];
    for (name, value, trusted, want) in cases {
        let req = rewritten("/", &[host, (name, value)], trusted, None);
        assert_eq!(
            header(&req, name),
            want,
            "{name}: {value}, trusted {trusted}"
        );
    }
}

#[test]
fn path_prefixes_follow_a_trusted_proxys_prefix() {
    let path = "/function/ns/hello/a";
    let prefix = Some("/function/ns/hello".len());
    let cases = [
        (None, false, "/function/ns/hello"),
        (Some("/admin"), false, "/function/ns/hello"),
        (Some("/api"), true, "/api/function/ns/hello"),
        (Some("/api/"), true, "/api/function/ns/hello"),
        (None, true, "/function/ns/hello"),
    ];
    for (prior, trusted, want) in cases {
        let mut headers = vec![("host", "gw.example")];
        if let Some(prior) = prior {
            headers.push(("x-forwarded-prefix", prior));
        }
        let req = rewritten(path, &headers, trusted, prefix);
        assert_eq!(
            header(&req, "x-forwarded-prefix"),
            Some(want),
            "{prior:?} {trusted}"
        );
        assert_eq!(req.uri(), "/a");
    }
}

#[test]
fn proxy_authorization_is_never_forwarded() {
    for trusted in [false, true] {
        let req = rewritten(
            "/",
            &[
                ("host", "hello.ns.localhost"),
                ("proxy-authorization", "Basic c2VjcmV0"),
                ("authorization", "Bearer app-token"),
            ],
            trusted,
            None,
        );
        assert_eq!(
            header(&req, "proxy-authorization"),
            None,
            "trusted {trusted}"
        );
        // The app's own credential is the app's business.
        assert_eq!(header(&req, "authorization"), Some("Bearer app-token"));
    }
}

#[test]
fn the_routed_host_is_the_one_forwarded() {
    // (target, Host header, Host and X-Forwarded-Host the app gets)
    let cases = [
        ("/", "hello.ns.localhost", "hello.ns.localhost"),
        // The absolute form's authority wins (RFC 9112 §3.2.2).
        (
            "http://hello.ns.localhost/",
            "other.ns.localhost",
            "hello.ns.localhost",
        ),
        (
            "http://hello.ns.localhost:8080/x",
            "other",
            "hello.ns.localhost:8080",
        ),
        // A trailing dot is dropped, the port kept.
        ("/", "hello.ns.localhost.", "hello.ns.localhost"),
        ("/", "hello.ns.localhost.:8080", "hello.ns.localhost:8080"),
        ("http://hello.ns.localhost./", "x", "hello.ns.localhost"),
    ];
    for (uri, host, want) in cases {
        let req = rewritten(uri, &[("host", host)], false, None);
        assert_eq!(header(&req, "host"), Some(want), "{uri} {host}");
        assert_eq!(header(&req, "x-forwarded-host"), Some(want), "{uri} {host}");
        assert_eq!(req.version(), Version::HTTP_11);
    }
}
