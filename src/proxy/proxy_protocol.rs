//! HAProxy's PROXY protocol (v1 text, v2 binary) on the client listeners (`--proxy-protocol`,
//! ingress-nginx's `use-proxy-protocol`): behind an L4 load balancer (AWS NLB/ELB and the
//! like) every connection starts with a header naming the client the balancer accepted it
//! from, and that client, not the balancer, is the connection's peer for everything weir
//! does by address.
//!
//! As nginx's `listen … proxy_protocol`: every connection must start with a header; one that
//! does not (or sends a malformed one, or none within `proxy-protocol-header-timeout`) is
//! closed without an answer. The addresses in it are used only when the balancer is in
//! `proxy-real-ip-cidr` (or `--proxy-protocol-trusted-from`; by default every address). The
//! settings are the served table's [`ClientAddress`]. The header is read exactly, without a byte of what follows, so the preface
//! detection and the TLS handshake start where they would without it. Parsing is the `ppp`
//! crate's.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::model::client_address::ClientAddress;

/// The longest header read: a v1 header is at most 107 bytes (the specification's limit); a
/// v2 header's length is in it, and nginx reads at most 4 KiB of one (the addresses and the
/// TLVs a balancer adds, such as AWS's VPC endpoint ID, fit easily).
pub const MAX_HEADER: usize = 4096;

const V1_MAX: usize = 107;

/// Why a connection's PROXY protocol header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The peer closed the connection before the header ended.
    #[error("the connection closed before the PROXY protocol header ended")]
    Closed,
    /// The peer closed the connection without sending anything (a load balancer's TCP
    /// health check does).
    #[error("the connection closed without a PROXY protocol header")]
    Empty,
    /// The bytes are not a PROXY protocol header.
    #[error("not a PROXY protocol header: {0}")]
    Invalid(String),
    /// The header did not end within [`MAX_HEADER`] bytes (107 for v1).
    #[error("PROXY protocol header longer than {0} bytes")]
    TooLong(usize),
    /// The header did not arrive within `--proxy-protocol-header-timeout`.
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

impl HeaderError {
    /// The `reason` label of `weir_proxy_protocol_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            HeaderError::Empty => "empty",
            HeaderError::Closed | HeaderError::Io(_) => "io",
            HeaderError::Invalid(_) => "invalid",
            HeaderError::TooLong(_) => "too_long",
            HeaderError::Timeout(_) => "timeout",
        }
    }
}

/// What a complete header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client the balancer accepted the connection from, and the port it was accepted on.
    Client(SocketAddr, u16),
    /// No client: a v2 `LOCAL` command (the balancer's own health check), a v1 `UNKNOWN`, or
    /// an address family other than TCP over IPv4 or IPv6. The peer stays the peer.
    Unknown,
}

/// Parses the header at the start of `bytes`: `Ok(None)` when `bytes` is a beginning of one
/// that needs more, else the source and the header's length.
pub fn parse(bytes: &[u8]) -> Result<Option<(Source, usize)>, HeaderError> {
    // A v1 line is parsed whole: `ppp` would read a line cut after a space as one with an
    // empty field, not as a beginning.
    if bytes.starts_with(b"PROXY") && !bytes.contains(&b'\n') {
        return match bytes.len() {
            n if n >= V1_MAX => Err(HeaderError::TooLong(V1_MAX)),
            _ => Ok(None),
        };
    }
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        // `ppp` reads a v1 header until its line ends: stop at the specification's limit.
        let v1 = bytes.starts_with(b"PROXY");
        return match bytes.len() {
            n if v1 && n >= V1_MAX => Err(HeaderError::TooLong(V1_MAX)),
            n if n >= MAX_HEADER => Err(HeaderError::TooLong(MAX_HEADER)),
            _ => Ok(None),
        };
    }
    match parsed {
        HeaderResult::V1(Ok(header)) => {
            let source = match header.addresses {
                v1::Addresses::Tcp4(a) => Source::Client(
                    SocketAddr::from((a.source_address, a.source_port)),
                    a.destination_port,
                ),
                v1::Addresses::Tcp6(a) => Source::Client(
                    SocketAddr::from((a.source_address, a.source_port)),
                    a.destination_port,
                ),
                v1::Addresses::Unknown => Source::Unknown,
            };
            Ok(Some((source, header.header.len())))
        }
        HeaderResult::V2(Ok(header)) => {
            if header.len() > MAX_HEADER {
                return Err(HeaderError::TooLong(MAX_HEADER));
            }
            let source = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Source::Client(
                    SocketAddr::from((a.source_address, a.source_port)),
                    a.destination_port,
                ),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Source::Client(
                    SocketAddr::from((a.source_address, a.source_port)),
                    a.destination_port,
                ),
                _ => Source::Unknown,
            };
            Ok(Some((source, header.len())))
        }
        HeaderResult::V1(Err(v1::BinaryParseError::Parse(v1::ParseError::HeaderTooLong))) => {
            Err(HeaderError::TooLong(V1_MAX))
        }
        HeaderResult::V1(Err(error)) => Err(HeaderError::Invalid(error.to_string())),
        HeaderResult::V2(Err(error)) => Err(HeaderError::Invalid(error.to_string())),
    }
}

