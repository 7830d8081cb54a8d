//! New connections per second: every request on a new TCP connection, optionally with a full
//! TLS handshake (no session resumption, no early data), closed-loop over N concurrent clients.
//!
//! Each connection sends one `GET` with `Connection: close` and reads to the end, so the
//! server closes first (its side keeps the TIME_WAIT, the client's ephemeral ports stay free).
//! The certificate chain is not verified (the benchmark's certificate is self-signed), but the
//! handshake signature is, as any client would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::stats::{Samples, round3};
use crate::util::{connect, merge, parse_secs, status_of, write_get};

/// Arguments of `conn`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to connect to.
    #[arg(long)]
    addr: SocketAddr,
    /// `Host` of the requests, and the TLS server name (SNI).
    #[arg(long, default_value = "bench.local")]
    host: String,
    /// Path of the requests.
    #[arg(long, default_value = "/")]
    path: String,
    /// Full TLS handshake on every connection.
    #[arg(long)]
    tls: bool,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    duration: Duration,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    warmup: Duration,
}

/// What one client did in the measured window.
#[derive(Default)]
struct Outcome {
    samples: Samples,
    errors: u64,
    first_error: Option<String>,
}

/// Runs the clients and prints `{"conns", "conns_per_s", "p50_ms", "p99_ms", "errors", …}`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let tls = if args.tls {
        Some(TlsConnector::from(Arc::new(tls_client_config(&[
            b"http/1.1",
        ])?)))
    } else {
        None
    };
    let server_name = ServerName::try_from(args.host.clone())?;
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let args = Arc::new(args);
    let tasks: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (args, tls, name) = (args.clone(), tls.clone(), server_name.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < end {
                    let began = Instant::now();
                    let result = tokio::time::timeout(
                        Duration::from_secs(10),
                        one(&args, tls.as_ref(), name.clone()),
                    )
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                    let done = Instant::now();
                    let counted = began >= measure_from && done <= end;
                    match result {
                        Ok(()) if counted => outcome.samples.push(done - began),
                        Ok(()) => {}
                        Err(e) => {
                            if counted {
                                outcome.errors += 1;
                            }
                            outcome.first_error.get_or_insert(format!("{e:#}"));
                            // Do not spin on a refused port.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
                outcome
            })
        })
        .collect();
    let mut samples = Samples::default();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let outcome = task.await?;
        samples.merge(outcome.samples);
        errors += outcome.errors;
        if first_error.is_none() {
            first_error = outcome.first_error;
        }
    }
    let conns = samples.len();
    let mut out = json!({
        "tls": args.tls,
        "clients": args.connections,
        "conns": conns,
        "conns_per_s": round3(conns as f64 / args.duration.as_secs_f64()),
        "errors": errors,
        "first_error": first_error,
    });
    merge(&mut out, samples.summary_ms());
    println!("{out}");
    Ok(())
}

/// One connection, one request, read to the end.
async fn one(
    args: &Args,
    tls: Option<&TlsConnector>,
    name: ServerName<'static>,
) -> anyhow::Result<()> {
    let tcp = connect(args.addr).await.context("connect")?;
    match tls {
        Some(tls) => {
            let stream = tls.connect(name, tcp).await.context("TLS handshake")?;
            exchange(stream, args).await
        }
        None => exchange(tcp, args).await,
    }
}

/// Sends the request and reads the response until the server closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    args: &Args,
) -> anyhow::Result<()> {
    write_get(&mut stream, &args.host, &args.path, true).await?;
    let mut response = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify, after a whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
                break;
            }
            Err(e) => return Err(e).context("read"),
        }
    }
    let head = String::from_utf8_lossy(&response[..response.len().min(256)]);
    let status = status_of(&head)?;
    anyhow::ensure!(status == 200, "status {status}");
    Ok(())
}

/// A client configuration without session resumption and without chain verification,
/// offering the ALPN protocols `alpn`.
pub fn tls_client_config(alpn: &[&[u8]]) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Accepts any certificate chain, but checks handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
