//! Issuers' JSON Web Key Sets: parsed into verification keys ([`KeySet`]),
//! fetched over HTTPS and cached per URL ([`JwksRegistry`]), refetched when
//! the cache expires or a token names an unknown `kid`, at most once per
//! [`JwksSettings::min_refresh`] whatever the traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use flint_api::function::JwtAlgorithm;
use flint_api::sync::lock;
use http::{HeaderMap, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::failure::{AuthConfigError, AuthFailure};

/// How long a fetched key set is used without a `Cache-Control: max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// The least time a fetched key set is kept, whatever the issuer says.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// The most time a fetched key set is kept, whatever the issuer says.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

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

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

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
            refresh: tokio::sync::Mutex::new(()),
        });
        caches.insert(url.to_owned(), Arc::downgrade(&cache));
        Ok(cache)
    }
}

/// The rustls client (ring provider, the system's roots and the extra
/// ones), https-only unless plain http is allowed; HTTP/1.1, no redirects.
fn https_client(settings: &JwksSettings) -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "reading the system's CA certificates");
    }
    let (_, skipped) = roots.add_parsable_certificates(native.certs);
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "system CA certificates that do not parse were skipped"
        );
    }
    if let Some(pem) = &settings.extra_roots_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            match cert
                .map_err(|e| e.to_string())
                .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
            {
                Ok(()) => {}
                Err(error) => tracing::warn!(%error, "an extra JWKS root certificate was skipped"),
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let connector = if settings.allow_http {
        builder.https_or_http().enable_http1().build()
    } else {
        builder.https_only().enable_http1().build()
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector))
}

/// Fetches key sets, bounded in time and size.
struct Fetcher {
    client: Result<HttpsClient, String>,
    timeout: Duration,
    max_bytes: usize,
    min_refresh: Duration,
}

/// Why a fetch failed (logged, never shown to clients).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("no HTTPS client: {0}")]
    NoClient(String),
    #[error("request: {0}")]
    Request(String),
    #[error("answered {0} (redirects are not followed)")]
    Status(StatusCode),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body: {0}")]
    Body(String),
    #[error("took longer than {0:?}")]
    Timeout(Duration),
    #[error("not a JSON Web Key Set: {0}")]
    Parse(String),
}

impl Fetcher {
    /// GETs `url` and parses it, with how long it may be kept.
    async fn fetch(&self, url: &Uri) -> Result<(KeySet, Duration), FetchError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| FetchError::NoClient(e.clone()))?;
        let request = Request::get(url.clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(header::USER_AGENT, "flint-gateway")
            .body(Empty::new())
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let work = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| FetchError::Request(error_chain(&e)))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status()));
            }
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.max_bytes as u64) {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            let max_age = cache_lifetime(response.headers());
            let body = Limited::new(response.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(self.max_bytes)
                    } else {
                        FetchError::Body(e.to_string())
                    }
                })?
                .to_bytes();
            let keys = KeySet::parse(&body).map_err(FetchError::Parse)?;
            Ok((keys, max_age))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }
}

/// An error with its sources, for the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How long a fetched key set is kept: its `Cache-Control: max-age`
/// (`no-cache` and `no-store` count as zero) clamped to
/// [[`MIN_MAX_AGE`], [`MAX_MAX_AGE`]]; [`DEFAULT_MAX_AGE`] without one.
pub fn cache_lifetime(headers: &HeaderMap) -> Duration {
    let mut age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                age = Some(0);
            } else if name.eq_ignore_ascii_case("max-age")
                && age != Some(0)
                && let Ok(seconds) = arg.trim().trim_matches('"').parse::<u64>()
            {
                age = Some(seconds);
            }
        }
    }
    age.map_or(DEFAULT_MAX_AGE, |s| {
        Duration::from_secs(s).clamp(MIN_MAX_AGE, MAX_MAX_AGE)
    })
}

/// What a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind verifies `alg` (never an HMAC one: a key
    /// set holds public keys, and a public key must never serve as an HMAC
    /// secret).
    fn fits(self, alg: JwtAlgorithm) -> bool {
        use JwtAlgorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verification key of a key set.
struct KeyEntry {
    kid: Option<String>,
    /// The key's declared `alg`, if any: then only that algorithm.
    alg: Option<String>,
    kind: KeyKind,
    key: DecodingKey,
}

/// A key set's verification keys. Keys that cannot verify signatures
/// (encryption keys, symmetric `oct` keys, unknown types or curves) are
/// left out.
#[derive(Default)]
pub(super) struct KeySet {
    keys: Vec<KeyEntry>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.kind)))
            .finish()
    }
}

/// A key set's key as published (RFC 7517), only the fields used.
#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// The index of the key to verify with.
    Found(usize),
    /// No key has the token's `kid` (for its algorithm): a newer key set
    /// may have it.
    Missing,
    /// The token names no `kid` and several keys fit: refetching will not
    /// help.
    Ambiguous,
}

