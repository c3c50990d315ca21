//! Reading the route key out of a request, without allocating: the host
//! (`<fn>.<ns>.<domain>`, `<tag>-<fn>.<ns>.<domain>`) or the path form
//! `/function/<ns>/<fn>/…`; and the host the request is forwarded with,
//! taken from the same place ([`NamedHost`]).

use flint_api::names::FUNCTION_PATH_PREFIX;
use http::HeaderValue;

use super::error::ProxyError;

/// Longest DNS name; longer hosts match no Function.
pub const MAX_HOST_LEN: usize = 253;

/// The host without its port (`a.b:8080` → `a.b`, `[::1]:80` → `[::1]`).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..colon],
        _ => host,
    }
}

/// The host lowercased into `buf` (hosts are case-insensitive), or `None`
/// when it is longer than a DNS name or not ASCII.
pub fn lowercase<'b>(host: &str, buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    let bytes = host.as_bytes();
    if bytes.len() > MAX_HOST_LEN || !host.is_ascii() {
        return None;
    }
    let out = &mut buf[..bytes.len()];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// The host without its port and without the trailing dot of a fully
/// qualified name (`a.b.:8080` → `a.b`): the name a route is looked up by.
pub fn route_name(host: &str) -> &str {
    let host = strip_port(host);
    host.strip_suffix('.').unwrap_or(host)
}

/// The host a request names: the authority of its URI when it has one (an
/// absolute-form target, RFC 9112 §3.2.2, or HTTP/2's `:authority`, both of
/// which win over `Host`), else its `Host` header; empty when it names
/// none. The synchronous router and the async intake both read it here, so
/// they route on the same host. [`check`] refuses requests whose `Host`
/// headers are missing or ambiguous before this is asked.
pub fn request_host<B>(req: &http::Request<B>) -> &str {
    NamedHost::first(req).as_str()
}

/// Refuses a request that lacks a `Host` header where HTTP requires one
/// (HTTP/1.1; HTTP/2 without `:authority`), or that has several: hops
/// that picked different ones would route it differently (RFC 9112 §3.2
/// asks for 400 in both cases). HTTP/1.0 needs none.
pub fn check<B>(req: &http::Request<B>) -> Result<(), ProxyError> {
    NamedHost::checked(req).map(drop)
}

