//! The status page of `flint dev` (`GET /` on the admin port, and
//! `flint dev --status`): functions, URLs, revisions, replicas and traffic.

use std::fmt::Write as _;

use flint_api::backend::{Replicas, RevisionKey};

use super::state::FunctionSummary;

/// Live numbers of one revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevisionLive {
    /// Replicas asked for and ready.
    pub replicas: Replicas,
    /// Requests waiting in the gateway for a replica.
    pub waiting: usize,
}

/// Renders the page as plain text columns.
pub fn render(
    functions: &[FunctionSummary],
    gateway_url: &str,
    domain: &str,
    live: impl Fn(&RevisionKey) -> RevisionLive,
    keep_alive: impl Fn(&RevisionKey) -> Option<String>,
) -> String {
    let mut out = String::new();
    if functions.is_empty() {
        out.push_str("No functions loaded.\n");
        return out;
    }
    let port = gateway_url.rsplit(':').next().unwrap_or("8080");
    for f in functions {
        let host = flint_api::names::function_host(&f.name, &f.namespace, domain);
        let _ = writeln!(out, "{}/{}", f.namespace, f.name);
        let _ = writeln!(out, "  url      http://{host}:{port}/");
        let _ = writeln!(
            out,
            "           {gateway_url}/function/{}/{}/",
            f.namespace, f.name
        );
        let _ = writeln!(out, "  traffic  {}", f.traffic);
        if let Some(err) = &f.traffic_error {
            let _ = writeln!(out, "  warning  {err}");
        }
        let _ = writeln!(
            out,
            "  {:<24} {:>7} {:>7} {:>7}  state",
            "revision", "ready", "desired", "waiting"
        );
        for (key, health) in &f.revisions {
            let l = live(key);
            let _ = writeln!(
                out,
                "  {:<24} {:>7} {:>7} {:>7}  {health}",
                key.revision, l.replicas.ready, l.replicas.desired, l.waiting
            );
        }
        for (key, _) in &f.revisions {
            if let Some(why) = keep_alive(key) {
                let _ = writeln!(out, "  why      {}: {why}", key.revision);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_urls_traffic_and_replicas() {
        let key = RevisionKey::new("default", "hello", "hello-00001");
        let summary = FunctionSummary {
            namespace: "default".into(),
            name: "hello".into(),
            traffic: "100% hello-00001".into(),
            traffic_error: None,
            revisions: vec![(key.clone(), "ready".into())],
        };
        let page = render(
            &[summary],
            "http://127.0.0.1:8080",
            "localhost",
            |k| {
                assert_eq!(k, &key);
                RevisionLive {
                    replicas: Replicas {
                        desired: 2,
                        ready: 1,
                    },
                    waiting: 3,
                }
            },
            |k| (k == &key).then(|| "fixed 5m: keeping the last replica until 14:05 UTC".into()),
        );
        assert!(
            page.contains(
                "  why      hello-00001: fixed 5m: keeping the last replica until 14:05 UTC\n"
            ),
            "{page}"
        );
        assert!(
            page.contains("  url      http://hello.default.localhost:8080/\n"),
            "{page}"
        );
        assert!(
            page.contains("http://127.0.0.1:8080/function/default/hello/"),
            "{page}"
        );
        assert!(page.contains("  traffic  100% hello-00001\n"), "{page}");
        let row = page
            .lines()
            .find(|l| l.contains("hello-00001  ") || l.trim_start().starts_with("hello-00001"))
            .unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols, ["hello-00001", "1", "2", "3", "ready"]);
        assert_eq!(
            render(
                &[],
                "http://x:1",
                "localhost",
                |_| RevisionLive::default(),
                |_| None
            ),
            "No functions loaded.\n"
        );
    }
}

/// Fetches the status page from a running `flint dev`'s admin port.
pub async fn fetch(admin: std::net::SocketAddr) -> Result<String, FetchError> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(admin).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::get("/")
        .header(hyper::header::HOST, admin.to_string())
        .body(Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Why the status page could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
}
