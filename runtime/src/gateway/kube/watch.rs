//! The watch loops: Functions and EndpointSlices, through kube-runtime
//! watchers (which relist and resume after errors with backoff), fed to the
//! gateway one Function at a time (a relist as a whole list, which the
//! gateway compares with the routes it has).

use std::collections::{BTreeMap, HashMap};

use flint_api::Function;
use flint_api::backend::{Endpoint, FunctionRoute, RevisionKey};
use flint_api::names::LABEL_REVISION;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use super::secrets::{self, SecretKeyring};
use super::translate;
use crate::gateway::Gateway;

/// Why a watch stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The Function watch stream ended.
    #[error("the Function watch ended")]
    FunctionsEnded,
    /// The EndpointSlice watch stream ended.
    #[error("the EndpointSlice watch ended")]
    SlicesEnded,
    /// The Secret watch stream ended.
    #[error("the Secret watch ended")]
    SecretsEnded,
}

/// Watches Functions and EndpointSlices (in `namespace`, or all namespaces)
/// and keeps `gateway`'s routes and endpoints in step, and follows the
/// other gateways its configuration names ([`super::peers::follow`]).
/// Runs until a watch stream ends.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    gateway: Gateway,
    keyring: Arc<SecretKeyring>,
) -> Result<(), WatchError> {
    let (functions, slices, secrets): (Api<Function>, Api<EndpointSlice>, Api<Secret>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    let fed = Fed {
        client: client.clone(),
        gateway: gateway.clone(),
        keyring: Arc::clone(&keyring),
    };
    tokio::select! {
        r = watch_functions(functions, fed) => r,
        r = watch_slices(slices, gateway.clone()) => r,
        () = secrets::watch(secrets, keyring, gateway.clone()) => Err(WatchError::SecretsEnded),
        () = super::peers::follow(client, gateway) => Ok(()),
    }
}

/// What the Function watch feeds: the gateway's routes, and the keyring
/// the Secrets they name (read at once when newly named).
struct Fed {
    client: Client,
    gateway: Gateway,
    keyring: Arc<SecretKeyring>,
}

async fn watch_functions(api: Api<Function>, fed: Fed) -> Result<(), WatchError> {
    let mut known: BTreeMap<(String, String), FunctionRoute> = BTreeMap::new();
    let mut relist: Option<BTreeMap<(String, String), FunctionRoute>> = None;
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "Function watch error; retrying");
                continue;
            }
        };
        let key = |f: &Function| (f.namespace().unwrap_or_default(), f.name_any());
        // Whether the Secrets the routes name may have changed.
        let names_secrets = |r: &FunctionRoute| r.access.auth.is_some() || r.access.tls.is_some();
        let secrets_changed = match event {
            watcher::Event::Init => {
                relist = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(f) => {
                if let (Some(r), Some(route)) = (relist.as_mut(), translate::function_route(&f)) {
                    r.insert(key(&f), route);
                }
                false
            }
            watcher::Event::InitDone => {
                known = relist.take().unwrap_or_default();
                fed.gateway.set_routes(known.values().cloned().collect());
                true
            }
            watcher::Event::Apply(f) => match translate::function_route(&f) {
                Some(route) if known.get(&key(&f)) != Some(&route) => {
                    let old = known.insert(key(&f), route.clone());
                    let secrets = names_secrets(&route) || old.as_ref().is_some_and(names_secrets);
                    fed.gateway.upsert_route(route);
                    secrets
                }
                _ => false,
            },
            watcher::Event::Delete(f) => {
                let (namespace, name) = key(&f);
                match known.remove(&(namespace.clone(), name.clone())) {
                    Some(old) => {
                        fed.gateway.remove_route(&namespace, &name);
                        names_secrets(&old)
                    }
                    None => false,
                }
            }
        };
        if secrets_changed {
            let named = fed.keyring.want(known.values());
            if !named.is_empty() {
                secrets::read_now(&fed.client, &fed.keyring, named, &fed.gateway).await;
            }
        }
    }
    Err(WatchError::FunctionsEnded)
}

async fn watch_slices(api: Api<EndpointSlice>, gateway: Gateway) -> Result<(), WatchError> {
    // Per revision, the endpoints of each of its slices (a revision may have several).
    let mut by_revision: HashMap<RevisionKey, BTreeMap<String, Vec<Endpoint>>> = HashMap::new();
    let mut relist: Option<HashMap<RevisionKey, BTreeMap<String, Vec<Endpoint>>>> = None;
    let config = watcher::Config::default().labels(LABEL_REVISION);
    let mut events = watcher(api, config).default_backoff().into_stream().boxed();
    loop {
        let event = match events.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return Err(WatchError::SlicesEnded),
            Err(err) => {
                tracing::warn!(error = %err, "EndpointSlice watch error; retrying");
                continue;
            }
        };
        let mut touched: Vec<RevisionKey> = Vec::new();
        match event {
            watcher::Event::Init => relist = Some(HashMap::new()),
            watcher::Event::InitApply(slice) => {
                if let (Some(r), Some(rev)) = (relist.as_mut(), translate::slice_revision(&slice)) {
                    r.entry(rev)
                        .or_default()
                        .insert(slice.name_any(), translate::slice_endpoints(&slice));
                }
            }
            watcher::Event::InitDone => {
                let next = relist.take().unwrap_or_default();
                touched.extend(
                    by_revision
                        .keys()
                        .filter(|k| !next.contains_key(*k))
                        .cloned(),
                );
                touched.extend(next.keys().cloned());
                by_revision = next;
            }
            watcher::Event::Apply(slice) => {
                if let Some(rev) = translate::slice_revision(&slice) {
                    by_revision
                        .entry(rev.clone())
                        .or_default()
                        .insert(slice.name_any(), translate::slice_endpoints(&slice));
                    touched.push(rev);
                }
            }
            watcher::Event::Delete(slice) => {
                if let Some(rev) = translate::slice_revision(&slice) {
                    if let Some(slices) = by_revision.get_mut(&rev) {
                        slices.remove(&slice.name_any());
                    }
                    touched.push(rev);
                }
            }
        }
        for rev in touched {
            let endpoints: Vec<Endpoint> = by_revision
                .get(&rev)
                .map(|s| s.values().flatten().cloned().collect())
                .unwrap_or_default();
            if endpoints.is_empty() {
                by_revision.remove(&rev);
            }
            gateway.set_endpoints(&rev, endpoints);
        }
    }
}
