//! The certificates the TLS listener serves, chosen per handshake by the
//! name the client sent (SNI): the host's own certificate, else a wildcard
//! one for its parent, else the default, else none (the handshake fails
//! with an alert). A whole set is swapped at once; the handshake path
//! reads it without a lock.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;
use super::names::{Filed, filed};

/// Certificates by the names they serve, built whole and then handed to a
/// [`CertStore`].
#[derive(Clone, Default)]
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the parent of the wildcard: `*.example.com` under `example.com`.
    wildcards: HashMap<String, Arc<CertifiedKey>>,
    fallback: Option<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut exact: Vec<&String> = self.exact.keys().collect();
        exact.sort();
        let mut wildcards: Vec<String> = self.wildcards.keys().map(|p| format!("*.{p}")).collect();
        wildcards.sort();
        f.debug_struct("CertSet")
            .field("exact", &exact)
            .field("wildcards", &wildcards)
            .field("default", &self.fallback.is_some())
            .finish()
    }
}

impl CertSet {
    /// An empty set: every handshake fails until certificates are added.
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Serves `cert` for `name`: a host (`api.example.com`) or a one-label
    /// wildcard (`*.example.com`, for `x.example.com` but neither
    /// `example.com` nor `a.b.example.com`). A host's own entry wins over a
    /// wildcard; a later entry for the same name replaces the earlier one.
    /// The name is not checked against the certificate: see
    /// [`super::covers`].
    pub fn insert(&mut self, name: &str, cert: Arc<CertifiedKey>) -> Result<&mut Self, TlsError> {
        match filed(name)? {
            Filed::Exact(host) => self.exact.insert(host, cert),
            Filed::Wildcard(parent) => self.wildcards.insert(parent, cert),
        };
        Ok(self)
    }

    /// Serves `cert` for every name without an entry, and for clients that
    /// send no name.
    pub fn default(&mut self, cert: Arc<CertifiedKey>) -> &mut Self {
        self.fallback = Some(cert);
        self
    }

    /// The certificate a handshake for `server_name` gets (`None`: no SNI).
    pub fn get(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            // rustls hands the name over lowercase, without a trailing dot.
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) || name.ends_with('.') {
                let trimmed = name.strip_suffix('.').unwrap_or(name);
                Cow::Owned(trimmed.to_ascii_lowercase())
            } else {
                Cow::Borrowed(name)
            };
            if let Some(cert) = self.exact.get(name.as_ref()) {
                return Some(cert);
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(cert) = self.wildcards.get(parent)
            {
                return Some(cert);
            }
        }
        self.fallback.as_ref()
    }

    /// How many names have an entry (the default not counted).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcards.len()
    }

    /// Whether no name has an entry and there is no default.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.fallback.is_none()
    }
}

/// The certificates in force, shared by the TLS listener's handshakes and
/// by whoever watches the certificates. A new set ([`CertStore::set`])
/// applies to handshakes from then on; connections already open keep the
/// certificate they were made with.
#[derive(Debug, Default)]
pub struct CertStore {
    current: ArcSwap<CertSet>,
}

impl CertStore {
    /// A store serving `set`.
    pub fn new(set: CertSet) -> Self {
        Self {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// Serves `set` from the next handshake on.
    pub fn set(&self, set: CertSet) {
        tracing::debug!(certificates = ?set, "TLS certificates updated");
        self.current.store(Arc::new(set));
    }

    /// The set in force.
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    /// The certificate a handshake for `server_name` gets now.
    pub fn get(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.current.load().get(server_name).cloned()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        let cert = self.get(name);
        if cert.is_none() {
            tracing::debug!(
                server_name = name.unwrap_or("-"),
                "no certificate for the TLS handshake's name"
            );
        }
        cert
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    fn same(got: Option<&Arc<CertifiedKey>>, want: &Arc<CertifiedKey>) -> bool {
        got.is_some_and(|got| Arc::ptr_eq(got, want))
    }

    #[test]
    fn a_name_gets_its_own_then_its_wildcard_then_the_default() {
        let (own, wild, fallback) = (
            testing::certified(&["api.example.com"]),
            testing::certified(&["*.example.com"]),
            testing::certified(&["fallback.test"]),
        );
        let mut set = CertSet::new();
        set.insert("api.example.com", Arc::clone(&own)).unwrap();
        set.insert("*.Example.com", Arc::clone(&wild)).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.get(Some("other.test")).is_none());
        set.default(Arc::clone(&fallback));
        assert!(same(set.get(Some("api.example.com")), &own));
        assert!(same(set.get(Some("API.example.com.")), &own));
        assert!(same(set.get(Some("www.example.com")), &wild));
        assert!(same(set.get(Some("example.com")), &fallback));
        assert!(same(set.get(Some("a.www.example.com")), &fallback));
        assert!(same(set.get(None), &fallback));
        assert!(format!("{set:?}").contains("*.example.com"));
    }

    #[test]
    fn a_new_set_applies_to_later_lookups_only() {
        let (old, new) = (
            testing::certified(&["a.test"]),
            testing::certified(&["a.test"]),
        );
        let mut first = CertSet::new();
        first.insert("a.test", Arc::clone(&old)).unwrap();
        let store = CertStore::new(first);
        let held = store.current();
        let mut second = CertSet::new();
        second.insert("a.test", Arc::clone(&new)).unwrap();
        store.set(second);
        assert!(same(held.get(Some("a.test")), &old));
        assert!(same(store.get(Some("a.test")).as_ref(), &new));
        assert!(CertStore::default().get(Some("a.test")).is_none());
        assert!(CertStore::default().current().is_empty());
    }
}
