//! Reaching the collector: the URL, TLS, the bearer token and timeouts, and
//! the reading of connection failures into [`CliError`]s that say what to do.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::codec::CompressionEncoding;
use tonic::codegen::http::Uri;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_client::HealthClient;

use crate::cli::args::ConnectArgs;
use crate::cli::error::{
    CliError, SchemeMismatch, TlsProblem, TransportFailure, classify, error_chain,
};
use crate::cli::probe::{self, Speaks};
use crate::wire::v1::query_service_client::QueryServiceClient;

/// Largest answer accepted (a listing of many thousands of containers).
pub const MAX_DECODING_MESSAGE_BYTES: usize = 64 << 20;

/// Where the system CA bundle usually is, after `$SSL_CERT_FILE`.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The collector's address, parsed from `--server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Normalised URL, `scheme://host:port`.
    pub url: String,
    /// `https://`: TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (URL defaults: 80 for http, 443 for https).
    pub port: u16,
}

impl Target {
    /// Parses `--server`. A bare `HOST:PORT` means `http://HOST:PORT`.
    pub fn parse(server: &str) -> Result<Target, CliError> {
        let bad = |reason: &str| CliError::BadServer {
            server: server.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = server.trim();
        if trimmed.is_empty() {
            return Err(bad("it is empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let uri: Uri = with_scheme.parse().map_err(|e| bad(&format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(bad(&format!("scheme {other}:// is not http or https"))),
            None => return Err(bad("no scheme")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        if !matches!(uri.path(), "" | "/") {
            return Err(bad("a path is not allowed"));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{host}:{port}");
        Ok(Target {
            url,
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }

    /// Resolves the host to socket addresses.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect())
    }
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Debug, Clone)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The query client `upid` uses.
pub type QueryClient = QueryServiceClient<InterceptedService<Channel, BearerAuth>>;

/// How the collector's certificate is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// `--ca`.
    Ca(PathBuf),
    /// The system bundle found at this path.
    System(PathBuf),
}

impl std::fmt::Display for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustRoots::Ca(p) => write!(f, "--ca {}", p.display()),
            TrustRoots::System(p) => write!(f, "the system CA bundle {}", p.display()),
        }
    }
}

/// Checked connection settings, with every file read; nothing on the
/// network yet.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the collector is.
    pub target: Target,
    /// TLS settings for https.
    tls: Option<ClientTlsConfig>,
    /// What the collector's certificate is verified against (https only).
    pub trust: Option<TrustRoots>,
    /// Whether a client certificate is presented.
    pub client_cert: bool,
    /// The bearer token header value.
    token: Option<MetadataValue<Ascii>>,
    /// Where the token came from.
    pub token_file: Option<PathBuf>,
    /// Connect and per-request timeout.
    pub timeout: Duration,
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::ReadFile {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// The system CA bundles to look for, `$SSL_CERT_FILE` first.
pub fn system_ca_candidates(ssl_cert_file: Option<OsString>) -> Vec<PathBuf> {
    ssl_cert_file
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
        .collect()
}

/// The bearer token in a token file: its first non-empty line, trimmed.
pub fn parse_token(path: &Path, text: &str) -> Result<MetadataValue<Ascii>, CliError> {
    let token = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| CliError::EmptyToken {
            path: path.to_owned(),
        })?;
    format!("Bearer {token}")
        .parse()
        .map_err(|_| CliError::BadToken {
            path: path.to_owned(),
        })
}

impl Settings {
    /// Checks the flags and reads the CA, client certificate and token
    /// files. `ssl_cert_file` is `$SSL_CERT_FILE`.
    pub fn from_args(
        args: &ConnectArgs,
        ssl_cert_file: Option<OsString>,
    ) -> Result<Settings, CliError> {
        let target = Target::parse(&args.server)?;
        let (tls, trust, client_cert) = if target.tls {
            let mut tls = ClientTlsConfig::new().timeout(args.timeout);
            let trust = match &args.ca {
                Some(ca) => {
                    tls = tls.ca_certificate(Certificate::from_pem(read("--ca", ca)?));
                    TrustRoots::Ca(ca.clone())
                }
                None => {
                    let candidates = system_ca_candidates(ssl_cert_file);
                    let found = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                        CliError::NoTrustRoots {
                            server: target.url.clone(),
                            tried: candidates
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    })?;
                    tls = tls.ca_certificate(Certificate::from_pem(read(
                        "the system CA bundle",
                        found,
                    )?));
                    TrustRoots::System(found.clone())
                }
            };
            let client_cert = match (&args.client_cert, &args.client_key) {
                (Some(c), Some(k)) => {
                    tls = tls.identity(Identity::from_pem(
                        read("--client-cert", c)?,
                        read("--client-key", k)?,
                    ));
                    true
                }
                (None, None) => false,
                _ => return Err(CliError::HalfIdentity),
            };
            if let Some(d) = &args.tls_domain {
                tls = tls.domain_name(d.clone());
            }
            (Some(tls), Some(trust), client_cert)
        } else {
            (None, None, false)
        };
        let token = match &args.token_file {
            Some(path) => {
                let bytes = read("--token-file", path)?;
                Some(parse_token(path, &String::from_utf8_lossy(&bytes))?)
            }
            None => None,
        };
        Ok(Settings {
            target,
            tls,
            trust,
            client_cert,
            token,
            token_file: args.token_file.clone(),
            timeout: args.timeout,
        })
    }

    /// Whether a bearer token is sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The tonic endpoint for these settings.
    pub fn endpoint(&self) -> Result<Endpoint, CliError> {
        let endpoint = Endpoint::from_shared(self.target.url.clone())
            .map_err(|e| CliError::BadServer {
                server: self.target.url.clone(),
                reason: error_chain(&e),
            })?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .map_err(|e| CliError::TlsConfig {
                    server: self.target.url.clone(),
                    cause: error_chain(&e),
                }),
            None => Ok(endpoint),
        }
    }

    /// Opens the connection (TCP, then TLS for https, then HTTP/2).
    pub async fn connect(&self) -> Result<Connection, CliError> {
        let endpoint = self.endpoint()?;
        match endpoint.connect().await {
            Ok(channel) => Ok(Connection {
                channel,
                auth: BearerAuth(self.token.clone()),
            }),
            Err(e) => Err(self.explain(self.transport_error(&error_chain(&e))).await),
        }
    }

    /// The error for a failed connection, from its error chain.
    pub fn transport_error(&self, chain: &str) -> CliError {
        let server = self.target.url.clone();
        match classify(chain) {
            TransportFailure::Refused => CliError::Unreachable {
                server,
                cause: "connection refused".into(),
            },
            TransportFailure::Dns => CliError::Unresolvable {
                server,
                cause: chain.to_owned(),
            },
            TransportFailure::TimedOut => CliError::Timeout {
                server,
                timeout: humantime::format_duration(self.timeout).to_string(),
                cause: chain.to_owned(),
            },
            TransportFailure::Tls(problem) => CliError::Tls {
                server,
                cause: chain.to_owned(),
                problem,
            },
            TransportFailure::Other => CliError::Unreachable {
                server,
                cause: chain.to_owned(),
            },
        }
    }

    /// The error for a failed call.
    ///
    /// `container_id` is the id asked for, when `NOT_FOUND` means "no such
    /// container".
    pub fn status_error(
        &self,
        method: &'static str,
        status: &tonic::Status,
        container_id: Option<&str>,
    ) -> CliError {
        use tonic::Code;
        let server = self.target.url.clone();
        let detail = status.message().to_owned();
        match status.code() {
            Code::Unauthenticated => match &self.token_file {
                Some(token_file) if self.has_token() => CliError::TokenRejected {
                    server,
                    token_file: token_file.clone(),
                    detail,
                },
                _ => CliError::TokenRequired { server, detail },
            },
            Code::PermissionDenied => match &self.token_file {
                Some(token_file) => CliError::PermissionDenied {
                    server,
                    token_file: token_file.clone(),
                    detail,
                },
                None => CliError::TokenRequired { server, detail },
            },
            Code::NotFound if container_id.is_some() => CliError::NotFound {
                id: container_id.unwrap_or_default().to_owned(),
                server,
                detail,
            },
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                CliError::InvalidArgument { server, detail }
            }
            Code::Unimplemented => CliError::Unimplemented {
                server,
                method,
                detail,
                client_version: env!("CARGO_PKG_VERSION"),
            },
            Code::DeadlineExceeded => CliError::Timeout {
                server,
                timeout: humantime::format_duration(self.timeout).to_string(),
                cause: detail,
            },
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled => {
                // A status with a source was made on this side from a
                // transport error; one without came from the collector.
                let source = std::error::Error::source(status);
                let chain = match source {
                    Some(source) => {
                        let rest = error_chain(source);
                        if detail == "transport error" || rest.contains(&detail) {
                            rest
                        } else {
                            format!("{detail}: {rest}")
                        }
                    }
                    None => detail.clone(),
                };
                let from_transport = source.is_some() || status.code() == Code::Unavailable;
                match classify(&chain) {
                    TransportFailure::Other if !from_transport => CliError::Rpc {
                        server,
                        method,
                        code: format!("{:?}", status.code()),
                        detail,
                    },
                    _ => self.transport_error(&chain),
                }
            }
            code => CliError::Rpc {
                server,
                method,
                code: format!("{code:?}"),
                detail,
            },
        }
    }

