//! Reading the host name (SNI) of a TLS ClientHello without taking part in the handshake, for
//! `ssl-passthrough`: weir has to know where a connection goes before deciding whether to
//! terminate it at all, and a connection it passes through must reach its backend byte for
//! byte as the client sent it.
//!
//! rustls reads ClientHellos too, but refuses those it would not answer (TLS 1.0 and 1.1
//! clients, which send no `signature_algorithms`, for one), and for a passthrough host the
//! backend is the one to decide that. So this is a small reader of its own: TLS records of
//! type handshake, reassembled into the first handshake message, which must be a ClientHello,
//! and the first `host_name` of its `server_name` extension (RFC 6066 §3). It is fed the bytes
//! of the connection as they arrive and looks at each record once, so a client that trickles
//! its ClientHello in tiny records costs no more than one that sends it whole. It never panics
//! and never reads past what it was given (proptest checks both on arbitrary bytes).

/// The TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// A record's type for handshake messages.
const HANDSHAKE: u8 = 22;
/// The handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// The extension that carries the host name.
const SERVER_NAME: u16 = 0;
/// The `name_type` of a host name in the `server_name` extension.
const HOST_NAME: u8 = 0;
/// The longest plaintext record (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;
/// The longest ClientHello message read (64 KiB, as rustls allows).
const MAX_MESSAGE: usize = 0xffff;
/// The most bytes of whole records read for one ClientHello: a longer one (or one cut into
/// records so small that their headers make it longer) is not one weir waits for.
const MAX_RECORDS: usize = MAX_MESSAGE + 4 + 1024;
/// The most bytes of a connection to read before [`ClientHelloReader::read`] has an answer:
/// the records it reads at most, and one more record.
pub const MAX_BYTES: usize = MAX_RECORDS + RECORD_HEADER + MAX_RECORD;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A ClientHello so far: more bytes are needed.
    Incomplete,
    /// A whole ClientHello with this host name (lower-case, without a trailing dot; `None`
    /// without a `server_name`, or with one that is not a host name).
    Complete(Option<String>),
    /// Not a TLS ClientHello weir can read: another protocol, or a malformed or oversized
    /// ClientHello.
    Invalid,
}

/// Reads the ClientHello at the start of a connection from its bytes, as they arrive.
#[derive(Debug, Default)]
pub struct ClientHelloReader {
    /// The handshake message so far, its 4-byte header included.
    message: Vec<u8>,
    /// How many of the connection's bytes are done with (whole records).
    consumed: usize,
    /// The outcome, once there is one.
    done: Option<Parsed>,
}

impl ClientHelloReader {
    /// A reader that has seen nothing yet.
    pub fn new() -> Self {
        ClientHelloReader::default()
    }

    /// What `bytes` — every byte read from the connection so far, those of earlier calls
    /// unchanged at the start — say. Once the answer is not [`Parsed::Incomplete`], it stays.
    pub fn read(&mut self, bytes: &[u8]) -> Parsed {
        if let Some(done) = &self.done {
            return done.clone();
        }
        let parsed = self.advance(bytes).unwrap_or(Parsed::Invalid);
        if parsed != Parsed::Incomplete {
            self.message = Vec::new();
            self.done = Some(parsed.clone());
        }
        parsed
    }

    fn advance(&mut self, bytes: &[u8]) -> Result<Parsed, Invalid> {
        loop {
            if self.consumed > MAX_RECORDS {
                return Err(Invalid);
            }
            let rest = bytes.get(self.consumed..).ok_or(Invalid)?;
            let Some(header) = rest.get(..RECORD_HEADER) else {
                // What there is of the header must already look like a handshake record.
                return match rest {
                    [kind, ..] if *kind != HANDSHAKE => Err(Invalid),
                    [_, major, ..] if *major != 3 => Err(Invalid),
                    _ => Ok(Parsed::Incomplete),
                };
            };
            let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if header[0] != HANDSHAKE || header[1] != 3 || length == 0 || length > MAX_RECORD {
                return Err(Invalid);
            }
            let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + length) else {
                return Ok(Parsed::Incomplete);
            };
            self.message.extend_from_slice(payload);
            self.consumed += RECORD_HEADER + length;
            let Some(whole) = message_length(&self.message)? else {
                continue;
            };
            if self.message.len() >= whole {
                return server_name(&self.message[4..whole]).map(Parsed::Complete);
            }
        }
    }
}

/// The parser's one error: what it was given is not a ClientHello it can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invalid;

/// The whole length of the handshake message that starts `message` (its header included),
/// once its header is there; an error when it is not a ClientHello or is too long.
fn message_length(message: &[u8]) -> Result<Option<usize>, Invalid> {
    match message {
        [kind, ..] if *kind != CLIENT_HELLO => Err(Invalid),
        [_, a, b, c, ..] => {
            let length = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
            if length > MAX_MESSAGE {
                return Err(Invalid);
            }
            Ok(Some(4 + length))
        }
        _ => Ok(None),
    }
}

