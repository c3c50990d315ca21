//! Names shared by every Flint component: labels, annotations, object and host
//! naming rules. Kept in one place so the operator, the gateway and `flint dev`
//! can never disagree on how a revision or a host is spelled.

/// API group of the Function resource.
pub const GROUP: &str = "flint.dev";
/// API version of the Function resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` string a Function manifest must carry.
pub const API_VERSION: &str = "flint.dev/v1alpha1";
/// `kind` of the Function resource.
pub const KIND: &str = "Function";

/// Label on every object owned by a Function: the Function's name.
pub const LABEL_FUNCTION: &str = "flint.dev/function";
/// Label on every object owned by a revision: the revision's name.
pub const LABEL_REVISION: &str = "flint.dev/revision";
/// Label on revision objects: the Function generation that created the revision.
pub const LABEL_GENERATION: &str = "flint.dev/generation";
/// Label marking objects managed by Flint (for selectors and RBAC audits).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "flint";
/// Annotation holding the hash of the pod-shaping spec a revision was cut from;
/// it makes reconciling idempotent across operator restarts.
pub const ANNOTATION_SPEC_HASH: &str = "flint.dev/spec-hash";
/// Annotation on a revision's Deployment: the `concurrency` it was created
/// with. Serving settings are recorded per revision because its pods were
/// built for them; a later spec change makes a new revision, not a new limit.
pub const ANNOTATION_CONCURRENCY: &str = "flint.dev/concurrency";
/// Annotation on a revision's Deployment: the `timeoutSeconds` it was created with.
pub const ANNOTATION_TIMEOUT_SECONDS: &str = "flint.dev/timeout-seconds";
/// Annotation on a revision's Deployment: the `protocol` it was created with
/// (`http1` or `h2c`, spelled as in the Function spec).
pub const ANNOTATION_PROTOCOL: &str = "flint.dev/protocol";
/// Annotation on a revision's Deployment: the `scale` it was created with,
/// as compact JSON (the whole `ScaleSpec`, spelled as in the Function spec).
/// Unlike the serving settings it is not part of the revision: the latest
/// revision follows the spec's current `scale`, and this records only what
/// the revision started with (see docs/autoscaling.md).
pub const ANNOTATION_SCALE: &str = "flint.dev/scale";
/// Annotation on the metadata of every object the reconciler applies (a
/// revision's Deployment and Service, never its pod template): the hash of
/// the object as it was last applied. An observed object that carries the
/// hash of what would be applied now is already right, and is not applied
/// again: a settled Function costs the API server no write.
pub const ANNOTATION_APPLIED_HASH: &str = "flint.dev/applied-hash";
/// Annotation the autoscaler sets so the least busy pods are removed first.
pub const ANNOTATION_POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Labels and annotations Flint sets on a revision's pods and objects, or
/// that its controllers write there. A Function may not set them in
/// `podLabels` or `podAnnotations`: its own value would clash with Flint's.
pub const RESERVED_POD_KEYS: [&str; 10] = [
    LABEL_FUNCTION,
    LABEL_REVISION,
    LABEL_GENERATION,
    LABEL_MANAGED_BY,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_CONCURRENCY,
    ANNOTATION_TIMEOUT_SECONDS,
    ANNOTATION_PROTOCOL,
    ANNOTATION_SCALE,
    ANNOTATION_POD_DELETION_COST,
];
/// Name of the function's own container in every revision pod; sidecars and
/// init containers may not take it.
pub const CONTAINER_NAME: &str = "app";
/// Field manager used for every server-side apply by the operator.
pub const FIELD_MANAGER: &str = "flint-operator";
/// The finalizer earlier operator versions put on every Function; the
/// operator now removes it (owner references are enough for deletion, and a
/// finalizer would wedge deletion whenever the operator is not running).
pub const FINALIZER: &str = "functions.flint.dev/finalizer";

/// Domain used for Function hosts when none is configured on a cluster.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "example.com";
/// Domain used by `flint dev`: `*.localhost` resolves to the loopback address.
pub const DEV_DOMAIN: &str = "localhost";
/// Path prefix of the path-based route form `/function/<ns>/<fn>/...`.
pub const FUNCTION_PATH_PREFIX: &str = "/function/";
/// Header carrying the stripped path prefix to the app.
pub const HEADER_FORWARDED_PREFIX: &str = "x-forwarded-prefix";
/// Header by which the platform's own callers (the delivery of stored
/// asynchronous invocations, schedule ticks) present the gateway's internal
/// token or the control token: such a request passes Functions' gates
/// (visibility, auth), which it passed, or was exempt from, when it was
/// accepted. Removed from every request before it is routed.
pub const HEADER_INTERNAL: &str = "x-flint-internal";

/// Ports the platform itself uses inside a pod (queue-proxy data, admin and
/// metrics); a function may not listen on them.
pub const RESERVED_PORTS: [u16; 3] = [8012, 8022, 9091];