/// Where a request names its host: what [`request_host`] reads, kept so
/// that routing and forwarding read the request once.
#[derive(Debug, Clone, Copy)]
pub enum NamedHost<'r> {
    /// The URI's authority (an absolute-form target, or HTTP/2's
    /// `:authority`): it wins over `Host`.
    Authority(&'r http::uri::Authority),
    /// The `Host` header.
    Header(&'r HeaderValue),
    /// Neither (HTTP/1.0 allows it).
    Nothing,
}

impl<'r> NamedHost<'r> {
    /// The host `req` names, in one pass over its `Host` headers, refused
    /// as [`check`] refuses it.
    pub fn checked<B>(req: &'r http::Request<B>) -> Result<Self, ProxyError> {
        let mut hosts = req.headers().get_all(http::header::HOST).iter();
        let header = match (hosts.next(), hosts.next()) {
            (Some(header), None) => Some(header),
            (Some(_), Some(_)) => {
                return Err(ProxyError::SeveralHosts {
                    count: 2 + hosts.count(),
                });
            }
            (None, _) => {
                let needed = match req.version() {
                    http::Version::HTTP_11 => true,
                    http::Version::HTTP_2 => req.uri().authority().is_none(),
                    _ => false,
                };
                if needed {
                    return Err(ProxyError::MissingHost);
                }
                None
            }
        };
        Ok(Self::of(req, header))
    }

    /// The host `req` names, its first `Host` header if it has several
    /// (for a request [`check`] has passed).
    pub fn first<B>(req: &'r http::Request<B>) -> Self {
        Self::of(req, req.headers().get(http::header::HOST))
    }

    fn of<B>(req: &'r http::Request<B>, header: Option<&'r HeaderValue>) -> Self {
        match (req.uri().authority(), header) {
            (Some(authority), _) => Self::Authority(authority),
            (None, Some(header)) => Self::Header(header),
            (None, None) => Self::Nothing,
        }
    }

    /// The host as text, as the route is looked up by: empty when the
    /// request names none or its `Host` header is not visible ASCII.
    pub fn as_str(self) -> &'r str {
        match self {
            Self::Authority(authority) => authority.as_str(),
            Self::Header(header) => header.to_str().unwrap_or(""),
            Self::Nothing => "",
        }
    }

    /// The host the request is forwarded with (as `Host`, or HTTP/2's
    /// `:authority`, and `X-Forwarded-Host`): the one it is routed by,
    /// without the trailing dot of a fully qualified name. Only an
    /// absolute-form or HTTP/2 request, or a trailing dot, costs a copy;
    /// otherwise this is the `Host` header itself.
    pub fn forwarded(self) -> HeaderValue {
        let value = match self {
            Self::Authority(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            Self::Header(header) => Some(header.clone()),
            Self::Nothing => None,
        };
        let Some(value) = value else {
            return HeaderValue::from_static("");
        };
        let Ok(text) = value.to_str() else {
            return value;
        };
        let name = strip_port(text);
        match name.strip_suffix('.') {
            Some(bare) if !bare.is_empty() => {
                let port = &text[name.len()..];
                HeaderValue::from_str(&format!("{bare}{port}")).unwrap_or(value)
            }
            _ => value,
        }
    }
}

/// A request addressed by path: `/function/<ns>/<fn>/rest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionPath<'a> {
    /// Namespace segment.
    pub namespace: &'a str,
    /// Function segment.
    pub function: &'a str,
    /// `/function/<ns>/<fn>`: stripped, and sent as `X-Forwarded-Prefix`.
    pub prefix: &'a str,
    /// What the app sees as its path (`/` when nothing follows the prefix).
    pub rest: &'a str,
}

