//! The probes of a local replica: the manifest's startup, readiness and
//! liveness probes (HTTP GET or TCP connect), run against the replica's own
//! loopback port.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a probe does to check a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCheck {
    /// An HTTP/1.1 GET of `path` on the replica's port; a status from 200
    /// to 399 passes, as with the kubelet.
    Http {
        /// Request path, with its query (e.g. `/ready`).
        path: String,
        /// Extra request headers (`httpHeaders`); a `Host` here replaces the default.
        headers: Vec<(String, String)>,
    },
    /// A TCP connect to the replica's port.
    Tcp,
}

/// One probe, with the manifest's timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalProbe {
    /// The check.
    pub check: ProbeCheck,
    /// Time after the process starts before the first check.
    pub initial_delay: Duration,
    /// Time between checks once the replica is ready.
    pub period: Duration,
    /// Longest time one check may take.
    pub timeout: Duration,
    /// Consecutive passes that make a failing probe pass again.
    pub success_threshold: u32,
    /// Consecutive failures that make a passing probe fail.
    pub failure_threshold: u32,
}

/// The probes of every replica of a revision. With no readiness probe a
/// replica is ready once it accepts a TCP connection on its port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    /// Must pass once before the readiness and liveness probes run.
    pub startup: Option<LocalProbe>,
    /// Gates routing to the replica: checked quickly while it starts, then
    /// every `period`; a failing replica is taken out of rotation.
    pub readiness: Option<LocalProbe>,
    /// Restarts the replica after `failure_threshold` consecutive failures.
    pub liveness: Option<LocalProbe>,
}

impl LocalProbe {
    /// Runs the check once against `addr`; the error says what failed.
    pub async fn check(&self, addr: SocketAddr) -> Result<(), String> {
        let timeout = self.timeout.max(Duration::from_millis(1));
        match tokio::time::timeout(timeout, self.check_inner(addr)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    async fn check_inner(&self, addr: SocketAddr) -> Result<(), String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let ProbeCheck::Http { path, headers } = &self.check else {
            return Ok(());
        };
        let mut request = format!("GET {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        request
            .push_str("User-Agent: kube-probe/flint-dev\r\nAccept: */*\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("GET {path}: HTTP {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn http(path: &str) -> LocalProbe {
        LocalProbe {
            check: ProbeCheck::Http {
                path: path.into(),
                headers: vec![("X-Probe".into(), "1".into())],
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            success_threshold: 1,
            failure_threshold: 3,
        }
    }

    /// A server answering each connection with `status`, once per accept.
    async fn server(status: u16) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.contains("X-Probe: 1"), "{req}");
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_status_decides() {
        assert_eq!(http("/ready").check(server(200).await).await, Ok(()));
        assert_eq!(http("/ready").check(server(302).await).await, Ok(()));
        assert_eq!(
            http("/ready").check(server(503).await).await,
            Err("GET /ready: HTTP 503".to_owned())
        );
    }

    #[tokio::test]
    async fn tcp_needs_a_listener() {
        let probe = LocalProbe {
            check: ProbeCheck::Tcp,
            ..http("/")
        };
        assert_eq!(probe.check(server(500).await).await, Ok(()));
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        assert!(probe.check(closed).await.is_err());
    }
}
