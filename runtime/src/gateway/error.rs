//! Why a request could not be proxied, and the plain answer each case gets.

use http::{HeaderValue, Response, StatusCode, header};

use super::body::{self, GatewayBody};

/// A request the gateway answers itself instead of proxying.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No Function is served at this host or path.
    #[error("no function is served at host {host:?} and path {path:?}")]
    UnknownFunction {
        /// The request's host.
        host: String,
        /// The request's path.
        path: String,
    },
    /// The Function has no revision ready to take traffic yet.
    #[error("function {namespace}/{function} has no ready revision yet")]
    NoRevision {
        /// Namespace of the Function.
        namespace: String,
        /// Name of the Function.
        function: String,
    },
    /// The revision failed and will not get a replica without a fix.
    #[error("revision {revision} failed: {message}")]
    RevisionFailed {
        /// The revision.
        revision: String,
        /// The failure condition's message.
        message: String,
    },
    /// The revision's activation queue is full.
    #[error("revision {revision} has {queued} requests waiting already; retry later")]
    QueueFull {
        /// The revision.
        revision: String,
        /// Requests waiting.
        queued: usize,
    },
    /// The request waited or ran past the revision's timeout.
    #[error("revision {revision} did not answer within {seconds}s")]
    Timeout {
        /// The revision.
        revision: String,
        /// The timeout.
        seconds: u32,
    },
    /// Every replica tried refused the connection.
    #[error("could not connect to any replica of revision {revision}: {source}")]
    Connect {
        /// The revision.
        revision: String,
        /// The last connection error.
        source: std::io::Error,
    },
    /// The replica failed after the request was sent (not retried).
    #[error("replica {endpoint} of revision {revision} failed: {source}")]
    Upstream {
        /// The revision.
        revision: String,
        /// The replica.
        endpoint: String,
        /// What hyper reported.
        source: hyper::Error,
    },
    /// The request could not be rewritten for the replica (a bad URI).
    #[error("request cannot be forwarded: {0}")]
    BadRequest(String),
    /// The request URI is longer than the gateway accepts.
    #[error("request URI of {length} bytes is longer than the {limit} bytes allowed")]
    UriTooLong {
        /// Bytes in the URI.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The gateway already serves as many connections as it may.
    #[error("the gateway is at its limit of {limit} open connections; retry later")]
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
    /// An HTTP/1.1 request without a `Host` header, or an HTTP/2 request
    /// with neither `:authority` nor `Host` (RFC 9112 §3.2).
    #[error("the request has no Host header")]
    MissingHost,
    /// A request with several `Host` headers: which one a hop believes
    /// would differ from hop to hop (RFC 9112 §3.2).
    #[error("the request has {count} Host headers; one is allowed")]
    SeveralHosts {
        /// How many.
        count: usize,
    },
    /// The client sent nothing of its request body for the I/O timeout.
    #[error("the request body stalled: nothing arrived for {seconds}s")]
    BodyStalled {
        /// The timeout, in seconds.
        seconds: f64,
    },
    /// The client sent its request body slower than the minimum rate, on
    /// average over the time the gateway waited for it, past the grace.
    #[error(
        "the request body arrived slower than {bytes_per_second} bytes/s (after {grace_seconds}s of grace)"
    )]
    BodyTooSlow {
        /// The minimum rate.
        bytes_per_second: u32,
        /// The grace period, in seconds.
        grace_seconds: f64,
    },
    /// The request would have had to wait for a replica, and the gateway's
    /// memory budget has no room for another waiting request.
    #[error("{0}; retry later")]
    OverBudget(#[from] crate::budget::OverBudget),
    /// The Function's auth refused the request (it was not proxied and
    /// did not wake the Function).
    #[error("function {namespace}/{function} refused the request: {failure}")]
    Unauthorized {
        /// Namespace of the Function.
        namespace: String,
        /// Name of the Function.
        function: String,
        /// Why.
        failure: super::auth::AuthFailure,
    },
    /// The Function has auth, but its keys cannot be read (a missing
    /// Secret or file): every request is refused until they can.
    #[error("function {namespace}/{function} cannot check credentials: {why}")]
    AuthUnavailable {
        /// Namespace of the Function.
        namespace: String,
        /// Name of the Function.
        function: String,
        /// What is missing.
        why: std::sync::Arc<str>,
    },
    /// The Function is served over https only; the client is sent there.
    #[error("this function is served over https: {location}")]
    HttpsRequired {
        /// The same URL over https.
        location: String,
    },
}