/// Splits a path of the form `/function/<ns>/<fn>[/rest]`.
pub fn function_path(path: &str) -> Option<FunctionPath<'_>> {
    let tail = path.strip_prefix(FUNCTION_PATH_PREFIX)?;
    let (namespace, tail) = tail.split_once('/')?;
    let (function, rest) = match tail.find('/') {
        Some(slash) => (&tail[..slash], &tail[slash..]),
        None => (tail, "/"),
    };
    if namespace.is_empty() || function.is_empty() {
        return None;
    }
    let prefix_len = FUNCTION_PATH_PREFIX.len() + namespace.len() + 1 + function.len();
    Some(FunctionPath {
        namespace,
        function,
        prefix: &path[..prefix_len],
        rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        for (host, want) in [
            ("hello.default.localhost", "hello.default.localhost"),
            ("hello.default.localhost:8080", "hello.default.localhost"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("a:b", "a:b"),
        ] {
            assert_eq!(strip_port(host), want, "{host}");
        }
    }

    #[test]
    fn route_names_drop_the_port_and_a_trailing_dot() {
        for (host, want) in [
            ("hello.default.localhost.", "hello.default.localhost"),
            ("hello.default.localhost.:8080", "hello.default.localhost"),
            ("hello.default.localhost:8080", "hello.default.localhost"),
            ("hello.default.localhost", "hello.default.localhost"),
            ("[::1]:80", "[::1]"),
            (".", ""),
        ] {
            assert_eq!(route_name(host), want, "{host}");
        }
    }

    fn req(version: http::Version, uri: &str, hosts: &[&str]) -> http::Request<()> {
        let mut b = http::Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn requests_need_exactly_one_host_where_http_asks_for_one() {
        use http::Version;
        let cases: [(Version, &str, &[&str], Option<u16>); 10] = [
            (Version::HTTP_11, "/", &["a.ns.localhost"], None),
            (Version::HTTP_11, "/", &[], Some(400)),
            (
                Version::HTTP_11,
                "/",
                &["a.ns.localhost", "b.ns.localhost"],
                Some(400),
            ),
            (Version::HTTP_11, "/", &["a", "a", "a"], Some(400)),
            // An absolute form still needs its Host header (RFC 9112 §3.2).
            (Version::HTTP_11, "http://a.ns.localhost/", &[], Some(400)),
            (Version::HTTP_10, "/", &[], None),
            (Version::HTTP_2, "http://a.ns.localhost/", &[], None),
            (Version::HTTP_2, "/", &["a.ns.localhost"], None),
            (Version::HTTP_2, "/", &[], Some(400)),
            (
                Version::HTTP_2,
                "http://a.ns.localhost/",
                &["x", "y"],
                Some(400),
            ),
        ];
        for (version, uri, hosts, want) in cases {
            let got = check(&req(version, uri, hosts))
                .err()
                .map(|e| e.status().as_u16());
            assert_eq!(got, want, "{version:?} {uri} {hosts:?}");
        }
    }

    #[test]
    fn the_uri_authority_wins_over_the_host_header() {
        use http::Version;
        let cases = [
            // Origin form: the Host header.
            (
                Version::HTTP_11,
                "/a",
                vec!["a.ns.localhost"],
                "a.ns.localhost",
            ),
            // Absolute form: the target's authority (RFC 9112 §3.2.2).
            (
                Version::HTTP_11,
                "http://b.ns.localhost/a",
                vec!["a.ns.localhost"],
                "b.ns.localhost",
            ),
            // HTTP/2: :authority (hyper puts it in the URI) over host.
            (
                Version::HTTP_2,
                "http://b.ns.localhost:8080/a",
                vec!["a.ns.localhost"],
                "b.ns.localhost:8080",
            ),
            (Version::HTTP_10, "/", vec![], ""),
        ];
        for (version, uri, hosts, want) in cases {
            assert_eq!(request_host(&req(version, uri, &hosts)), want, "{uri}");
        }
    }

    #[test]
    fn hosts_are_lowercased_in_place() {
        let mut buf = [0; MAX_HOST_LEN];
        assert_eq!(
            lowercase("Hello.Default.LOCALHOST", &mut buf),
            Some("hello.default.localhost")
        );
        assert_eq!(lowercase(&"a".repeat(254), &mut buf), None);
        assert_eq!(lowercase("hé.x", &mut buf), None);
    }

    #[test]
    fn function_paths() {
        let cases = [
            (
                "/function/ns/hello",
                Some(("ns", "hello", "/function/ns/hello", "/")),
            ),
            (
                "/function/ns/hello/",
                Some(("ns", "hello", "/function/ns/hello", "/")),
            ),
            (
                "/function/ns/hello/a/b",
                Some(("ns", "hello", "/function/ns/hello", "/a/b")),
            ),
            ("/function/ns/", None),
            ("/function/ns", None),
            ("/function//hello/x", None),
            ("/functions/ns/hello", None),
            ("/other", None),
        ];
        for (path, want) in cases {
            let got = function_path(path).map(|p| (p.namespace, p.function, p.prefix, p.rest));
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn forwarded_hosts_come_from_the_authority_then_the_host_header() {
        let cases: [(&str, Option<&str>, &str); 5] = [
            ("/", Some("a.ns.localhost"), "a.ns.localhost"),
            (
                "http://b.ns.localhost/",
                Some("a.ns.localhost"),
                "b.ns.localhost",
            ),
            ("/", None, ""),
            ("/", Some("."), "."),
            ("/", Some("[::1]:80"), "[::1]:80"),
        ];
        for (uri, host, want) in cases {
            let mut req = http::Request::builder().uri(uri);
            if let Some(host) = host {
                req = req.header("host", HeaderValue::from_str(host).unwrap());
            }
            let req = req.body(()).unwrap();
            assert_eq!(NamedHost::first(&req).forwarded(), want, "{uri} {host:?}");
        }
    }
}
