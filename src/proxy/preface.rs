//! Telling HTTP/2 with prior knowledge from HTTP/1 on a cleartext connection.
//!
//! The first bytes are read (not peeked, so a slow client costs no polling) and compared with
//! the HTTP/2 connection preface; the listener then hands them to the HTTP server before the
//! rest (see [`super::park::Resumable`]).

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks, with the bytes read to find out.
pub struct Detected<S> {
    /// True for HTTP/2 with prior knowledge.
    pub http2: bool,
    /// The bytes read, to be served before the rest of the stream.
    pub read: Bytes,
    /// The stream, after those bytes.
    pub stream: S,
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
        read: Bytes::copy_from_slice(&buf[..filled]),
        stream,
    })
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
        let mut detected = detect(server).await?;
        let mut replayed = detected.read.to_vec();
        detected.stream.read_to_end(&mut replayed).await.unwrap();
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
