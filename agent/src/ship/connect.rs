//! Opening the gRPC channel to the collector: TLS (rustls) with an optional
//! client certificate, a bearer token on every request, zstd compression.

use std::path::PathBuf;
use std::time::Duration;

use tonic::codec::CompressionEncoding;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use upid::wire::v1::agent_service_client::AgentServiceClient;

/// Where and how to reach the collector.
#[derive(Debug, Clone)]
pub struct CollectorEndpoint {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// Bearer token sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// PEM CA bundle that signed the collector's certificate (https only;
    /// the system roots are not used).
    pub ca_pem: Option<PathBuf>,
    /// PEM client certificate and key, for collectors that require one.
    pub client_cert_pem: Option<PathBuf>,
    /// Key of `client_cert_pem`.
    pub client_key_pem: Option<PathBuf>,
    /// Server name to verify, when it differs from the URL's host.
    pub tls_domain: Option<String>,
    /// Largest message sent or accepted.
    pub max_message_bytes: usize,
}

/// Why the collector could not be reached or configured.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL or TLS settings were rejected.
    #[error("collector endpoint {url}: {source}")]
    Endpoint {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// A certificate or key file could not be read.
    #[error("reading {path}: {source}")]
    ReadPem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token cannot be sent as an HTTP header.
    #[error("the bearer token contains characters not allowed in an HTTP header")]
    BadToken,
    /// A client certificate was given without its key, or the reverse.
    #[error("--client-cert and --client-key go together")]
    HalfIdentity,
    /// Connecting failed (refused, timed out, TLS handshake failed).
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Adds the bearer token to every request.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The agent's client type.
pub type Client = AgentServiceClient<InterceptedService<Channel, BearerToken>>;

fn read(path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::ReadPem {
        path: path.clone(),
        source,
    })
}

impl CollectorEndpoint {
    /// Checks the settings and builds the endpoint (no I/O on the network).
    pub fn endpoint(&self) -> Result<(Endpoint, BearerToken), ConnectError> {
        let url = self.url.clone();
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| ConnectError::Endpoint {
                url: url.clone(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            match (&self.client_cert_pem, &self.client_key_pem) {
                (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c)?, read(k)?)),
                (None, None) => {}
                _ => return Err(ConnectError::HalfIdentity),
            }
            if let Some(d) = &self.tls_domain {
                tls = tls.domain_name(d.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| ConnectError::Endpoint {
                    url: url.clone(),
                    source,
                })?;
        }
        let token = match &self.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ConnectError::BadToken)?,
            ),
            None => None,
        };
        Ok((endpoint, BearerToken(token)))
    }

    /// Connects and returns a client with compression and size limits set.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let (endpoint, token) = self.endpoint()?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ConnectError::Connect {
                url: self.url.clone(),
                source,
            })?;
        Ok(AgentServiceClient::with_interceptor(channel, token)
            .send_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_encoding_message_size(self.max_message_bytes)
            .max_decoding_message_size(self.max_message_bytes))
    }
}
