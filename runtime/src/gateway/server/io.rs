//! A client connection's socket as the HTTP server sees it: writes must
//! make progress within the I/O timeout, and the connection's place under
//! the gateway's connection limit is held until the socket closes (after
//! an upgrade too, since the upgraded stream owns this).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::limit::Permit;
use super::stall::Stall;

/// A write to the client made no progress within the I/O timeout: the
/// client stopped reading.
#[derive(Debug, thiserror::Error)]
#[error("the client read nothing for {seconds:.1}s")]
pub(crate) struct WriteStalled {
    /// The timeout, in seconds.
    pub seconds: f64,
}

/// The client's socket, with its write watch and its connection permit.
#[derive(Debug)]
pub(crate) struct ClientIo {
    stream: TcpStream,
    writes: Stall,
    _permit: Permit,
}

impl ClientIo {
    /// Wraps `stream`, failing writes that wait longer than `writes` allows.
    pub(crate) fn new(stream: TcpStream, writes: Stall, permit: Permit) -> Self {
        Self {
            stream,
            writes,
            _permit: permit,
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.writes.waited_too_long(polled.is_ready(), cx) {
            let seconds = self.writes.limit().as_secs_f64();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                WriteStalled { seconds },
            )));
        }
        polled
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
