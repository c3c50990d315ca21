//! The gateway's keyring on a cluster: the Secrets Functions name in
//! `spec.auth` and `spec.tls` (and the default certificate's), held in
//! memory only while some Function names them. A watch over Secrets keeps
//! them current, so a rotated key or a renewed certificate takes effect
//! without a restart or a new revision; a Secret that becomes wanted is
//! read at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use flint_api::backend::{FunctionKey, FunctionRoute};
use flint_api::function::KeySource;
use flint_api::sync::lock;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::gateway::Gateway;
use crate::gateway::keyring::{CertPem, Keyring, KeyringError};

/// A Secret by namespace and name.
pub type SecretRef = (String, String);

/// Data of a Secret, by key.
type SecretData = Arc<BTreeMap<String, Vec<u8>>>;

/// Secret types the gateway never reads (and so does not watch): account
/// tokens and Helm's release records, the bulk of most clusters' Secrets.
const IGNORED_TYPES: &str = "type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1";

#[derive(Debug, Default)]
struct Held {
    /// Secrets some Function (or the default certificate) names.
    wanted: HashSet<SecretRef>,
    /// Their data, for those that exist.
    data: HashMap<SecretRef, SecretData>,
}

/// The Secrets Functions name, as the gateway last saw them.
#[derive(Debug)]
pub struct SecretKeyring {
    held: Mutex<Held>,
    default_tls: Option<SecretRef>,
}

impl SecretKeyring {
    /// A keyring serving `default_tls` (a `kubernetes.io/tls` Secret) for
    /// Functions with `spec.tls` but no Secret of their own.
    pub fn new(default_tls: Option<SecretRef>) -> Self {
        let mut held = Held::default();
        held.wanted.extend(default_tls.clone());
        Self {
            held: Mutex::new(held),
            default_tls,
        }
    }

    /// Makes the Secrets `routes` name the wanted ones (plus the default
    /// certificate's), forgetting the others; returns those newly wanted,
    /// to be read.
    pub fn want<'r>(&self, routes: impl IntoIterator<Item = &'r FunctionRoute>) -> Vec<SecretRef> {
        let mut wanted: HashSet<SecretRef> = routes.into_iter().flat_map(named_secrets).collect();
        wanted.extend(self.default_tls.clone());
        let mut held = lock(&self.held);
        let new: Vec<SecretRef> = wanted.difference(&held.wanted).cloned().collect();
        held.data.retain(|k, _| wanted.contains(k));
        held.wanted = wanted;
        new
    }

    /// Records `secret`'s data if it is wanted; says whether anything the
    /// gates use changed.
    pub fn apply(&self, secret: &Secret) -> bool {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        let mut held = lock(&self.held);
        if !held.wanted.contains(&key) {
            return false;
        }
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        let changed = held.data.get(&key).is_none_or(|old| **old != data);
        held.data.insert(key, Arc::new(data));
        changed
    }

    /// Forgets `key`'s data (the Secret was deleted); says whether it was
    /// held.
    pub fn remove(&self, key: &SecretRef) -> bool {
        lock(&self.held).data.remove(key).is_some()
    }

    fn data(&self, namespace: &str, name: &str) -> Result<SecretData, KeyringError> {
        lock(&self.held)
            .data
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| KeyringError::SecretNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
    }

    fn tls_of(&self, namespace: &str, name: &str) -> Result<CertPem, KeyringError> {
        let data = self.data(namespace, name)?;
        let get = |key: &str| {
            data.get(key)
                .cloned()
                .ok_or_else(|| KeyringError::MissingKey {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    key: key.to_owned(),
                })
        };
        Ok((get("tls.crt")?, get("tls.key")?))
    }
}

/// The Secrets a Function names, in its namespace.
fn named_secrets(route: &FunctionRoute) -> Vec<SecretRef> {
    let access = &route.access;
    let auth = access.auth.as_ref();
    let sources = [
        auth.and_then(|a| a.api_keys.as_ref()).map(|k| &k.keys),
        auth.and_then(|a| a.jwt.as_ref())
            .and_then(|j| j.hmac_key.as_ref()),
    ];
    sources
        .into_iter()
        .flatten()
        .filter_map(|s| s.secret_name.clone())
        .chain(access.tls.as_ref().and_then(|t| t.secret_name.clone()))
        .map(|name| (route.namespace.clone(), name))
        .collect()
}

impl Keyring for SecretKeyring {
    fn values(
        &self,
        function: &FunctionKey,
        source: &KeySource,
    ) -> Result<Vec<Vec<u8>>, KeyringError> {
        let Some(name) = &source.secret_name else {
            return Err(KeyringError::Unsupported(
                "on a cluster, keys come from a Secret: set secretName".to_owned(),
            ));
        };
        let data = self.data(&function.namespace, name)?;
        match &source.key {
            Some(key) => {
                data.get(key)
                    .map(|v| vec![v.clone()])
                    .ok_or_else(|| KeyringError::MissingKey {
                        namespace: function.namespace.clone(),
                        name: name.clone(),
                        key: key.clone(),
                    })
            }
            None => Ok(data.values().cloned().collect()),
        }
    }

