//! A minimal Kubernetes API client for the cluster-mode configuration test: `POST`s of JSON
//! or YAML objects over one kept-alive HTTPS connection, with a bearer token and the API
//! server's CA, as a controller or `kubectl` would send them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::util::connect;

/// Where the API server is and how to authenticate to it (`gen --post`, `change --post`).
#[derive(clap::Args, Clone)]
pub struct ApiArgs {
    /// The API server (`https://HOST:PORT`).
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub apiserver: String,
    /// The CA certificate (PEM) that signed the API server's certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The environment variable holding the bearer token.
    #[arg(long, default_value = "WEIR_BENCH_KUBE_TOKEN")]
    pub token_env: String,
}

/// One connection to the API server.
pub struct ApiClient {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    authorization: String,
}

impl ApiClient {
    /// Connects (TCP and TLS, verifying the server against `--ca`).
    pub async fn connect(args: &ApiArgs) -> anyhow::Result<Self> {
        let authority = args
            .apiserver
            .strip_prefix("https://")
            .context("--apiserver must be https://HOST:PORT")?
            .trim_end_matches('/')
            .to_owned();
        let (host, _) = authority
            .rsplit_once(':')
            .context("--apiserver must name a port")?;
        let token = std::env::var(&args.token_env)
            .with_context(|| format!("the bearer token: ${} is not set", args.token_env))?;
        let ca = args.ca.as_ref().context("--ca is required with --post")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("cannot read {}", ca.display()))?
        {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let addr = tokio::net::lookup_host(&authority)
            .await?
            .next()
            .context("the API server's address does not resolve")?;
        let tcp = connect(addr).await?;
        let name = ServerName::try_from(host.to_owned())?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority,
            authorization: format!("Bearer {token}"),
        })
    }

    /// `POST`s `body` (JSON when it starts with `{`, YAML otherwise) to `path`. A 409
    /// (already exists) is an error unless `exists_ok`.
    pub async fn post(&mut self, path: &str, body: String, exists_ok: bool) -> anyhow::Result<()> {
        let content_type = if body.trim_start().starts_with('{') {
            "application/json"
        } else {
            "application/yaml"
        };
        let request = http::Request::post(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::AUTHORIZATION, &self.authorization)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        if status.is_success() || (exists_ok && status == http::StatusCode::CONFLICT) {
            return Ok(());
        }
        bail!(
            "POST {path}: {status}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        )
    }
}
