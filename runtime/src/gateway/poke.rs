//! The cluster-mode poke sink: POSTs each [`ScalePoke`] to the autoscaler's
//! poke endpoint, fire-and-forget, at most one in flight per revision, with
//! the control token (`Authorization: Bearer …`) once the gateway has one:
//! the autoscaler refuses pokes without it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flint_api::backend::{PokeSink, RevisionKey};
use flint_api::drain::ControlToken;
use flint_api::poke::{POKE_PATH, ScalePoke};
use flint_api::sync::lock;
use http::{Method, Request, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why the poke sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PokeError {
    /// The autoscaler URL is not an absolute `http://` URL.
    #[error("autoscaler URL {url:?} is not an absolute http:// URL")]
    BadUrl {
        /// The URL given.
        url: String,
    },
}

/// Pokes the autoscaler over HTTP.
#[derive(Clone)]
pub struct HttpPokeSink {
    target: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    pending: Arc<Mutex<HashSet<RevisionKey>>>,
    /// The control token sent with every poke, once the gateway has one.
    token: Arc<OnceLock<ControlToken>>,
}

impl std::fmt::Debug for HttpPokeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPokeSink")
            .field("target", &self.target)
            .field("authenticated", &self.token.get().is_some())
            .finish()
    }
}

impl HttpPokeSink {
    /// A sink posting to `<autoscaler_url>/v1/poke`.
    pub fn new(autoscaler_url: &str) -> Result<Self, PokeError> {
        let base = autoscaler_url.trim_end_matches('/');
        let target: Uri = format!("{base}{POKE_PATH}")
            .parse()
            .map_err(|_| PokeError::BadUrl {
                url: autoscaler_url.to_owned(),
            })?;
        if target.scheme_str() != Some("http") || target.authority().is_none() {
            return Err(PokeError::BadUrl {
                url: autoscaler_url.to_owned(),
            });
        }
        Ok(Self {
            target,
            client: Client::builder(TokioExecutor::new()).build_http(),
            pending: Arc::new(Mutex::new(HashSet::new())),
            token: Arc::new(OnceLock::new()),
        })
    }

    /// Where pokes go.
    pub fn target(&self) -> &Uri {
        &self.target
    }

    /// Sends the poke to every address the autoscaler's host resolves to:
    /// behind a headless Service that is every operator replica, and only the
    /// leader listens, so the poke reaches it whichever replica leads.
    async fn post(&self, poke: ScalePoke) -> Result<http::StatusCode, String> {
        let body = Bytes::from(serde_json::to_vec(&poke).map_err(|e| e.to_string())?);
        let authority = self.target.authority().ok_or("no authority")?;
        let port = self.target.port_u16().unwrap_or(80);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((authority.host(), port))
            .await
            .map_err(|e| format!("resolving {authority}: {e}"))?
            .collect();
        let sends = addrs
            .iter()
            .map(|addr| self.post_to(*addr, authority.as_str(), body.clone()));
        let results = futures::future::join_all(sends).await;
        let mut last = Err(format!("{authority} resolved to no address"));
        for result in results {
            match result {
                Ok(status) if status.is_success() => return Ok(status),
                other => last = other,
            }
        }
        last
    }

    async fn post_to(
        &self,
        addr: std::net::SocketAddr,
        authority: &str,
        body: Bytes,
    ) -> Result<http::StatusCode, String> {
        let uri: Uri = format!("http://{addr}{POKE_PATH}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = self.token.get() {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(resp.status())
    }
}

impl PokeSink for HttpPokeSink {
    /// Sends `token` with every later poke; only the first token counts.
    fn present(&self, token: &ControlToken) {
        let _ = self.token.set(token.clone());
    }

    fn poke(&self, poke: ScalePoke) {
        let key = RevisionKey::new(&poke.namespace, &poke.function, &poke.revision);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(revision = %key, "no async runtime; poke dropped");
            return;
        };
        let first = lock(&self.pending).insert(key.clone());
        if !first {
            // A poke for this revision is on its way already.
            return;
        }
        let sink = self.clone();
        handle.spawn(async move {
            match sink.post(poke).await {
                Ok(status) if status.is_success() => {
                    tracing::debug!(revision = %key, "autoscaler poked")
                }
                Ok(status) => {
                    tracing::warn!(revision = %key, %status, "autoscaler refused the poke")
                }
                Err(error) => {
                    tracing::warn!(revision = %key, %error, "poking the autoscaler failed")
                }
            }
            lock(&sink.pending).remove(&key);
        });
    }
}