/// Reads the PROXY protocol header at the start of `stream`, and not a byte more: what a
/// peek shows is parsed, and only the header's bytes are then read.
async fn read_header(stream: &mut TcpStream) -> Result<Source, HeaderError> {
    // Bytes already consumed: a header that arrived in pieces.
    let mut head: Vec<u8> = Vec::new();
    let mut peeked = [0u8; MAX_HEADER];
    loop {
        let room = MAX_HEADER - head.len();
        let n = stream.peek(&mut peeked[..room]).await?;
        if n == 0 && head.is_empty() {
            return Err(HeaderError::Empty);
        }
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        let seen = [&head[..], &peeked[..n]].concat();
        match parse(&seen)? {
            Some((source, len)) => {
                let mut rest = vec![0u8; len - head.len()];
                stream.read_exact(&mut rest).await?;
                return Ok(source);
            }
            None => {
                // Incomplete: take what is there, so that the next peek waits for more.
                let at = head.len();
                head.resize(at + n, 0);
                stream.read_exact(&mut head[at..]).await?;
            }
        }
    }
}

/// Reads the header of a connection from `peer` within the configured time and returns the
/// client it names with the port the balancer accepted it on; `None` when the header names
/// none or the peer is not a trusted balancer (the peer stays the client).
pub async fn accept(
    rules: &ClientAddress,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Result<Option<(SocketAddr, u16)>, HeaderError> {
    let timeout = rules.proxy_protocol_header_timeout;
    let read = tokio::time::timeout(timeout, read_header(stream));
    let source = read.await.map_err(|_| HeaderError::Timeout(timeout))??;
    Ok(match source {
        Source::Client(client, port) if rules.proxy_protocol_from.contains(peer.ip()) => {
            Some((client, port))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        out.push(0x20 | command);
        out.push(family);
        let len = (addresses.len() + tlvs.len()) as u16;
        out.extend(len.to_be_bytes());
        out.extend(addresses);
        out.extend(tlvs);
        out
    }

    #[test]
    fn v1_headers_name_the_client_and_their_length() {
        let tcp4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\nGET / HTTP/1.1\r\n";
        let (source, len) = parse(tcp4).unwrap().unwrap();
        assert_eq!(
            source,
            Source::Client("203.0.113.7:51234".parse().unwrap(), 80)
        );
        assert_eq!(&tcp4[len..], b"GET / HTTP/1.1\r\n");
        let tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 443 8443\r\n";
        assert_eq!(
            parse(tcp6).unwrap(),
            Some((
                Source::Client("[2001:db8::7]:443".parse().unwrap(), 8443),
                tcp6.len()
            ))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap(),
            Some((Source::Unknown, 15))
        );
    }

    #[test]
    fn v2_headers_name_the_client_unless_local() {
        let addresses = [203, 0, 113, 7, 10, 0, 0, 1, 0xC8, 0x22, 0, 80];
        // An AWS-like TLV (type 0xEA) after the addresses.
        let tlv = [0xEA, 0, 3, 1, 2, 3];
        let mut proxy = v2(1, 0x11, &addresses, &tlv);
        let header_len = proxy.len();
        proxy.extend(b"\x16\x03\x01");
        let (source, len) = parse(&proxy).unwrap().unwrap();
        assert_eq!(
            source,
            Source::Client("203.0.113.7:51234".parse().unwrap(), 80)
        );
        assert_eq!(len, header_len);
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(parse(&local).unwrap(), Some((Source::Unknown, 16)));
    }

    #[test]
    fn beginnings_ask_for_more_and_garbage_is_refused() {
        assert_eq!(parse(b"PROXY TCP4 203.0").unwrap(), None);
        assert_eq!(parse(b"\r\n\r\n\0\r").unwrap(), None);
        let v2_partial = &v2(1, 0x11, &[1; 12], &[])[..20];
        assert_eq!(parse(v2_partial).unwrap(), None);
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"PROXY TCP4 nope 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 99999 80\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert!(
                matches!(parse(garbage), Err(HeaderError::Invalid(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(garbage),
                parse(garbage)
            );
        }
    }

    #[test]
    fn headers_past_the_limits_are_too_long() {
        let mut long_v1 = b"PROXY TCP4 ".to_vec();
        long_v1.resize(V1_MAX, b'1');
        assert!(matches!(parse(&long_v1), Err(HeaderError::TooLong(107))));
        let huge = v2(1, 0x11, &[0; 12], &vec![0; MAX_HEADER]);
        assert!(matches!(parse(&huge), Err(HeaderError::TooLong(_))));
    }

    proptest! {
        /// Any bytes: no panic, and a header found never claims more bytes than were given.
        #[test]
        fn parse_never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some((_, len))) = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }

        /// Every v1 TCP4 header parses to its address, whatever follows it.
        #[test]
        fn v1_tcp4_round_trips(a in any::<[u8; 4]>(), port in 1u16.., rest in proptest::collection::vec(any::<u8>(), 0..40)) {
            let ip = std::net::Ipv4Addr::from(a);
            let mut bytes = format!("PROXY TCP4 {ip} 10.0.0.1 {port} 80\r\n").into_bytes();
            let len = bytes.len();
            bytes.extend(rest);
            prop_assert_eq!(parse(&bytes).unwrap(), Some((Source::Client(SocketAddr::from((ip, port)), 80), len)));
        }

        /// A v1 header cut anywhere asks for more.
        #[test]
        fn v1_prefixes_are_incomplete(a in any::<[u8; 4]>(), port in 1u16.., cut in 0usize..60) {
            let ip = std::net::Ipv4Addr::from(a);
            let full = format!("PROXY TCP4 {ip} 10.0.0.1 {port} 80\r\n").into_bytes();
            let cut = cut.min(full.len() - 1);
            prop_assert_eq!(parse(&full[..cut]).unwrap(), None);
        }

        /// A header cut anywhere asks for more.
        #[test]
        fn v2_prefixes_are_incomplete(cut in 0usize..28) {
            let full = v2(1, 0x11, &[203, 0, 113, 7, 10, 0, 0, 1, 0, 1, 0, 80], &[]);
            prop_assert_eq!(parse(&full[..cut]).unwrap(), None);
        }
    }
}
