//! Reading the route key out of a request, without allocating: the host
//! (`<fn>.<ns>.<domain>`, `<tag>-<fn>.<ns>.<domain>`) or the path form
//! `/function/<ns>/<fn>/…`.

use flint_api::names::FUNCTION_PATH_PREFIX;

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
}
