//! Issuers' key sets, cached per URL ([`JwksRegistry`]) and refetched
//! when the cache expires or a token names an unknown `kid`, at most once
//! per [`JwksSettings::min_refresh`] whatever the traffic, one fetch shared
//! by every request waiting for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use flint_api::function::JwtAlgorithm;
use flint_api::sync::lock;
use http::Uri;

use super::failure::{AuthConfigError, AuthFailure};
use super::fetch::{Fetcher, https_client};
use super::keyset::{AMBIGUOUS, KeySet, Lookup, lookup};

/// How the gateway fetches key sets.
#[derive(Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// Whether plain `http://` key-set URLs are accepted: false on
    /// clusters (a key set fetched in the clear can be replaced by anyone
    /// on the path), true in `flint dev` and tests.
    pub allow_http: bool,
    /// The least time between two fetches of one URL: an unknown `kid`
    /// refetches at most this often, so random `kid`s cannot turn the
    /// gateway into a flood against the issuer.
    pub min_refresh: Duration,
    /// The most time one fetch may take, connection and body included.
    pub timeout: Duration,
    /// The largest key set accepted, in bytes.
    pub max_bytes: usize,
    /// PEM certificates trusted besides the system's roots (an issuer
    /// inside the cluster with a private CA).
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for JwksSettings {
    /// The cluster's settings: https only, 10 s between refetches, 5 s per
    /// fetch, 1 MiB per key set, the system's roots.
    fn default() -> Self {
        Self {
            allow_http: false,
            min_refresh: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            extra_roots_pem: None,
        }
    }
}

impl std::fmt::Debug for JwksSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSettings")
            .field("allow_http", &self.allow_http)
            .field("min_refresh", &self.min_refresh)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("extra_roots", &self.extra_roots_pem.is_some())
            .finish()
    }
}

/// The gateway's key-set caches, one per URL, shared by every Function
/// that names the URL and surviving routing-table rebuilds (a rebuild
/// finds the cache the previous table holds), with the HTTPS client that
/// fills them. Cheap to clone.
#[derive(Clone)]
pub struct JwksRegistry {
    inner: Arc<Registry>,
}

struct Registry {
    fetcher: Arc<Fetcher>,
    allow_http: bool,
    /// Held weakly: a URL no Function names any more is forgotten with the
    /// last table that named it.
    caches: Mutex<HashMap<String, Weak<JwksCache>>>,
}

impl std::fmt::Debug for JwksRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksRegistry")
            .field("allow_http", &self.inner.allow_http)
            .field("urls", &lock(&self.inner.caches).len())
            .finish()
    }
}

