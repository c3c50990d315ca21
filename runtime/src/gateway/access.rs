//! The gateway's side of who may reach a Function: the secret material its
//! owner supplies ([`Keyring`]), the key-set cache shared by every
//! Function's JWT rule, and the certificates served; a changed Secret or
//! file rebuilds the gates that read secret material
//! ([`Gateway::refresh_access`]) without waiting for a route change.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use flint_api::backend::FunctionRoute;
use flint_api::names;
use flint_api::sync::lock;

use super::Gateway;
use super::auth::{JwksRegistry, JwksSettings};
use super::config::AccessSettings;
use super::keyring::{CertPem, EmptyKeyring, Keyring};
use super::tls::{CertSet, CertifiedKey, certified_key, covers};

/// What building the gates needs besides the routes.
pub(crate) struct AccessState {
    keyring: Mutex<Arc<dyn Keyring>>,
    pub(crate) registry: JwksRegistry,
    /// Certificates already parsed.
    pub(crate) parsed: ParsedCerts,
}

impl AccessState {
    /// No secret material yet, key sets fetched as `settings` allow.
    pub(crate) fn new(settings: &AccessSettings) -> Self {
        Self {
            keyring: Mutex::new(Arc::new(EmptyKeyring)),
            registry: JwksRegistry::new(JwksSettings {
                allow_http: settings.allow_http_jwks,
                ..JwksSettings::default()
            }),
            parsed: ParsedCerts::default(),
        }
    }

    /// The keyring now.
    pub(crate) fn keyring(&self) -> Arc<dyn Keyring> {
        Arc::clone(&lock(&self.keyring))
    }
}

impl Gateway {
    /// Reads Functions' API keys, HMAC keys, key-set files and certificates
    /// from `keyring` from now on, and rebuilds the gates with it.
    pub fn set_keyring(&self, keyring: Arc<dyn Keyring>) {
        *lock(&self.shared.access.keyring) = keyring;
        self.refresh_access();
    }
}

/// Certificates parsed from their PEM, kept between rebuilds so that a
/// rebuild parses only the Secrets that changed. Holds only what the last
/// rebuild used.
#[derive(Default)]
pub(crate) struct ParsedCerts(Mutex<HashMap<CertPem, Arc<CertifiedKey>>>);

impl ParsedCerts {
    fn parse(
        &self,
        pem: CertPem,
        used: &mut HashSet<CertPem>,
    ) -> Result<Arc<CertifiedKey>, String> {
        used.insert(pem.clone());
        if let Some(cert) = lock(&self.0).get(&pem) {
            return Ok(Arc::clone(cert));
        }
        let cert = Arc::new(certified_key(&pem.0, &pem.1).map_err(|e| e.to_string())?);
        lock(&self.0).insert(pem, Arc::clone(&cert));
        Ok(cert)
    }

    fn keep_only(&self, used: &HashSet<CertPem>) {
        lock(&self.0).retain(|pem, _| used.contains(pem));
    }
}

/// The certificates to serve for `routes` (the Functions of `table` with
/// `spec.tls`; the others get none, so they may be left out): each
/// Function with `spec.tls` and a Secret of its own gets that certificate
/// for every host of its the certificate covers; the hosts of the others
/// get the keyring's default certificate. A Secret that cannot be read or
/// parsed is logged and its Function's hosts fall back to the default.
pub(crate) fn certificates<'r>(
    table: &super::Table,
    routes: impl Iterator<Item = &'r FunctionRoute>,
    domain: &str,
    keyring: &dyn Keyring,
    parsed: &ParsedCerts,
) -> CertSet {
    let mut set = CertSet::new();
    let mut used = HashSet::new();
    let mut default_hosts: Vec<String> = Vec::new();
    let mut owned: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for (host, _, f) in table.domains() {
        owned.entry((&f.namespace, &f.name)).or_default().push(host);
    }
    for route in routes {
        let Some(tls) = &route.access.tls else {
            continue;
        };
        let domains = owned
            .get(&(route.namespace.as_str(), route.name.as_str()))
            .map_or(&[][..], Vec::as_slice);
        let hosts = hosts_of(route, domain, domains);
        let own = tls.secret_name.as_ref().and_then(|name| {
            let loaded = keyring
                .tls(&route.namespace, name)
                .map_err(|e| e.to_string())
                .and_then(|pem| parsed.parse(pem, &mut used));
            match loaded {
                Ok(cert) => Some(cert),
                Err(error) => {
                    tracing::warn!(namespace = %route.namespace, function = %route.name, secret = %name, %error, "the Function's certificate is unusable; its hosts get the default");
                    None
                }
            }
        });
        for host in hosts {
            match &own {
                Some(cert) if covers(cert, &host) => {
                    if let Err(error) = set.insert(&host, Arc::clone(cert)) {
                        tracing::warn!(%host, %error, "cannot serve a certificate for the host");
                    }
                }
                Some(_) => {
                    tracing::warn!(namespace = %route.namespace, function = %route.name, %host, "the Function's certificate does not cover the host; it gets the default");
                    default_hosts.push(host);
                }
                None => default_hosts.push(host),
            }
        }
    }
    match keyring.default_tls(&default_hosts) {
        Some(Ok(pem)) => match parsed.parse(pem, &mut used) {
            Ok(cert) => {
                set.default(cert);
            }
            Err(error) => tracing::warn!(%error, "the default certificate is unusable"),
        },
        Some(Err(error)) => tracing::warn!(%error, "the default certificate cannot be read"),
        None => {}
    }
    parsed.keep_only(&used);
    set
}

/// Every host `route`'s Function answers at: its own, its tags' and the
/// custom domains it owns (`domains`).
fn hosts_of(route: &FunctionRoute, domain: &str, domains: &[&str]) -> Vec<String> {
    let mut hosts = vec![names::function_host(&route.name, &route.namespace, domain)];
    hosts.extend(
        route
            .traffic
            .iter()
            .filter_map(|t| t.tag.as_deref())
            .map(|tag| names::tagged_host(tag, &route.name, &route.namespace, domain)),
    );
    hosts.extend(domains.iter().map(|h| (*h).to_owned()));
    hosts.sort();
    hosts.dedup();
    hosts
}
