//! Asking a peer gateway for slots: one short POST on its admin port with
//! the control token. A peer that is slow, gone or refusing costs one
//! round of [`ASK_TIMEOUT`] at most, and admission goes on meanwhile with
//! the slots this gateway has.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flint_api::drain::ControlToken;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::wire::{CAPACITY_PATH, CapacityAsk, CapacityGrant, MAX_BODY_BYTES};

/// The longest a peer may take to answer an ask, connection included.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(250);
/// The longest a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// Why an ask got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The ask could not be encoded or sent.
    #[error("building the ask: {0}")]
    Build(String),
    /// The peer did not answer within [`ASK_TIMEOUT`].
    #[error("no answer within {}ms", ASK_TIMEOUT.as_millis())]
    Timeout,
    /// The connection failed.
    #[error("request failed: {0}")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The peer answered with another status than 200.
    #[error("answered {0}")]
    Status(http::StatusCode),
    /// The answer's body could not be read, or was too large.
    #[error("reading the answer: {0}")]
    Body(String),
    /// The answer was not a grant.
    #[error("the answer is not a grant: {0}")]
    Decode(#[source] serde_json::Error),
}

impl AskError {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Build(_) => "build",
            Self::Timeout => "timeout",
            Self::Request(_) => "request",
            Self::Status(_) => "status",
            Self::Body(_) => "body",
            Self::Decode(_) => "decode",
        }
    }
}

/// A client for peers' admin ports, pooled.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Full<Bytes>>,
    bearer: String,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client presenting `token`.
    pub fn new(token: &ControlToken) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            bearer: format!("Bearer {}", token.expose()),
        }
    }

    /// Asks `peer` for slots, within [`ASK_TIMEOUT`].
    pub async fn ask(
        &self,
        peer: SocketAddr,
        ask: &CapacityAsk,
    ) -> Result<CapacityGrant, AskError> {
        match tokio::time::timeout(ASK_TIMEOUT, self.send(peer, ask)).await {
            Ok(answer) => answer,
            Err(_) => Err(AskError::Timeout),
        }
    }

    async fn send(&self, peer: SocketAddr, ask: &CapacityAsk) -> Result<CapacityGrant, AskError> {
        let body = serde_json::to_vec(ask).map_err(|e| AskError::Build(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{peer}{CAPACITY_PATH}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, &self.bearer)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AskError::Build(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(AskError::Request)?;
        if resp.status() != http::StatusCode::OK {
            return Err(AskError::Status(resp.status()));
        }
        let bytes = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| AskError::Body(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(AskError::Decode)
    }
}