    /// For a connection failure with no clear cause, asks the port what it
    /// speaks, and explains a scheme mismatch (http:// against TLS or the
    /// reverse) when that is what happened.
    pub async fn explain(&self, err: CliError) -> CliError {
        let unclear = matches!(
            &err,
            CliError::Unreachable { cause, .. } if cause != "connection refused"
        ) || matches!(&err, CliError::Tls { .. } | CliError::Rpc { .. });
        if !unclear {
            return err;
        }
        let Ok(addrs) = self.target.resolve().await else {
            return err;
        };
        let Some(addr) = addrs.first() else {
            return err;
        };
        let speaks = match probe::sniff(*addr, self.timeout).await {
            Ok(speaks) => speaks,
            Err(_) => return err,
        };
        if let Some(mismatch) = mismatch(self.target.tls, &speaks) {
            return CliError::SchemeMismatch {
                server: self.target.url.clone(),
                mismatch,
            };
        }
        // With TLS 1.3 a collector that wants a client certificate finds
        // out only after the handshake, and hangs up without a word the
        // client sees.
        if self.target.tls
            && !self.client_cert
            && !matches!(err, CliError::Tls { .. })
            && hung_up(&err.cause())
        {
            return CliError::Tls {
                server: self.target.url.clone(),
                cause: format!(
                    "the collector closed the connection after the handshake ({}), as one that requires a client certificate does",
                    err.cause()
                ),
                problem: TlsProblem::ClientCertRequired,
            };
        }
        err
    }
}

