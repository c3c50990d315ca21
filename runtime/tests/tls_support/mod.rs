//! Pieces of the gateway's TLS tests: certificates, a gateway serving
//! several listeners on 127.0.0.1, TLS clients (rustls, `openssl
//! s_client`, `curl`) and a request over a connection of theirs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flint_runtime::gateway::tls::{CertifiedKey, certified_key, self_signed};
use flint_runtime::gateway::{Gateway, Listener, ListenerKind, listener};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use crate::gateway_support::{BOUND, within};

/// A self-signed certificate for `hosts` (its common name the first), as
/// PEM and as the gateway serves it.
pub struct Cert {
    pub pem: String,
    pub key: Arc<CertifiedKey>,
}

impl Cert {
    pub fn new(hosts: &[&str]) -> Self {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let (pem, key) = self_signed(&hosts).unwrap();
        let key = Arc::new(certified_key(pem.as_bytes(), key.as_bytes()).unwrap());
        Self { pem, key }
    }

    /// The leaf certificate, DER.
    pub fn der(&self) -> Vec<u8> {
        self.key.cert[0].to_vec()
    }
}

/// A gateway serving listeners on free ports of 127.0.0.1.
pub struct Served {
    pub addrs: Vec<SocketAddr>,
    stop: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

/// Serves `gateway` on one new listener per `(kind, tls)`, with 2 workers.
pub fn serve(gateway: &Gateway, kinds: &[(ListenerKind, bool)]) -> Served {
    let tls = gateway.tls_config().unwrap();
    let listeners: Vec<Listener> = kinds
        .iter()
        .map(|&(kind, with_tls)| {
            let socket = listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
            if with_tls {
                Listener::tls(socket, kind, Arc::clone(&tls))
            } else {
                Listener::plain(socket, kind)
            }
        })
        .collect();
    let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let (stop, stopped) = oneshot::channel::<()>();
    let g = gateway.clone();
    let done = tokio::spawn(async move {
        g.serve_listeners_with_workers(listeners, 2, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Served { addrs, stop, done }
}

impl Served {
    /// Stops accepting and waits (bounded) for the server to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(BOUND, self.done)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A rustls client trusting `roots` (certificate PEMs), offering `alpn`,
/// with a session cache of its own (a new one never resumes).
pub fn client(roots: &[&Cert], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        for der in CertificateDer::pem_slice_iter(cert.pem.as_bytes()) {
            store.add(der.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` for `host`, with a new [`client`].
pub async fn tls_connect(
    addr: SocketAddr,
    host: &str,
    roots: &[&Cert],
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    within(BOUND, client(roots, alpn).connect(name, tcp)).await
}

/// The leaf certificate `tls`'s server presented, DER.
pub fn presented(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A response's status, HTTP version and body text.
pub type Answer = (StatusCode, Version, String);

/// Something that sends requests on one connection.
pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// An HTTP client on `io`: HTTP/2 when `h2`, else HTTP/1.1 (keep-alive).
pub async fn handshake<IO>(io: IO, h2: bool) -> Sender
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (sender, conn) = within(
            BOUND,
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io),
        )
        .await;
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = within(BOUND, hyper::client::conn::http1::handshake(io)).await;
        tokio::spawn(conn);
        Sender::H1(sender)
    }
}

impl Sender {
    /// GET `path` at `host`.
    pub async fn get(&mut self, host: &str, path: &str) -> Answer {
        let req = Request::builder().uri(format!("https://{host}{path}"));
        let req = match self {
            Sender::H1(_) => Request::builder().uri(path).header("host", host),
            Sender::H2(_) => req,
        };
        let req = req.body(Full::new(Bytes::new())).unwrap();
        let resp = match self {
            Sender::H1(s) => within(BOUND, s.send_request(req)).await,
            Sender::H2(s) => within(BOUND, s.send_request(req)).await,
        };
        let (status, version) = (resp.status(), resp.version());
        let body = within(BOUND, resp.into_body().collect()).await.to_bytes();
        (status, version, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Runs a command (bounded in time) with no input: whether it succeeded,
/// and its output and errors together.
pub async fn run(program: &str, args: &[String]) -> (bool, String) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BOUND, child)
        .await
        .unwrap_or_else(|_| panic!("{program} took longer than {BOUND:?}"))
        .unwrap_or_else(|err| panic!("running {program}: {err}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `openssl s_client` to `addr` with SNI `name`: whether the handshake
/// succeeded, and what it printed (the server's certificate as PEM, its
/// subject).
pub async fn s_client(addr: SocketAddr, name: &str) -> (bool, String) {
    let args = [
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        name,
    ];
    run("openssl", &args.map(str::to_owned)).await
}

/// The first certificate PEM in `text`.
pub fn first_pem(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    Some(&text[start..end + "-----END CERTIFICATE-----".len()])
}

/// Writes `pem` to a new file (for curl's `--cacert`); the path.
pub fn pem_file(pem: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("flint-gateway-tls-{}-{n}.pem", std::process::id()));
    std::fs::write(&path, pem).unwrap();
    path
}

/// Waits `limit` at most for the peer to close `stream` (end of stream or
/// reset); whether it did.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
