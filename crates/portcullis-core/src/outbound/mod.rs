//! Outbound HTTP: the one place that builds clients for requests the server makes itself
//! (JWKS and OIDC discovery, and the HTTP pack's requests, which also pass the SSRF guard of
//! [`ssrf`]).
//!
//! TLS is rustls with the `ring` provider, trusting the webpki (Mozilla) roots built into the
//! binary plus, optionally, the certificate authorities of a PEM file (a private identity
//! provider or internal API). No system proxy is consulted. Bodies are read up to a cap and
//! refused beyond it without being buffered whole.

mod ssrf;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

pub use ssrf::{AddressPolicy, PrivateAllowance, Refusal, is_public, refusal_of};

/// Why an outbound client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The CA file could not be read or holds no certificate.
    #[error("cannot use the CA file `{path}`: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// TLS or the HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// How an outbound client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request deadline (connect, send, receive).
    pub timeout: Duration,
    /// Deadline for the TCP and TLS connection alone.
    pub connect_timeout: Duration,
    /// Redirects followed (0: none).
    pub max_redirects: usize,
    /// Extra trusted certificate authorities (PEM).
    pub ca_file: Option<PathBuf>,
    /// The SSRF guard: where requests and redirects may go. `None` only for destinations
    /// the operator configured and the client cannot change (the JWKS).
    pub guard: Option<Arc<AddressPolicy>>,
    /// Refuse plain `http://` for every request and redirect (key material).
    pub https_only: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 3,
            ca_file: None,
            guard: None,
            https_only: false,
        }
    }
}

/// The TLS configuration of every outbound client: webpki roots plus `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, OutboundError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let ca_error = |reason: String| OutboundError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let pem = crate::operator_file::read(path).map_err(|e| ca_error(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("it holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutboundError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A client with TLS from [`tls_config`], the options' deadlines and redirect limit, no
/// proxy, and with a guard: every address checked after resolution (and pinned), every
/// redirect re-checked. Callers check the first URL with [`AddressPolicy::check_url`].
pub fn client(options: &ClientOptions) -> Result<reqwest::Client, OutboundError> {
    let tls = tls_config(options.ca_file.as_deref())?;
    let mut builder = reqwest::Client::builder();
    let redirect = match &options.guard {
        Some(policy) => {
            builder = builder.dns_resolver(Arc::new(ssrf::GuardedResolver {
                policy: Arc::clone(policy),
            }));
            ssrf::redirect_policy(Arc::clone(policy), options.max_redirects)
        }
        None if options.max_redirects == 0 => reqwest::redirect::Policy::none(),
        None => reqwest::redirect::Policy::limited(options.max_redirects),
    };
    builder
        .tls_backend_preconfigured(tls)
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .redirect(redirect)
        .no_proxy()
        // A `Referer` would hand the previous URL, query and all, to the next hop.
        .referer(false)
        .https_only(options.https_only)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OutboundError::Client(e.to_string()))
}

/// Why a capped read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is larger than the cap; reading stopped there.
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed while reading.
    #[error("reading the response failed: {0}")]
    Transport(String),
}

/// Reads `response`'s body, at most `max` bytes: a larger body (by `Content-Length` or as
/// it streams in) is refused without being buffered whole.
pub async fn read_capped(response: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Transport(describe(&e)))?;
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What went wrong with a request, without its URL (URLs can carry credentials and tokens
/// in their query): the kind of failure and the chain of causes.
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_redirect() {
        "too many redirects"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else if error.is_status() {
        "unexpected status"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
