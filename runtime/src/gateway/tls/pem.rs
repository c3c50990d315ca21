//! A certificate chain and its private key, as PEM (the `tls.crt` and
//! `tls.key` of a `kubernetes.io/tls` Secret), made into what rustls
//! serves: the key loaded with the ring provider and checked against the
//! leaf certificate, so a Secret whose halves do not belong together is
//! reported when it is read rather than at every handshake.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};

use super::TlsError;

/// Reads `cert_pem` (the leaf certificate first, then its intermediates)
/// and `key_pem` (PKCS#8, PKCS#1 or SEC1) into a servable certificate,
/// checking that the key is the leaf's.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| malformed("certificate", err))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoPrivateKey),
        Err(err) => return Err(malformed("private key", err)),
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| TlsError::UnsupportedKey(encoding(&key).to_owned()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch)
        }
        Err(RustlsError::InconsistentKeys(_)) => Err(TlsError::UnsupportedKey(format!(
            "{} whose public key cannot be derived to check it against the certificate",
            encoding(&key)
        ))),
        Err(err) => Err(TlsError::BadCertificate(err.to_string())),
    }
}

/// How a private key was encoded, for an error message.
fn encoding(key: &PrivateKeyDer<'_>) -> &'static str {
    match key {
        PrivateKeyDer::Pkcs1(_) => "a PKCS#1 (RSA PRIVATE KEY) key",
        PrivateKeyDer::Sec1(_) => "a SEC1 (EC PRIVATE KEY) key",
        PrivateKeyDer::Pkcs8(_) => "a PKCS#8 (PRIVATE KEY) key of another algorithm or curve",
        _ => "a key of an unknown encoding",
    }
}

/// A PEM reader's error, in words (its own spells markers as byte lists).
fn malformed(what: &'static str, err: pem::Error) -> TlsError {
    let reason = match err {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a block has no END line (expected {:?})",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line {:?}", String::from_utf8_lossy(&line))
        }
        pem::Error::Base64Decode(reason) => format!("a block is not valid base64 ({reason})"),
        other => other.to_string(),
    };
    TlsError::Pem { what, reason }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, Key};
    use super::*;

    #[test]
    fn every_key_encoding_of_a_secret_is_read() {
        for key in [Key::EcdsaPkcs8, Key::Ed25519, Key::EcdsaSec1, Key::RsaPkcs1] {
            let (cert, pem) = testing::pem_pair(&["a.example.com"], key);
            let certified = certified_key(cert.as_bytes(), pem.as_bytes())
                .unwrap_or_else(|err| panic!("{key:?}: {err}"));
            assert_eq!(certified.cert.len(), 1, "{key:?}");
        }
    }

    #[test]
    fn a_chain_keeps_its_intermediates_in_order() {
        let (leaf, key) = testing::pem_pair(&["a.example.com"], Key::EcdsaPkcs8);
        let (other, _) = testing::pem_pair(&["ca.example.com"], Key::EcdsaPkcs8);
        let chain = format!("{leaf}{other}");
        let certified = certified_key(chain.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(certified.cert.len(), 2);
        assert_eq!(
            super::super::names(&certified),
            vec!["a.example.com".to_owned()]
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let (cert, key) = testing::pem_pair(&["a.example.com"], Key::EcdsaPkcs8);
        let (_, other_key) = testing::pem_pair(&["a.example.com"], Key::EcdsaPkcs8);
        let cases: [(&str, &str, TlsError, &str); 6] = [
            ("", &key, TlsError::NoCertificate, "no certificate found"),
            (&key, &key, TlsError::NoCertificate, "no certificate found"),
            (&cert, &cert, TlsError::NoPrivateKey, "no private key found"),
            (&cert, &other_key, TlsError::KeyMismatch, "does not match"),
            (
                "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                &key,
                TlsError::Pem {
                    what: "certificate",
                    reason: String::new(),
                },
                "certificate PEM is malformed",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                &key,
                TlsError::BadCertificate(String::new()),
                "certificate cannot be parsed",
            ),
        ];
        for (cert, key, want, says) in cases {
            let err = certified_key(cert.as_bytes(), key.as_bytes()).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&err),
                std::mem::discriminant(&want),
                "{err}"
            );
            assert!(err.to_string().contains(says), "{err}");
        }
        let truncated = &cert[..cert.len() - 30];
        let err = certified_key(truncated.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("has no END line"), "{err}");
    }

    #[test]
    fn an_unsupported_key_is_named() {
        // An ECDSA P-521 key: rustls' ring provider does not sign with it.
        let (cert, key) = testing::pem_pair(&["a.example.com"], Key::EcdsaP521);
        let err = certified_key(cert.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::UnsupportedKey(_)), "{err}");
        assert!(
            err.to_string().contains("unsupported private key type"),
            "{err}"
        );
    }
}