/// A cursor over part of a ClientHello body.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        if n > self.bytes.len() {
            return Err(Invalid);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, Invalid> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Invalid> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Result<Cursor<'a>, Invalid> {
        let n = usize::from(self.u8()?);
        Ok(Cursor {
            bytes: self.take(n)?,
        })
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Result<Cursor<'a>, Invalid> {
        let n = usize::from(self.u16()?);
        Ok(Cursor {
            bytes: self.take(n)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The host name of a ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): the first
/// `host_name` of its `server_name` extension, when it has one that is a host name.
fn server_name(body: &[u8]) -> Result<Option<String>, Invalid> {
    let mut hello = Cursor { bytes: body };
    hello.take(2)?; // legacy_version
    hello.take(32)?; // random
    hello.vec8()?; // legacy_session_id
    hello.vec16()?; // cipher_suites
    hello.vec8()?; // legacy_compression_methods
    if hello.is_empty() {
        // ClientHellos of SSL 3.0's time may have no extensions at all.
        return Ok(None);
    }
    let mut extensions = hello.vec16()?;
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vec16()?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut names = data.vec16()?;
        while !names.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?;
            if name_type == HOST_NAME {
                return Ok(host_name(name.bytes));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// `name` as the table looks hosts up: lower-case, without a trailing dot; `None` unless it
/// can be a host name (letters, digits, `-` and `_` in labels separated by single dots; 1 to
/// 253 bytes).
fn host_name(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(b".")
        && !name.ends_with(b".")
        && !name.windows(2).any(|w| w == b"..")
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
    valid.then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    /// The first flight of a rustls client that names `sni` (an IP address: no SNI), with
    /// `alpn`.
    fn client_hello(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = rustls::RootCertStore::empty();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        out
    }

    /// A ClientHello record by hand: `extensions` as (type, data), in records of at most
    /// `record` bytes.
    fn hand_made(extensions: &[(u16, Vec<u8>)], record: usize) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one cipher suite
        body.extend([1, 0]); // null compression
        let mut exts = Vec::new();
        for (kind, data) in extensions {
            exts.extend(kind.to_be_bytes());
            exts.extend((data.len() as u16).to_be_bytes());
            exts.extend(data);
        }
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut message = vec![CLIENT_HELLO, 0];
        message.extend((body.len() as u16).to_be_bytes());
        message.extend(body);
        let mut out = Vec::new();
        for chunk in message.chunks(record) {
            out.extend([HANDSHAKE, 3, 1]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    fn sni_extension(names: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for (kind, name) in names {
            list.push(*kind);
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(*name);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        (SERVER_NAME, data)
    }

    fn parse(bytes: &[u8]) -> Parsed {
        ClientHelloReader::new().read(bytes)
    }

    #[test]
    fn reads_the_host_name_of_a_real_client_hello() {
        let hello = client_hello("Pass.Example.COM", &[b"h2", b"http/1.1"]);
        assert_eq!(
            parse(&hello),
            Parsed::Complete(Some("pass.example.com".into()))
        );
        let hello = client_hello("127.0.0.1", &[]);
        assert_eq!(
            parse(&hello),
            Parsed::Complete(None),
            "an IP address sends no SNI"
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_arriving_in_pieces_changes_nothing() {
        let hello = client_hello("a.example.com", &[b"h2"]);
        let want = Parsed::Complete(Some("a.example.com".into()));
        for cut in 0..hello.len() {
            assert_eq!(parse(&hello[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        // Fed byte by byte to one reader, and with what follows the ClientHello.
        let mut reader = ClientHelloReader::new();
        for end in 1..hello.len() {
            assert_eq!(reader.read(&hello[..end]), Parsed::Incomplete);
        }
        assert_eq!(reader.read(&hello), want);
        let mut more = hello.clone();
        more.extend([20, 3, 3, 0, 1, 1]); // a ChangeCipherSpec record
        assert_eq!(reader.read(&more), want, "the answer stays");
        assert_eq!(parse(&more), want);
    }

    #[test]
    fn a_client_hello_split_over_records_is_reassembled() {
        let sni = sni_extension(&[(HOST_NAME, b"split.example.com.")]);
        for record in [1, 3, 16, 40, 1000] {
            let hello = hand_made(&[(10, vec![0, 2, 0, 29]), sni.clone()], record);
            assert_eq!(
                parse(&hello),
                Parsed::Complete(Some("split.example.com".into())),
                "records of {record} bytes"
            );
        }
    }

    #[test]
    fn names_that_are_not_host_names_read_as_none() {
        for name in [
            &b""[..],
            b".",
            b"a..b",
            b".a",
            b"a b",
            b"\xff",
            b"a/b",
            &[b'a'; 254],
        ] {
            let hello = hand_made(&[sni_extension(&[(HOST_NAME, name)])], 100);
            assert_eq!(parse(&hello), Parsed::Complete(None), "{name:?}");
        }
        // Only a host_name counts; the first one wins.
        let hello = hand_made(
            &[sni_extension(&[
                (1, b"x.example"),
                (HOST_NAME, b"b.example"),
                (HOST_NAME, b"c.example"),
            ])],
            100,
        );
        assert_eq!(parse(&hello), Parsed::Complete(Some("b.example".into())));
        let hello = hand_made(&[(10, vec![0, 2, 0, 29])], 100);
        assert_eq!(parse(&hello), Parsed::Complete(None), "no server_name");
    }

    #[test]
    fn what_is_not_a_client_hello_is_invalid() {
        assert_eq!(parse(b""), Parsed::Incomplete);
        assert_eq!(parse(b"\x16"), Parsed::Incomplete);
        assert_eq!(parse(b"\x16\x03"), Parsed::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Invalid);
        assert_eq!(parse(b"PRI * HTTP/2.0\r\n"), Parsed::Invalid);
        assert_eq!(parse(b"\x16\x02"), Parsed::Invalid, "not TLS 1.x");
        assert_eq!(parse(b"\x80\x2e\x01\x03\x01"), Parsed::Invalid, "SSLv2");
        // A handshake message that is not a ClientHello, an empty record, a record too long.
        assert_eq!(parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Parsed::Invalid);
        assert_eq!(parse(&[22, 3, 1, 0, 0]), Parsed::Invalid);
        assert_eq!(parse(&[22, 3, 1, 0x40, 0x01]), Parsed::Invalid);
        // A ClientHello that says it is longer than 64 KiB.
        assert_eq!(parse(&[22, 3, 1, 0, 4, 1, 1, 0, 0]), Parsed::Invalid);
        // A ClientHello body cut short inside its record.
        assert_eq!(parse(&[22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]), Parsed::Invalid);
        // Too many bytes for any ClientHello weir waits for.
        let mut tiny_records = Vec::new();
        while tiny_records.len() <= MAX_RECORDS + 6 {
            tiny_records.extend([22, 3, 1, 0, 1, 1]);
        }
        assert_eq!(parse(&tiny_records), Parsed::Invalid);
    }

    proptest! {
        /// Arbitrary bytes never make the reader panic, in one piece or in several, and
        /// whatever it answers for a prefix it keeps answering once the answer is final.
        #[test]
        fn arbitrary_bytes_never_panic(
            random in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            framed in any::<bool>(),
        ) {
            // Half of the time inside a handshake record and message that fit the bytes, so
            // that they get past the record layer's checks.
            let bytes = if framed {
                let mut bytes = vec![HANDSHAKE, 3, 1];
                bytes.extend((random.len() as u16 + 4).to_be_bytes());
                bytes.extend([CLIENT_HELLO, 0]);
                bytes.extend((random.len() as u16).to_be_bytes());
                bytes.extend(&random);
                bytes
            } else {
                random
            };
            let whole = parse(&bytes);
            let mut reader = ClientHelloReader::new();
            let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            ends.sort_unstable();
            let mut last = Parsed::Incomplete;
            for end in ends {
                let now = reader.read(&bytes[..end]);
                if last != Parsed::Incomplete {
                    prop_assert_eq!(&now, &last);
                }
                last = now;
            }
            let fed = reader.read(&bytes);
            if last == Parsed::Incomplete {
                prop_assert_eq!(fed, whole);
            }
        }

        /// A ClientHello with arbitrary bytes in its extensions, records and name never
        /// panics either (most such input is past the record layer's checks).
        #[test]
        fn arbitrary_client_hello_contents_never_panic(
            name in proptest::collection::vec(any::<u8>(), 0..300),
            other in proptest::collection::vec(any::<u8>(), 0..300),
            record in 1usize..200,
            flip in any::<(usize, u8)>(),
        ) {
            let mut hello = hand_made(&[(7, other), sni_extension(&[(HOST_NAME, &name)])], record);
            let at = flip.0 % hello.len();
            let _ = parse(&hello);
            hello[at] ^= flip.1;
            let _ = parse(&hello);
            for end in 0..hello.len() {
                let _ = parse(&hello[..end]);
            }
        }

        /// A real ClientHello for any host name reads as that name, in any cut of reads.
        #[test]
        fn real_client_hellos_read_their_name(labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1..5), cut in any::<usize>()) {
            let host = labels.join(".");
            let name = rustls::pki_types::ServerName::try_from(host.clone());
            prop_assume!(matches!(name, Ok(rustls::pki_types::ServerName::DnsName(_))));
            let hello = client_hello(&host, &[b"h2"]);
            let mut reader = ClientHelloReader::new();
            let cut = cut % hello.len();
            prop_assert_eq!(reader.read(&hello[..cut]), Parsed::Incomplete);
            prop_assert_eq!(reader.read(&hello), Parsed::Complete(Some(host)));
        }
    }
}