    fn file(&self, _: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError> {
        Err(KeyringError::Unsupported(format!(
            "jwksFile {path} is for flint dev; on a cluster set jwksUrl"
        )))
    }

    fn tls(&self, namespace: &str, name: &str) -> Result<CertPem, KeyringError> {
        self.tls_of(namespace, name)
    }

    fn default_tls(&self, _: &[String]) -> Option<Result<CertPem, KeyringError>> {
        let (namespace, name) = self.default_tls.as_ref()?;
        Some(self.tls_of(namespace, name))
    }
}

/// Reads the Secrets in `refs` now (they just became wanted), records
/// those that exist and rebuilds the gates.
pub async fn read_now(
    client: &Client,
    keyring: &SecretKeyring,
    refs: Vec<SecretRef>,
    gateway: &Gateway,
) {
    let mut changed = false;
    for (namespace, name) in refs {
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        match api.get_opt(&name).await {
            Ok(Some(secret)) => changed |= keyring.apply(&secret),
            Ok(None) => {
                tracing::warn!(%namespace, secret = %name, "a Function names a Secret that does not exist")
            }
            Err(error) => {
                tracing::warn!(%namespace, secret = %name, %error, "reading a Secret failed; the watch will bring it")
            }
        }
    }
    if changed {
        gateway.refresh_access();
    }
}

/// Keeps `keyring` current with the Secrets in `api` until the watch
/// ends, rebuilding `gateway`'s gates when a wanted one changes.
pub async fn watch(api: Api<Secret>, keyring: Arc<SecretKeyring>, gateway: Gateway) {
    let config = watcher::Config::default().fields(IGNORED_TYPES);
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => keyring.apply(&s),
            Ok(watcher::Event::Delete(s)) => {
                keyring.remove(&(s.namespace().unwrap_or_default(), s.name_any()))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => false,
            Err(error) => {
                tracing::warn!(%error, "Secret watch error; retrying");
                false
            }
        };
        if changed {
            gateway.refresh_access();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flint_api::backend::FunctionAccess;
    use flint_api::function::{ApiKeyAuth, AuthSpec, TlsSpec};
    use k8s_openapi::ByteString;

    fn route(keys: &str, cert: Option<&str>) -> FunctionRoute {
        FunctionRoute {
            namespace: "team".into(),
            name: "f".into(),
            revisions: vec![],
            traffic: vec![],
            access: FunctionAccess {
                auth: Some(AuthSpec {
                    api_keys: Some(ApiKeyAuth {
                        keys: KeySource {
                            secret_name: Some(keys.into()),
                            ..KeySource::default()
                        },
                        header: None,
                    }),
                    jwt: None,
                }),
                tls: cert.map(|c| TlsSpec {
                    secret_name: Some(c.into()),
                    redirect: false,
                }),
                ..FunctionAccess::default()
            },
        }
    }

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("team".into());
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn only_named_secrets_are_held_and_rotation_is_a_change() {
        let ring = SecretKeyring::new(None);
        let new = ring.want(&[route("keys", Some("cert"))]);
        assert_eq!(new.len(), 2);
        assert!(!ring.apply(&secret("unrelated", &[("a", "b")])));
        assert!(ring.apply(&secret("keys", &[("one", "k1")])));
        assert!(
            !ring.apply(&secret("keys", &[("one", "k1")])),
            "same data: no change"
        );
        let f = FunctionKey::new("team", "f");
        let source = KeySource {
            secret_name: Some("keys".into()),
            ..KeySource::default()
        };
        assert_eq!(ring.values(&f, &source).unwrap(), vec![b"k1".to_vec()]);
        assert!(ring.apply(&secret("keys", &[("one", "k1"), ("two", "k2")])));
        assert_eq!(ring.values(&f, &source).unwrap().len(), 2);
        // No longer named: forgotten.
        assert!(ring.want(&[]).is_empty());
        assert!(matches!(
            ring.values(&f, &source),
            Err(KeyringError::SecretNotFound { .. })
        ));
    }

    #[test]
    fn tls_secrets_need_both_keys_and_the_default_is_always_wanted() {
        let ring = SecretKeyring::new(Some(("flint-system".into(), "wildcard".into())));
        assert_eq!(ring.want(&[route("keys", Some("cert"))]).len(), 2);
        assert!(ring.apply(&secret("cert", &[("tls.crt", "C")])));
        let err = ring.tls("team", "cert").unwrap_err();
        assert_eq!(err.to_string(), "Secret team/cert has no key \"tls.key\"");
        assert!(matches!(
            ring.default_tls(&[]),
            Some(Err(KeyringError::SecretNotFound { .. }))
        ));
        let mut default = secret("wildcard", &[("tls.crt", "C"), ("tls.key", "K")]);
        default.metadata.namespace = Some("flint-system".into());
        assert!(ring.apply(&default));
        assert_eq!(
            ring.default_tls(&[]).unwrap().unwrap(),
            (b"C".to_vec(), b"K".to_vec())
        );
    }
}
