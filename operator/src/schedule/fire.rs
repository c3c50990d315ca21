//! Firing a tick: an asynchronous invocation POSTed to the gateway's
//! `/async-function/<ns>/<fn><path>` with the tick's invocation id, so the
//! queue's retries and dead letters apply and a resubmission of the same
//! tick is a duplicate.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::plan::{self, Entry};

/// Why a tick could not be fired.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// The request could not be built (a bad gateway URL).
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
    /// The gateway did not accept it after every attempt.
    #[error("the gateway did not accept the invocation: {0}")]
    NotAccepted(String),
}

/// Turns a tick into an invocation.
pub trait Fire: Send + Sync + 'static {
    /// Fires `tick` of `entry`.
    fn fire(
        &self,
        entry: &Entry,
        tick: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), FireError>> + Send;
}

/// Fires through the gateway's async intake over HTTP.
#[derive(Debug, Clone)]
pub struct HttpFire {
    gateway: String,
    /// Presented as [`flint_api::names::HEADER_INTERNAL`]: ticks are the
    /// platform's own invocations and pass Functions' gates (visibility,
    /// auth).
    token: Option<flint_api::drain::ControlToken>,
    client: Client<HttpConnector, Full<Bytes>>,
    attempts: u32,
}

impl HttpFire {
    /// Fires to the gateway at `gateway_url` (e.g. `http://flint-gateway.flint-system`).
    pub fn new(gateway_url: &str) -> Self {
        Self {
            gateway: gateway_url.trim_end_matches('/').to_owned(),
            token: None,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            attempts: 3,
        }
    }

    /// The same, presenting `token` (the control token on a cluster, the
    /// gateway's internal token in `flint dev`) so that ticks reach
    /// cluster-local Functions and those with `spec.auth`.
    pub fn with_token(mut self, token: Option<flint_api::drain::ControlToken>) -> Self {
        self.token = token;
        self
    }
}

impl Fire for HttpFire {
    async fn fire(&self, entry: &Entry, tick: DateTime<Utc>) -> Result<(), FireError> {
        let uri = format!(
            "{}/async-function/{}/{}{}",
            self.gateway, entry.namespace, entry.function, entry.path
        );
        let method = match entry.method {
            flint_api::ScheduleMethod::Get => http::Method::GET,
            flint_api::ScheduleMethod::Post => http::Method::POST,
            flint_api::ScheduleMethod::Put => http::Method::PUT,
            flint_api::ScheduleMethod::Patch => http::Method::PATCH,
            flint_api::ScheduleMethod::Delete => http::Method::DELETE,
        };
        let body = Bytes::from(entry.body.clone().unwrap_or_default());
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500) * attempt).await;
            }
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("x-flint-invocation-id", plan::invocation_id(entry, tick))
                .header("x-flint-schedule", &entry.key);
            if let Some(token) = &self.token {
                req = req.header(flint_api::names::HEADER_INTERNAL, token.expose());
            }
            let req = req.body(Full::new(body.clone()))?;
            match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
                Ok(Ok(resp)) if resp.status() == StatusCode::ACCEPTED => return Ok(()),
                Ok(Ok(resp)) => last = format!("status {}", resp.status().as_u16()),
                Ok(Err(err)) => last = err.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        Err(FireError::NotAccepted(last))
    }
}
