//! A small HTTP GET helper on hyper-util's client, with a timeout, shared by
//! both sources.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::SourceError;

/// A plain-HTTP connector to the gateways: `connect_timeout` to connect, no
/// Nagle delay. Shared by the metrics sources and the drainer.
pub fn connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector
}

/// A plain-HTTP client with a per-request timeout.
#[derive(Clone)]
pub struct HttpGet {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGet")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpGet {
    /// A client whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector(timeout)),
            timeout,
        }
    }

    /// GETs `url` and returns the body of a 2xx answer.
    pub async fn get(&self, url: &str) -> Result<Bytes, SourceError> {
        let fail = |reason: String| SourceError::Http {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| fail(e.to_string()))?;
        let fetch = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(SourceError::Status {
                    url: url.to_owned(),
                    status: status.as_u16(),
                });
            }
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| fail(format!("timed out after {:?}", self.timeout)))?
    }
}
