//! The names a certificate is good for, read from its leaf's subject
//! alternative names (never its common name, as browsers do), and the
//! names a certificate may be filed under in a [`super::CertSet`].

use rustls::pki_types::{DnsName, ServerName};
use rustls::sign::CertifiedKey;
use webpki::EndEntityCert;

use super::TlsError;

/// The DNS names of `cert`'s leaf that clients accept (wildcards
/// included, as `*.example.com`; not one directly under a single label
/// such as `*.localhost`, which clients refuse), lowercase; none when the
/// leaf cannot be parsed. For telling a Function's owner which hosts its
/// certificate names.
pub fn names(cert: &CertifiedKey) -> Vec<String> {
    let Ok(leaf) = cert.end_entity_cert() else {
        return Vec::new();
    };
    let Ok(leaf) = EndEntityCert::try_from(leaf) else {
        return Vec::new();
    };
    leaf.valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Whether `cert`'s leaf is valid for `host` (a host name without a port,
/// any case, a trailing dot allowed): a DNS name equal to it, or a
/// wildcard `*.<parent>` where `host` is one label under `<parent>`; for
/// an IP address, an IP entry. The same rule a client checks the
/// certificate by, so a certificate is filed only under hosts it will
/// pass for.
pub fn covers(cert: &CertifiedKey, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    let Ok(leaf) = cert.end_entity_cert() else {
        return false;
    };
    EndEntityCert::try_from(leaf)
        .is_ok_and(|leaf| leaf.verify_is_valid_for_subject_name(&name).is_ok())
}

/// A name a certificate is filed under, as handshakes look it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Filed {
    /// One host, lowercase, without a trailing dot.
    Exact(String),
    /// Every host one label under this parent (`*.<parent>`).
    Wildcard(String),
}

/// Reads `name` as a host or a one-label wildcard (`*.example.com`).
pub(super) fn filed(name: &str) -> Result<Filed, TlsError> {
    let invalid = || TlsError::InvalidName(name.to_owned());
    let lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let (wildcard, host) = match lower.strip_prefix("*.") {
        Some(parent) => (true, parent),
        None => (false, lower.as_str()),
    };
    if DnsName::try_from(host).is_err() || host.contains('*') {
        return Err(invalid());
    }
    let host = host.to_owned();
    Ok(if wildcard {
        Filed::Wildcard(host)
    } else {
        Filed::Exact(host)
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    #[test]
    fn a_certificate_covers_its_names_and_one_label_under_its_wildcards() {
        let cert = testing::certified(&["api.example.com", "*.apps.example.com"]);
        assert_eq!(names(&cert), ["api.example.com", "*.apps.example.com"]);
        for (host, want) in [
            ("api.example.com", true),
            ("API.Example.com.", true),
            ("x.apps.example.com", true),
            ("apps.example.com", false),
            ("a.b.apps.example.com", false),
            ("example.com", false),
            ("other.example.com", false),
            ("", false),
            ("api.example.com:443", false),
        ] {
            assert_eq!(covers(&cert, host), want, "{host}");
        }
    }

    #[test]
    fn names_are_hosts_or_one_label_wildcards() {
        assert_eq!(
            filed("A.Example.com.").unwrap(),
            Filed::Exact("a.example.com".into())
        );
        assert_eq!(
            filed("*.localhost").unwrap(),
            Filed::Wildcard("localhost".into())
        );
        for bad in [
            "",
            "*",
            "*.",
            "a.*.example.com",
            "*.*.example.com",
            "x*.example.com",
            "a b",
        ] {
            let err = filed(bad).unwrap_err();
            assert!(err.to_string().contains("not a host name"), "{bad}: {err}");
        }
    }
}
