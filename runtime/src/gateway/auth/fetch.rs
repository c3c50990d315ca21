//! Fetching a key set: one HTTPS GET bounded in time and size, no
//! redirects, and how long the answer may be cached.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::jwks::JwksSettings;
use super::keyset::KeySet;

/// How long a fetched key set is used without a `Cache-Control: max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// The least time a fetched key set is kept, whatever the issuer says.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// The most time a fetched key set is kept, whatever the issuer says.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

pub(super) type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The rustls client (ring provider, the system's roots and the extra
/// ones), https-only unless plain http is allowed; HTTP/1.1, no redirects.
pub(super) fn https_client(settings: &JwksSettings) -> Result<HttpsClient, String> {
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
pub(super) struct Fetcher {
    pub(super) client: Result<HttpsClient, String>,
    pub(super) timeout: Duration,
    pub(super) max_bytes: usize,
    pub(super) min_refresh: Duration,
}

/// Why a fetch failed (logged, never shown to clients).
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
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
    pub(super) async fn fetch(&self, url: &Uri) -> Result<(KeySet, Duration), FetchError> {
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
