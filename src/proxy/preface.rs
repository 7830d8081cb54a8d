//! Telling HTTP/2 with prior knowledge from HTTP/1 on a cleartext connection.
//!
//! The first bytes are read (not peeked, so a slow client costs no polling) and compared with
//! the HTTP/2 connection preface; [`Rewind`] then hands them to the HTTP server before the rest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks, with the bytes read to find out.
pub struct Detected<S> {
    /// True for HTTP/2 with prior knowledge.
    pub http2: bool,
    /// The stream, replaying the bytes already read.
    pub stream: Rewind<S>,
}

/// Reads just enough to tell whether `stream` starts with the HTTP/2 preface. `None` when the
/// client closes or fails before a decision.
pub async fn detect<S: AsyncRead + Unpin>(mut stream: S) -> Option<Detected<S>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let http2 = loop {
        let n = stream.read(&mut buf[filled..]).await.ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        if buf[..filled] != H2_PREFACE[..filled] {
            break false;
        }
        if filled == H2_PREFACE.len() {
            break true;
        }
    };
    Some(Detected {
        http2,
        stream: Rewind {
            prefix: buf,
            start: 0,
            end: filled,
            inner: stream,
        },
    })
}

/// A stream whose first bytes come from a buffer already read from it.
pub struct Rewind<S> {
    prefix: [u8; H2_PREFACE.len()],
    start: usize,
    end: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// Whether bytes read during detection are still to be replayed.
    pub fn has_prefix(&self) -> bool {
        self.start < self.end
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let n = (this.end - this.start).min(buf.remaining());
            buf.put_slice(&this.prefix[this.start..this.start + n]);
            this.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn detect_bytes(chunks: &[&'static [u8]]) -> Option<(bool, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(1024);
        for chunk in chunks {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        let detected = detect(server).await?;
        let mut replayed = Vec::new();
        let mut stream = detected.stream;
        stream.read_to_end(&mut replayed).await.unwrap();
        Some((detected.http2, replayed))
    }

    #[tokio::test]
    async fn detects_the_preface_and_replays_every_byte() {
        let h2 = detect_bytes(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\nframes"]).await;
        assert_eq!(
            h2,
            Some((true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nframes".to_vec()))
        );
        let h1 = detect_bytes(&[b"GET / HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(h1, Some((false, b"GET / HTTP/1.1\r\n\r\n".to_vec())));
        let almost = detect_bytes(&[b"PRI * HTTP/1.1\r\n"]).await;
        assert_eq!(almost.map(|(h2, _)| h2), Some(false));
        assert_eq!(
            detect_bytes(&[b"PRI * HT"]).await,
            None,
            "closed mid-preface"
        );
        assert_eq!(detect_bytes(&[]).await, None);
    }
}
