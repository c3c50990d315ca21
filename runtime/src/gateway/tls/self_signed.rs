//! A self-signed certificate, for `flint dev`'s TLS listener
//! (`localhost`, `*.localhost`): browsers warn about it, curl takes it
//! with `-k`, and nothing has to be set up first.

use super::TlsError;

/// A new self-signed certificate for `hosts` (host names, one-label
/// wildcards or IP addresses) and its ECDSA P-256 key, as PEM: the
/// certificate first, then the PKCS#8 key, ready for
/// [`super::certified_key`]. Clients (rustls, OpenSSL) take no wildcard
/// directly under a single label, such as `*.localhost`: name such hosts
/// one by one.
pub fn self_signed(hosts: &[String]) -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|err| TlsError::SelfSigned(err.to_string()))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|err| TlsError::SelfSigned(err.to_string()))?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        hosts.first().map_or("flint", String::as_str),
    );
    subject.push(rcgen::DnType::OrganizationName, "Flint (self-signed)");
    params.distinguished_name = subject;
    let cert = params
        .self_signed(&key)
        .map_err(|err| TlsError::SelfSigned(err.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::super::{certified_key, covers, names};
    use super::*;

    #[test]
    fn a_self_signed_certificate_serves_its_hosts() {
        let hosts = [
            "localhost",
            "*.localhost",
            "hello.ns.localhost",
            "*.ns.localhost",
        ];
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let (cert, key) = self_signed(&hosts).unwrap();
        let certified = certified_key(cert.as_bytes(), key.as_bytes()).unwrap();
        // `*.localhost` is in the certificate, but no client would take it.
        assert_eq!(
            names(&certified),
            ["localhost", "hello.ns.localhost", "*.ns.localhost"]
        );
        assert!(covers(&certified, "localhost"));
        assert!(covers(&certified, "hello.ns.localhost"));
        assert!(covers(&certified, "other.ns.localhost"));
        assert!(!covers(&certified, "x.localhost"));
        assert!(!covers(&certified, "a.hello.ns.localhost"));
    }

    #[test]
    fn a_bad_host_is_an_error() {
        let err = self_signed(&["bad-hóst.localhost".to_owned()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("making a self-signed certificate"),
            "{err}"
        );
    }
}