/// Longest DNS label (RFC 1035).
pub const MAX_DNS_LABEL_LEN: usize = 63;
/// Digits in a revision number (`<fn>-00001`).
pub const REVISION_DIGITS: usize = 5;
/// Highest revision number a Function can reach.
pub const MAX_REVISION_NUMBER: u32 = 99_999;
/// Longest Function name: `<fn>-00001` must stay a valid DNS label, since it
/// names the revision's Deployment and Service.
pub const MAX_FUNCTION_NAME_LEN: usize = MAX_DNS_LABEL_LEN - 1 - REVISION_DIGITS;

/// The name of revision number `n` of Function `function`: `<fn>-0000n`.
pub fn revision_name(function: &str, n: u32) -> String {
    format!("{function}-{n:0width$}", width = REVISION_DIGITS)
}

/// The revision number encoded in `revision` if it belongs to `function`.
pub fn revision_number(function: &str, revision: &str) -> Option<u32> {
    let digits = revision.strip_prefix(function)?.strip_prefix('-')?;
    if digits.len() != REVISION_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The host a Function is reached at: `<fn>.<ns>.<domain>`.
pub fn function_host(function: &str, namespace: &str, domain: &str) -> String {
    format!("{function}.{namespace}.{domain}")
}

/// The host a tagged traffic target is reached at: `<tag>-<fn>.<ns>.<domain>`.
pub fn tagged_host(tag: &str, function: &str, namespace: &str, domain: &str) -> String {
    format!("{tag}-{function}.{namespace}.{domain}")
}

/// Whether `s` is an RFC 1035 DNS label: lowercase letters, digits and '-',
/// starting with a letter, ending with a letter or digit, at most 63 bytes.
/// Service names must be such labels, so Function names and tags must be too.
pub fn is_dns1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_DNS_LABEL_LEN
                && first.is_ascii_lowercase()
                && (last.is_ascii_lowercase() || last.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// Whether `s` is an RFC 1123 DNS label (like [`is_dns1035_label`] but may
/// start with a digit); namespaces are such labels.
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_DNS_LABEL_LEN
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && (last.is_ascii_lowercase() || last.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// Whether `s` is an RFC 1123 DNS subdomain: dot-separated
/// [`is_dns1123_label`]s, at most 253 bytes (the names of RuntimeClasses and
/// PriorityClasses).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Whether `s` is a Kubernetes label key (a qualified name): an optional
/// DNS-subdomain prefix and `/`, then a name of at most 63 characters of
/// letters, digits, `-`, `_` and `.`, starting and ending alphanumeric.
/// Annotation keys follow the same rule.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Whether `s` is a Kubernetes label value: empty, or at most 63 characters
/// of letters, digits, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_DNS_LABEL_LEN
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => true,
    }
}

/// The schema pattern of [`is_label_value`].
pub const LABEL_VALUE_PATTERN: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// The schema pattern of [`is_dns1123_subdomain`].
pub const DNS1123_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// The schema pattern of [`is_dns1123_label`].
pub const DNS1123_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_names_round_trip() {
        assert_eq!(revision_name("hello", 1), "hello-00001");
        assert_eq!(revision_name("hello", 12345), "hello-12345");
        assert_eq!(revision_number("hello", "hello-00042"), Some(42));
        assert_eq!(revision_number("hello", "hello-world-00042"), None);
        assert_eq!(revision_number("hello", "hello-0042"), None);
        assert_eq!(revision_number("hello", "hello-0004a"), None);
        assert_eq!(revision_number("hello-world", "hello-world-00003"), Some(3));
    }

    #[test]
    fn longest_function_name_keeps_revision_names_valid() {
        let name = "a".repeat(MAX_FUNCTION_NAME_LEN);
        let rev = revision_name(&name, MAX_REVISION_NUMBER);
        assert_eq!(rev.len(), MAX_DNS_LABEL_LEN);
        assert!(is_dns1035_label(&rev));
        let too_long = "a".repeat(MAX_FUNCTION_NAME_LEN + 1);
        assert!(!is_dns1035_label(&revision_name(&too_long, 1)));
    }

    #[test]
    fn dns_labels() {
        for ok in ["a", "hello", "a-1", "x9"] {
            assert!(is_dns1035_label(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1035_label(bad), "{bad}");
        }
        assert!(is_dns1123_label("1a"));
        assert!(!is_dns1123_label("a-"));
        assert!(is_dns1123_subdomain("gvisor.example.com"));
        assert!(!is_dns1123_subdomain("GVisor"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["tier", "example.com/tier", "a_b.c-d", "A1"] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/tier",
            "Bad.Prefix/x",
            "a b",
            "-a",
            "x/",
            &"a".repeat(64),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
        for ok in ["", "v1", "a-b_c.d"] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["a b", "-a", "a/", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            function_host("hello", "default", "example.com"),
            "hello.default.example.com"
        );
        assert_eq!(
            tagged_host("previous", "hello", "ns", "localhost"),
            "previous-hello.ns.localhost"
        );
    }
}
