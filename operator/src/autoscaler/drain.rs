//! Asking the gateways to drain replicas before a scale-down removes them
//! (see [`flint_api::drain`]): every gateway takes the replicas out of
//! rotation and answers once it has nothing in flight on them.

use std::time::Duration;

use bytes::Bytes;
use flint_api::drain::{ControlToken, DRAIN_PATH, DrainReply, DrainRequest, RELEASE_PATH};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Time allowed on top of a drain's own timeout for the gateway to answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// Why one gateway's drain did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The request could not be made or answered.
    #[error("{url}: {reason}")]
    Http {
        /// The gateway URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The gateway refused (e.g. 401: the tokens differ).
    #[error("{url}: answered {status}: {body}")]
    Status {
        /// The gateway URL.
        url: String,
        /// The status code.
        status: u16,
        /// The answer's text.
        body: String,
    },
}

/// Posts drains and releases to gateways' admin endpoints with the control token.
#[derive(Clone)]
pub struct Drainer {
    client: Client<HttpConnector, Full<Bytes>>,
    token: ControlToken,
}

impl std::fmt::Debug for Drainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drainer").finish_non_exhaustive()
    }
}

impl Drainer {
    /// A drainer presenting `token`.
    pub fn new(token: ControlToken) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new())
                .build(super::source::http::connector(Duration::from_secs(1))),
            token,
        }
    }

    async fn post(
        &self,
        base: &str,
        path: &str,
        req: &DrainRequest,
        limit: Duration,
    ) -> Result<Bytes, DrainError> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let fail = |reason: String| DrainError::Http {
            url: url.clone(),
            reason,
        };
        let body = serde_json::to_vec(req).map_err(|e| fail(e.to_string()))?;
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose()),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(DrainError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).trim().to_owned(),
                });
            }
            Ok(bytes)
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {limit:?}")))?
    }

    /// Drains `req.pods` on every gateway in `gateways` at once; the most
    /// any one of them still had in flight when it answered. A gateway
    /// that fails counts as drained (it cannot route to the pods either
    /// way once they go) and is logged.
    pub async fn drain_all(&self, gateways: &[String], req: &DrainRequest) -> u32 {
        let limit = Duration::from_secs(u64::from(req.timeout_seconds)) + ANSWER_MARGIN;
        let answers = futures::future::join_all(
            gateways
                .iter()
                .map(|g| self.post(g, DRAIN_PATH, req, limit)),
        )
        .await;
        let mut most = 0;
        for answer in answers {
            match answer.and_then(|bytes| {
                serde_json::from_slice::<DrainReply>(&bytes).map_err(|e| DrainError::Http {
                    url: DRAIN_PATH.to_owned(),
                    reason: format!("unreadable answer: {e}"),
                })
            }) {
                Ok(reply) => most = most.max(reply.in_flight),
                Err(error) => tracing::warn!(%error, "a gateway did not drain"),
            }
        }
        most
    }

    /// Puts `req.pods` back into rotation on every gateway (the scale-down
    /// was called off). Best effort: holds lapse by themselves.
    pub async fn release_all(&self, gateways: &[String], req: &DrainRequest) {
        let answers = futures::future::join_all(
            gateways
                .iter()
                .map(|g| self.post(g, RELEASE_PATH, req, ANSWER_MARGIN)),
        )
        .await;
        for error in answers.into_iter().filter_map(Result::err) {
            tracing::warn!(%error, "a gateway did not release drained replicas");
        }
    }
}