impl KeySet {
    /// Parses a JSON Web Key Set, keeping the keys that verify signatures.
    pub(super) fn parse(document: &[u8]) -> Result<Self, String> {
        let raw: RawKeySet = serde_json::from_slice(document).map_err(|e| e.to_string())?;
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<RawKey>(value).ok())
            .filter_map(KeyEntry::from_raw)
            .collect();
        Ok(Self { keys })
    }

    /// How many verification keys the set holds.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key to verify a token signed with `alg` naming `kid`. Without a
    /// `kid`, the one key that fits `alg`, if only one does.
    pub(super) fn find(&self, kid: Option<&str>, alg: JwtAlgorithm) -> Lookup {
        let alg_name = super::jwt::alg_name(alg);
        let fits =
            |k: &KeyEntry| k.kind.fits(alg) && k.alg.as_deref().is_none_or(|a| a == alg_name);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .position(|k| k.kid.as_deref() == Some(kid) && fits(k))
                .map_or(Lookup::Missing, Lookup::Found),
            None => {
                let mut candidates = self.keys.iter().enumerate().filter(|(_, k)| fits(k));
                match (candidates.next(), candidates.next()) {
                    (Some((i, _)), None) => Lookup::Found(i),
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                    (None, _) => Lookup::Missing,
                }
            }
        }
    }

    /// The key at `index` (from [`KeySet::find`]).
    pub(super) fn key(&self, index: usize) -> Option<&DecodingKey> {
        self.keys.get(index).map(|k| &k.key)
    }
}

impl KeyEntry {
    fn from_raw(raw: RawKey) -> Option<Self> {
        if raw.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        if raw
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return None;
        }
        let (kind, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("RSA", _) => (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?,
            ),
            ("EC", Some(crv @ ("P-256" | "P-384"))) => (
                if crv == "P-256" {
                    KeyKind::P256
                } else {
                    KeyKind::P384
                },
                DecodingKey::from_ec_components(raw.x.as_deref()?, raw.y.as_deref()?).ok()?,
            ),
            ("OKP", Some("Ed25519")) => (
                KeyKind::Ed25519,
                DecodingKey::from_ed_components(raw.x.as_deref()?).ok()?,
            ),
            // `oct` (symmetric) keys are never taken from a key set.
            _ => return None,
        };
        Some(Self {
            kid: raw.kid,
            alg: raw.alg,
            kind,
            key,
        })
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
    generation: u64,
}

/// One key-set URL's cache, shared by every Function that names it.
pub(super) struct JwksCache {
    url: Uri,
    fetcher: Arc<Fetcher>,
    state: ArcSwap<CacheState>,
    /// Held while fetching: concurrent requests share one fetch.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.load();
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .field("keys", &state.keys.as_ref().map(|k| k.len()))
            .field("fetches", &state.generation)
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
        &self,
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
                let Ok(guard) = self.refresh.try_lock() else {
                    return Ok((Arc::clone(keys), i));
                };
                let state = self.refresh_locked(guard, state.generation).await;
                return settle(&state, kid, alg);
            }
            Some((_, Lookup::Ambiguous)) => {
                return Err(AuthFailure::UnknownKey(
                    "the token names no kid and several of the issuer's keys fit",
                ));
            }
            Some((_, Lookup::Missing)) | None if !may_fetch => return settle(&state, kid, alg),
            Some((_, Lookup::Missing)) | None => {}
        }
        let guard = self.refresh.lock().await;
        let state = self.refresh_locked(guard, state.generation).await;
        settle(&state, kid, alg)
    }

    /// Fetches the key set, unless a fetch completed since the caller saw
    /// generation `seen` (it waited for that one).
    async fn refresh_locked(
        &self,
        _guard: tokio::sync::MutexGuard<'_, ()>,
        seen: u64,
    ) -> Arc<CacheState> {
        let current = self.state.load_full();
        if current.generation != seen {
            return current;
        }
        let started = Instant::now();
        let next = match self.fetcher.fetch(&self.url).await {
            Ok((keys, max_age)) => {
                tracing::debug!(url = %self.url, keys = keys.len(), max_age_s = max_age.as_secs(), "JWKS fetched");
                CacheState {
                    keys: Some(Arc::new(keys)),
                    expires: Some(Instant::now() + max_age),
                    attempted: Some(started),
                    generation: current.generation + 1,
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
                    generation: current.generation + 1,
                }
            }
        };
        let next = Arc::new(next);
        self.state.store(Arc::clone(&next));
        next
    }
}

/// The answer from `state` without fetching again.
fn settle(
    state: &CacheState,
    kid: Option<&str>,
    alg: JwtAlgorithm,
) -> Result<(Arc<KeySet>, usize), AuthFailure> {
    let Some(keys) = &state.keys else {
        return Err(AuthFailure::JwksUnavailable);
    };
    match keys.find(kid, alg) {
        Lookup::Found(i) => Ok((Arc::clone(keys), i)),
        Lookup::Missing => Err(AuthFailure::UnknownKey(
            "no key of the issuer matches the token's kid and algorithm",
        )),
        Lookup::Ambiguous => Err(AuthFailure::UnknownKey(
            "the token names no kid and several of the issuer's keys fit",
        )),
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
    /// The key set holding the key for (`kid`, `alg`), with its index.
    pub(super) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: JwtAlgorithm,
    ) -> Result<(Arc<KeySet>, usize), AuthFailure> {
        match self {
            Self::Local(keys) => match keys.find(kid, alg) {
                Lookup::Found(i) => Ok((Arc::clone(keys), i)),
                Lookup::Missing => Err(AuthFailure::UnknownKey(
                    "no key of the issuer matches the token's kid and algorithm",
                )),
                Lookup::Ambiguous => Err(AuthFailure::UnknownKey(
                    "the token names no kid and several of the issuer's keys fit",
                )),
            },
            Self::Remote(cache) => cache.key_for(kid, alg).await,
            Self::Unavailable => Err(AuthFailure::JwksUnavailable),
        }
    }
}