impl JwksRegistry {
    /// A registry fetching as `settings` say. Certificates in
    /// `extra_roots_pem` that do not parse are logged and skipped; if no
    /// TLS client can be built at all, it is logged and every fetch fails
    /// (tokens needing a fetched key set are refused, `jwks_unavailable`).
    pub fn new(settings: JwksSettings) -> Self {
        let client = https_client(&settings);
        if let Err(error) = &client {
            tracing::error!(%error, "no HTTPS client for fetching JWKS; JWT key sets cannot be fetched");
        }
        Self {
            inner: Arc::new(Registry {
                fetcher: Arc::new(Fetcher {
                    client,
                    timeout: settings.timeout,
                    max_bytes: settings.max_bytes,
                    min_refresh: settings.min_refresh,
                }),
                allow_http: settings.allow_http,
                caches: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cache of `url`'s key set, made on first use. Refuses URLs that
    /// are not absolute `https://` (or `http://` when allowed), or that
    /// carry credentials.
    pub(super) fn cache(&self, url: &str) -> Result<Arc<JwksCache>, AuthConfigError> {
        let bad = |reason| AuthConfigError::BadJwksUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if self.inner.allow_http => {}
            Some("http") => {
                return Err(bad(
                    "is not https (plain http is allowed only in flint dev)",
                ));
            }
            _ => return Err(bad("is not an absolute https URL")),
        }
        let Some(authority) = uri.authority() else {
            return Err(bad("has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad("must not carry credentials"));
        }
        let mut caches = lock(&self.inner.caches);
        caches.retain(|_, cache| cache.strong_count() > 0);
        if let Some(cache) = caches.get(url).and_then(Weak::upgrade) {
            return Ok(cache);
        }
        let cache = Arc::new(JwksCache {
            url: uri,
            fetcher: Arc::clone(&self.inner.fetcher),
            state: ArcSwap::from_pointee(CacheState::default()),
            refresh: Arc::new(tokio::sync::Mutex::new(())),
        });
        caches.insert(url.to_owned(), Arc::downgrade(&cache));
        Ok(cache)
    }
}

/// One URL's cached key set and what is known of its fetches.
#[derive(Default)]
struct CacheState {
    /// The last key set fetched, kept when later fetches fail.
    keys: Option<Arc<KeySet>>,
    /// When the key set is due to be refetched.
    expires: Option<Instant>,
    /// When the last fetch started, whether it succeeded or not.
    attempted: Option<Instant>,
    /// Counts fetches: a request that waited for a fetch sees it changed
    /// and does not fetch again.
    fetches: u64,
}

/// One key-set URL's cache, shared by every Function that names it.
pub(super) struct JwksCache {
    url: Uri,
    fetcher: Arc<Fetcher>,
    state: ArcSwap<CacheState>,
    /// Held while fetching: concurrent requests share one fetch.
    refresh: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.load();
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .field("keys", &state.keys.as_ref().map(|k| k.len()))
            .field("fetches", &state.fetches)
            .finish()
    }
}

impl JwksCache {
    /// The key set holding the key for (`kid`, `alg`), with the key's index.
    /// A fresh key set that has the key answers at once, without awaiting
    /// or locking. Otherwise (nothing fetched yet, the cache expired, or
    /// the `kid` is unknown) the key set is fetched again, unless a fetch
    /// started less than `min_refresh` ago; concurrent requests share one
    /// fetch, and an expired key set that has the key is used while
    /// another request refreshes it. A failed fetch keeps the last good
    /// key set.
    pub(super) async fn key_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: JwtAlgorithm,
    ) -> Result<(Arc<KeySet>, usize), AuthFailure> {
        let state = self.state.load_full();
        let now = Instant::now();
        let found = state.keys.as_ref().map(|keys| (keys, keys.find(kid, alg)));
        let fresh = state.expires.is_some_and(|e| now < e);
        let may_fetch = state
            .attempted
            .is_none_or(|at| now.saturating_duration_since(at) >= self.fetcher.min_refresh);
        match found {
            Some((keys, Lookup::Found(i))) if fresh || !may_fetch => {
                return Ok((Arc::clone(keys), i));
            }
            Some((keys, Lookup::Found(i))) => {
                // Expired: refresh, unless another request already is.
                let Ok(guard) = Arc::clone(&self.refresh).try_lock_owned() else {
                    return Ok((Arc::clone(keys), i));
                };
                let state = self.refresh_locked(guard, state.fetches).await;
                return settle(&state, kid, alg);
            }
            Some((_, Lookup::Ambiguous)) => return Err(AuthFailure::UnknownKey(AMBIGUOUS)),
            Some((_, Lookup::Missing)) | None if !may_fetch => return settle(&state, kid, alg),
            Some((_, Lookup::Missing)) | None => {}
        }
        let guard = Arc::clone(&self.refresh).lock_owned().await;
        let state = self.refresh_locked(guard, state.fetches).await;
        settle(&state, kid, alg)
    }

    /// The generation of the key set in use (see `KeySet::generation`):
    /// changes whenever a different key set is installed. Reads the
    /// current state without awaiting or locking.
    pub(super) fn generation(&self) -> Option<u64> {
        self.state.load().keys.as_ref().map(|k| k.generation())
    }

    /// Fetches the key set, unless a fetch completed since the caller saw
    /// fetch count `seen` (it waited for that one). The fetch runs as its
    /// own task holding the lock: a client that goes away does not cancel
    /// it, so the requests queued behind it never start another.
    async fn refresh_locked(
        self: &Arc<Self>,
        guard: tokio::sync::OwnedMutexGuard<()>,
        seen: u64,
    ) -> Arc<CacheState> {
        let current = self.state.load_full();
        if current.fetches != seen {
            return current;
        }
        let cache = Arc::clone(self);
        let fetch = tokio::spawn(async move {
            let next = Arc::new(cache.fetch_after(&current).await);
            cache.state.store(Arc::clone(&next));
            drop(guard);
            next
        });
        match fetch.await {
            Ok(next) => next,
            Err(_) => self.state.load_full(),
        }
    }

    /// The state after one fetch: the new key set, or the last good one
    /// when the fetch failed.
    async fn fetch_after(&self, current: &CacheState) -> CacheState {
        let started = Instant::now();
        match self.fetcher.fetch(&self.url).await {
            Ok((keys, max_age)) => {
                tracing::debug!(url = %self.url, keys = keys.len(), max_age_s = max_age.as_secs(), "JWKS fetched");
                // The same document again keeps its set, so tokens verified
                // against it stay remembered (see `KeySet::generation`).
                let keys = match &current.keys {
                    Some(old) if old.same_document(&keys) => Arc::clone(old),
                    _ => Arc::new(keys),
                };
                CacheState {
                    keys: Some(keys),
                    expires: Some(Instant::now() + max_age),
                    attempted: Some(started),
                    fetches: current.fetches + 1,
                }
            }
            Err(error) => {
                tracing::warn!(
                    url = %self.url,
                    %error,
                    keeping_last_keys = current.keys.is_some(),
                    "JWKS fetch failed"
                );
                CacheState {
                    keys: current.keys.clone(),
                    expires: current.expires,
                    attempted: Some(started),
                    fetches: current.fetches + 1,
                }
            }
        }
    }
}

/// The answer from `state` without fetching again.
fn settle(
    state: &CacheState,
    kid: Option<&str>,
    alg: JwtAlgorithm,
) -> Result<(Arc<KeySet>, usize), AuthFailure> {
    match &state.keys {
        Some(keys) => lookup(keys, kid, alg),
        None => Err(AuthFailure::JwksUnavailable),
    }
}

/// Where a Function's asymmetric keys come from.
#[derive(Debug, Clone)]
pub(super) enum KeySource {
    /// A key set given whole (`flint dev`'s `jwksFile`).
    Local(Arc<KeySet>),
    /// A key set fetched from its URL.
    Remote(Arc<JwksCache>),
    /// A key set named (a file) but not given: every token is refused.
    Unavailable,
}

impl KeySource {
    /// The generation of the key set tokens verify against now (`None`:
    /// none).
    pub(super) fn generation(&self) -> Option<u64> {
        match self {
            Self::Local(keys) => Some(keys.generation()),
            Self::Remote(cache) => cache.generation(),
            Self::Unavailable => None,
        }
    }

    /// The key set holding the key for (`kid`, `alg`), with its index.
    pub(super) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: JwtAlgorithm,
    ) -> Result<(Arc<KeySet>, usize), AuthFailure> {
        match self {
            Self::Local(keys) => lookup(keys, kid, alg),
            Self::Remote(cache) => cache.key_for(kid, alg).await,
            Self::Unavailable => Err(AuthFailure::JwksUnavailable),
        }
    }
}