/// Whether a failure reads as the connection going away under the call
/// (rather than an answer from the collector).
fn hung_up(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    [
        "connection closed",
        "operation was canceled",
        "connection reset",
        "broken pipe",
        "unexpected eof",
    ]
    .iter()
    .any(|n| c.contains(n))
}

/// Whether what a port speaks contradicts the URL's scheme.
pub fn mismatch(url_is_tls: bool, speaks: &Speaks) -> Option<SchemeMismatch> {
    match (url_is_tls, speaks) {
        (_, Speaks::Http1) => Some(SchemeMismatch::NotGrpc),
        (false, s) if s.is_tls_like() => Some(SchemeMismatch::ServerWantsTls),
        (true, Speaks::PlainHttp2) => Some(SchemeMismatch::ServerIsPlaintext),
        _ => None,
    }
}

/// An open connection to the collector.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    auth: BearerAuth,
}

impl Connection {
    /// A `upid.v1.QueryService` client sending the bearer token.
    pub fn query(&self) -> QueryClient {
        QueryServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
    }

    /// A `grpc.health.v1.Health` client (health needs no token).
    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str) -> ConnectArgs {
        ConnectArgs {
            server: server.into(),
            ca: None,
            client_cert: None,
            client_key: None,
            tls_domain: None,
            token_file: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn server_urls_are_normalised() {
        let t = Target::parse("http://127.0.0.1:7070").expect("parses");
        assert_eq!(t.url, "http://127.0.0.1:7070");
        assert!(!t.tls);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 7070));
        let t = Target::parse("collector:7070").expect("bare host:port");
        assert_eq!(t.url, "http://collector:7070");
        let t = Target::parse("https://collector.example").expect("https");
        assert_eq!((t.tls, t.port), (true, 443));
        let t = Target::parse("http://[::1]:7070/").expect("ipv6");
        assert_eq!(
            (t.host.as_str(), t.url.as_str()),
            ("::1", "http://[::1]:7070")
        );
    }

    #[test]
    fn unusable_server_urls_say_why() {
        for bad in ["", "ftp://x:1", "http://x:1/api", "http://:7070"] {
            let e = Target::parse(bad).expect_err(bad);
            assert!(
                e.to_string()
                    .contains("use a URL like http://127.0.0.1:7070"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn tokens_are_the_first_line_trimmed() {
        let v = parse_token(Path::new("t"), "\n  s3cret  \nignored\n").expect("token");
        assert_eq!(v.to_str().expect("ascii"), "Bearer s3cret");
        let e = parse_token(Path::new("/tmp/t"), " \n\n").expect_err("empty");
        assert!(e.to_string().contains("/tmp/t is empty"), "{e}");
        assert!(matches!(
            parse_token(Path::new("t"), "bad\u{7f}token"),
            Err(CliError::BadToken { .. })
        ));
    }

    #[test]
    fn a_missing_file_names_the_flag_and_the_path() {
        let mut a = args("https://c:7070");
        a.ca = Some("/nonexistent/ca.pem".into());
        let e = Settings::from_args(&a, None).expect_err("no such ca");
        assert!(
            e.to_string()
                .starts_with("cannot read --ca /nonexistent/ca.pem"),
            "{e}"
        );
        let mut a = args("http://c:7070");
        a.token_file = Some("/nonexistent/token".into());
        let e = Settings::from_args(&a, None).expect_err("no such token");
        assert!(
            e.to_string().contains("--token-file /nonexistent/token"),
            "{e}"
        );
    }

    #[test]
    fn half_a_client_identity_is_refused() {
        let dir = std::env::temp_dir().join(format!("upid-cli-half-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tempdir");
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, "").expect("write");
        let mut a = args("https://c:7070");
        a.ca = Some(pem.clone());
        a.client_cert = Some(pem);
        let e = Settings::from_args(&a, None).expect_err("half identity");
        assert!(matches!(e, CliError::HalfIdentity), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ssl_cert_file_is_looked_at_first() {
        let c = system_ca_candidates(Some("/my/bundle.pem".into()));
        assert_eq!(c[0], PathBuf::from("/my/bundle.pem"));
        assert_eq!(c.len(), SYSTEM_CA_BUNDLES.len() + 1);
        assert_eq!(
            system_ca_candidates(Some("".into())).len(),
            SYSTEM_CA_BUNDLES.len()
        );
    }

    #[test]
    fn statuses_become_errors_that_say_what_to_do() {
        let s = Settings::from_args(&args("http://127.0.0.1:7070"), None).expect("settings");
        let e = s.status_error(
            "ListNodes",
            &tonic::Status::unauthenticated("no token"),
            None,
        );
        assert!(matches!(e, CliError::TokenRequired { .. }), "{e}");
        let e = s.status_error(
            "GetContainer",
            &tonic::Status::not_found("no container abc"),
            Some("abc"),
        );
        assert!(e.to_string().contains("upid get containers --all"), "{e}");
        let e = s.status_error(
            "ListNodes",
            &tonic::Status::unavailable("tcp connect error: Connection refused (os error 111)"),
            None,
        );
        assert_eq!(
            e.to_string(),
            "cannot reach the collector at http://127.0.0.1:7070 (connection refused): is `upid-collector standalone` running? set --server or UPID_SERVER"
        );
        let e = s.status_error("Top", &tonic::Status::cancelled("Timeout expired"), None);
        assert!(matches!(e, CliError::Timeout { .. }), "{e}");
        let e = s.status_error("Top", &tonic::Status::unimplemented(""), None);
        assert!(e.to_string().contains("upgrade the collector"), "{e}");
    }

    #[test]
    fn hang_ups_are_told_from_answers() {
        assert!(hung_up(
            "connection error: stream closed because of a broken pipe"
        ));
        assert!(hung_up("operation was canceled: connection closed"));
        assert!(!hung_up("Internal: ListNodes: database is locked"));
    }

    #[test]
    fn client_side_transport_statuses_are_connection_errors() {
        let s = Settings::from_args(&args("http://127.0.0.1:7070"), None).expect("settings");
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        let status = tonic::Status::from_error(Box::new(io));
        let e = s.status_error("ListNodes", &status, None);
        assert!(
            matches!(
                e,
                CliError::Tls {
                    problem: TlsProblem::ClientCertRequired,
                    ..
                }
            ),
            "{e}"
        );
        // The same code sent by the collector is its answer, kept as is.
        let e = s.status_error("ListNodes", &tonic::Status::internal("db locked"), None);
        assert!(matches!(e, CliError::Rpc { .. }), "{e}");
    }

    #[test]
    fn scheme_mismatches_are_found_both_ways() {
        assert_eq!(
            mismatch(false, &Speaks::Tls),
            Some(SchemeMismatch::ServerWantsTls)
        );
        assert_eq!(
            mismatch(true, &Speaks::PlainHttp2),
            Some(SchemeMismatch::ServerIsPlaintext)
        );
        assert_eq!(mismatch(false, &Speaks::PlainHttp2), None);
        assert_eq!(mismatch(true, &Speaks::Tls), None);
        assert_eq!(
            mismatch(false, &Speaks::Http1),
            Some(SchemeMismatch::NotGrpc)
        );
    }
}