impl ProxyError {
    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownFunction { .. } => StatusCode::NOT_FOUND,
            Self::NoRevision { .. } | Self::RevisionFailed { .. } | Self::QueueFull { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Connect { .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::BadRequest(_) | Self::MissingHost | Self::SeveralHosts { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::TooManyConnections { .. } | Self::OverBudget(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BodyStalled { .. } | Self::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized { failure, .. } => failure.status(),
            Self::AuthUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::HttpsRequired { .. } => StatusCode::PERMANENT_REDIRECT,
        }
    }

    /// Whether the refusal passes with time (a full queue, a spent memory
    /// budget, no revision ready yet, the connection cap), so the answer
    /// says when to retry.
    pub fn passes_with_time(&self) -> bool {
        matches!(
            self,
            Self::QueueFull { .. }
                | Self::NoRevision { .. }
                | Self::TooManyConnections { .. }
                | Self::OverBudget(_)
                | Self::AuthUnavailable { .. }
        )
    }

    /// The plain-text answer: the status, the reason as the body, and
    /// `Retry-After: retry_after` (seconds) when the refusal
    /// [passes with time](Self::passes_with_time). The one place a request
    /// the gateway refuses gets its response.
    pub fn response(&self, retry_after: u32) -> Response<GatewayBody> {
        let mut resp = Response::new(body::full(format!("{self}\n")));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.passes_with_time() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        match self {
            Self::Unauthorized { failure, .. } if failure.status() == StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, failure.www_authenticate());
            }
            Self::HttpsRequired { location } => {
                if let Ok(value) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, value);
                }
            }
            _ => {}
        }
        resp
    }

    /// A short, stable label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::UnknownFunction { .. } => "unknown_function",
            Self::NoRevision { .. } => "no_revision",
            Self::RevisionFailed { .. } => "revision_failed",
            Self::QueueFull { .. } => "queue_full",
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Upstream { .. } => "upstream",
            Self::BadRequest(_) => "bad_request",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::TooManyConnections { .. } => "too_many_connections",
            Self::MissingHost => "missing_host",
            Self::SeveralHosts { .. } => "several_hosts",
            Self::BodyStalled { .. } => "body_stalled",
            Self::BodyTooSlow { .. } => "body_too_slow",
            Self::OverBudget(_) => "memory_budget",
            Self::Unauthorized { .. } => "unauthorized",
            Self::AuthUnavailable { .. } => "auth_unavailable",
            Self::HttpsRequired { .. } => "https_required",
        }
    }
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The listener failed.
    #[error("accepting connections: {0}")]
    Accept(#[source] std::io::Error),
    /// The configuration is unusable.
    #[error("invalid gateway configuration: {0}")]
    Config(&'static str),
    /// A worker thread or its runtime could not be started.
    #[error("starting a gateway worker: {0}")]
    Worker(#[source] std::io::Error),
    /// A listener the configuration names could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The TLS listener's settings could not be built.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (
                ProxyError::UnknownFunction {
                    host: "x".into(),
                    path: "/".into(),
                },
                404,
            ),
            (
                ProxyError::NoRevision {
                    namespace: "n".into(),
                    function: "f".into(),
                },
                503,
            ),
            (
                ProxyError::RevisionFailed {
                    revision: "r".into(),
                    message: "m".into(),
                },
                503,
            ),
            (
                ProxyError::QueueFull {
                    revision: "r".into(),
                    queued: 1,
                },
                503,
            ),
            (
                ProxyError::Timeout {
                    revision: "r".into(),
                    seconds: 1,
                },
                504,
            ),
            (
                ProxyError::Connect {
                    revision: "r".into(),
                    source: io(),
                },
                502,
            ),
            (ProxyError::BadRequest("u".into()), 400),
            (
                ProxyError::UriTooLong {
                    length: 9000,
                    limit: 8192,
                },
                414,
            ),
            (ProxyError::TooManyConnections { limit: 10 }, 503),
            (ProxyError::MissingHost, 400),
            (ProxyError::SeveralHosts { count: 2 }, 400),
            (ProxyError::BodyStalled { seconds: 1.0 }, 408),
            (
                ProxyError::BodyTooSlow {
                    bytes_per_second: 240,
                    grace_seconds: 5.0,
                },
                408,
            ),
            (
                ProxyError::OverBudget(crate::budget::OverBudget {
                    what: crate::budget::Use::WaitingRequest,
                    wanted: 1,
                    held: 1,
                    limit: 1,
                }),
                503,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.status().as_u16(), code, "{err}");
        }
    }

    #[test]
    fn unknown_function_names_the_host() {
        let err = ProxyError::UnknownFunction {
            host: "nope.default.localhost".into(),
            path: "/a".into(),
        };
        assert!(err.to_string().contains("\"nope.default.localhost\""));
    }

    #[tokio::test]
    async fn the_answer_names_why_and_says_when_to_retry_if_time_helps() {
        let full = ProxyError::QueueFull {
            revision: "hello-00001".into(),
            queued: 3,
        };
        let resp = full.response(7);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "7");
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        let unknown = ProxyError::UnknownFunction {
            host: "nope.default.localhost".into(),
            path: "/".into(),
        };
        let resp = unknown.response(7);
        assert_eq!(resp.status(), 404);
        assert!(!resp.headers().contains_key("retry-after"));
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(
            body,
            "no function is served at host \"nope.default.localhost\" and path \"/\"\n"
        );
    }
}
