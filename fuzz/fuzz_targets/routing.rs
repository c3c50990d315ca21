//! Host and path routing: a table of fuzzer-chosen Functions (names, tags,
//! domain) asked to route fuzzer-chosen hosts and paths, directly and
//! through a request (`Host` headers, absolute-form targets). Besides "no
//! panic", what it answers must be consistent: a host route names the
//! Function whose host (or tagged host) the request's host is; a path route
//! names the Function the path names, with a prefix and rest that are the
//! path's own.
#![no_main]

use arbitrary::Arbitrary;
use flint_api::names::{function_host, tagged_host};
use flint_fuzz::{FunctionSpec, request, table};
use flint_runtime::gateway::RouteTable;
use flint_runtime::gateway::host::{self, MAX_HOST_LEN};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    functions: Vec<FunctionSpec<'a>>,
    domain: Option<&'a str>,
    host: &'a str,
    path: &'a str,
    /// Host headers of the request (0, 1 or more).
    host_headers: Vec<&'a [u8]>,
    /// Whether the request target is in absolute form (`http://host/path`).
    absolute: bool,
}

/// Checks what `table` makes of (`host`, `path`).
fn check_route(table: &RouteTable<()>, domain: &str, host: &str, path: &str) {
    let Some(routed) = table.route(host, path) else {
        return;
    };
    let f = &routed.function;
    match &routed.path {
        None => {
            let mut buf = [0u8; MAX_HOST_LEN];
            let name = host::lowercase(host::route_name(host), &mut buf)
                .expect("a host that routed is a DNS-length ASCII name");
            let own = function_host(&f.name, &f.namespace, domain).to_ascii_lowercase();
            // A tagged host is `<tag>-<own host>`.
            let tagged = routed.tagged.is_some() && name.ends_with(&format!("-{own}"));
            assert!(
                name == own || tagged,
                "host {host:?} routed to {}/{} whose host is {own:?}",
                f.namespace,
                f.name
            );
        }
        Some(p) => {
            assert_eq!(
                (p.namespace, p.function),
                (f.namespace.as_str(), f.name.as_str())
            );
            assert!(path.starts_with(p.prefix), "{path:?} / {p:?}");
            let rest = &path[p.prefix.len()..];
            assert!(
                rest == p.rest || (rest.is_empty() && p.rest == "/"),
                "{path:?} / {p:?}"
            );
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    let domain = input.domain.unwrap_or(flint_fuzz::DOMAIN);
    let table = table(&input.functions, domain);
    check_route(&table, domain, input.host, input.path);
    // Every Function is found by its own host and its own path.
    for spec in input.functions.iter().take(16) {
        let own = function_host(spec.name, spec.namespace, domain);
        if let Some(routed) = table.route(&own, "/") {
            assert!(routed.path.is_none());
        }
        if let Some(tag) = spec.tag {
            let tagged = tagged_host(tag, spec.name, spec.namespace, domain);
            check_route(&table, domain, &tagged, "/");
        }
        check_route(
            &table,
            domain,
            "",
            &format!("/function/{}/{}{}", spec.namespace, spec.name, input.path),
        );
    }
    // The same through a request, as the gateway reads it.
    let target = if input.absolute {
        format!("http://{}{}", input.host, input.path)
    } else {
        input.path.to_owned()
    };
    let headers: Vec<(&str, &[u8])> = input.host_headers.iter().map(|h| ("host", *h)).collect();
    if let Some(req) = request("GET", &target, &headers, ()) {
        let checked = host::check(&req);
        let host = host::request_host(&req);
        if checked.is_ok() {
            check_route(&table, domain, host, req.uri().path());
        }
        let _ = host::function_path(req.uri().path());
    }
});
