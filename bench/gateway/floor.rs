//! The `floor` role: the least a keep-alive HTTP/1.1 proxy on tokio does per
//! request, to tell what the runtime costs from what the HTTP machinery on
//! top of it costs. Not a product and not a peer: it serves only what the
//! benchmark sends (requests without bodies, answers with `Content-Length`),
//! with one replica connection per client connection, and no routing,
//! metrics, timeouts, retries or header validation. It parses with
//! httparse (as hyper does), drops `Connection`, and adds the
//! `X-Forwarded-*` headers the gateway and nginx add.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves on `listen` with `workers` threads, each accepting on the same
/// socket and running its own single-threaded runtime.
pub fn run(listen: SocketAddr, app: SocketAddr, workers: usize) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let mut threads = Vec::new();
    for _ in 0..workers.max(1) {
        let listener = listener.try_clone()?;
        threads.push(std::thread::spawn(move || -> io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                loop {
                    let (client, peer) = listener.accept().await?;
                    client.set_nodelay(true)?;
                    tokio::spawn(async move {
                        let _ = connection(client, peer, app).await;
                    });
                }
            })
        }));
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| io::Error::other("floor worker panicked"))??;
    }
    Ok(())
}

fn invalid(err: httparse::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// Copies the request head in `req` into `out` for the app.
fn request_head(req: &httparse::Request<'_, '_>, client_ip: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host: &[u8] = b"";
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        if h.name.eq_ignore_ascii_case("host") {
            host = h.value;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    out.extend_from_slice(client_ip);
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n\r\n");
}

fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

async fn connection(mut client: TcpStream, peer: SocketAddr, app: SocketAddr) -> io::Result<()> {
    let mut replica = TcpStream::connect(app).await?;
    replica.set_nodelay(true)?;
    let client_ip = peer.ip().to_string();
    let (mut inbound, mut head, mut answer) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let consumed = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(n) = req.parse(&inbound).map_err(invalid)? {
                request_head(&req, client_ip.as_bytes(), &mut head);
                break n;
            }
            if client.read_buf(&mut inbound).await? == 0 {
                return Ok(());
            }
        };
        inbound.drain(..consumed);
        replica.write_all(&head).await?;
        let total = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&answer).map_err(invalid)? {
                break n + content_length(resp.headers);
            }
            if replica.read_buf(&mut answer).await? == 0 {
                return Ok(());
            }
        };
        while answer.len() < total {
            if replica.read_buf(&mut answer).await? == 0 {
                return Ok(());
            }
        }
        client.write_all(&answer[..total]).await?;
        answer.drain(..total);
    }
}
