//! The wait for a new connection's first bytes, with a deadline.
//!
//! hyper-util's protocol detection reads until it has either the whole
//! HTTP/2 preface or a byte that rules it out, and has no deadline of its
//! own: a silent socket, or one that stops inside the preface, would be
//! held forever. This wait comes first. It only peeks, so hyper still reads
//! every byte itself, and it sleeps between peeks until new bytes arrive
//! (a partial preface costs no CPU while it waits).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, recv};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
pub(super) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How far the bytes received so far go towards the HTTP/2 preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Preface {
    /// The whole preface: HTTP/2.
    Complete,
    /// A prefix of it (or nothing yet): more bytes decide.
    Partial,
    /// A byte that is not the preface's: HTTP/1.
    Absent,
}

/// Classifies the first bytes of a connection.
pub(super) fn classify(bytes: &[u8]) -> Preface {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] != H2_PREFACE[..n] {
        Preface::Absent
    } else if n == H2_PREFACE.len() {
        Preface::Complete
    } else {
        Preface::Partial
    }
}

/// How the wait for the first bytes ended.
#[derive(Debug)]
pub(super) enum FirstBytes {
    /// Enough bytes to tell the protocol: hand the connection to hyper.
    Ready,
    /// The client closed the connection first.
    Closed,
    /// The deadline passed first.
    TimedOut,
    /// The socket failed.
    Failed(io::Error),
}

/// What one peek found.
enum Peeked {
    /// Bytes waiting in the socket (more than the last peek saw).
    Bytes(usize),
    /// The client closed its side with no new byte.
    Closed,
}

/// Waits at most `limit` until `stream`'s first bytes tell HTTP/2 from
/// HTTP/1, without consuming any of them.
pub(super) async fn wait(stream: &TcpStream, limit: Duration) -> FirstBytes {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let peeked =
            match tokio::time::timeout_at(deadline, peek_more(stream, &mut buf, seen)).await {
                Err(_) => return FirstBytes::TimedOut,
                Ok(Err(err)) => return FirstBytes::Failed(err),
                Ok(Ok(peeked)) => peeked,
            };
        let n = match peeked {
            Peeked::Closed | Peeked::Bytes(0) => return FirstBytes::Closed,
            Peeked::Bytes(n) => n,
        };
        match buf.get(..n).map(classify) {
            Some(Preface::Partial) => seen = n,
            _ => return FirstBytes::Ready,
        }
    }
}

/// Peeks at the socket once it holds more than `seen` bytes.
async fn peek_more(stream: &TcpStream, buf: &mut [u8], seen: usize) -> io::Result<Peeked> {
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = recv(stream.as_raw_fd(), buf, MsgFlags::MSG_PEEK).map_err(io::Error::from)?;
            if n == seen && n > 0 {
                // Nothing new: clear the readiness and sleep until the
                // kernel reports more bytes.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match peeked {
            Ok(n) => return Ok(Peeked::Bytes(n)),
            // A closed side stays readable; with no new byte it never
            // completes the preface.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && ready.is_read_closed() => {
                return Ok(Peeked::Closed);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_are_classified() {
        let cases: [(&[u8], Preface); 8] = [
            (b"", Preface::Partial),
            (b"P", Preface::Partial),
            (b"PRI * HTTP/2.0\r\n", Preface::Partial),
            (H2_PREFACE, Preface::Complete),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
                Preface::Complete,
            ),
            (b"GET / HTTP/1.1\r\n", Preface::Absent),
            (b"POST", Preface::Absent),
            (b"PRI * HTTP/1.1", Preface::Absent),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                classify(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
