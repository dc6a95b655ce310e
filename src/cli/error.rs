//! What can go wrong in `upid`, each error saying what was tried and what
//! to do about it, and the reading of transport errors into those cases.

use std::path::PathBuf;

/// Why a `upid` command failed. Every message names the collector (or file)
/// involved and ends with what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--server` is not a usable URL.
    #[error(
        "invalid --server `{server}`: {reason}; use a URL like http://127.0.0.1:7070 or https://collector.example.com:7070"
    )]
    BadServer {
        /// What was given.
        server: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file named by a flag could not be read.
    #[error("cannot read {flag} {}: {source}", path.display())]
    ReadFile {
        /// The flag that named it, e.g. `--ca`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file holds no token.
    #[error("the token file {} is empty: put the token on its first line", path.display())]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The token cannot travel in an HTTP header.
    #[error(
        "the token in {} contains characters not allowed in an HTTP header (control characters or non-ASCII): write the token alone on the first line",
        path.display()
    )]
    BadToken {
        /// The file.
        path: PathBuf,
    },
    /// Only one of `--client-cert` and `--client-key` was given.
    #[error("--client-cert and --client-key go together: pass both, or neither")]
    HalfIdentity,
    /// https without `--ca`, and no system CA bundle on this machine.
    #[error(
        "{server} uses TLS but no --ca was given and no system CA bundle was found (tried {tried}): pass --ca PEM (or set UPID_CA) with the CA that signed the collector's certificate"
    )]
    NoTrustRoots {
        /// The collector URL.
        server: String,
        /// The bundle paths looked at.
        tried: String,
    },
    /// The TLS settings could not be used.
    #[error(
        "the TLS settings for {server} were rejected ({cause}): check that --ca, --client-cert and --client-key are PEM files"
    )]
    TlsConfig {
        /// The collector URL.
        server: String,
        /// Why.
        cause: String,
    },
    /// Nothing answers at the address.
    #[error(
        "cannot reach the collector at {server} ({cause}): is `upid-collector standalone` running? set --server or UPID_SERVER"
    )]
    Unreachable {
        /// The collector URL.
        server: String,
        /// What the connection attempt said.
        cause: String,
    },
    /// The host name does not resolve.
    #[error(
        "cannot resolve the host of {server} ({cause}): check the host name in --server or UPID_SERVER, or use an IP address"
    )]
    Unresolvable {
        /// The collector URL.
        server: String,
        /// What the resolver said.
        cause: String,
    },
    /// No answer in time.
    #[error(
        "the collector at {server} did not answer within {timeout} ({cause}): check the address and any firewall, or raise --timeout"
    )]
    Timeout {
        /// The collector URL.
        server: String,
        /// The timeout, e.g. `10s`.
        timeout: String,
        /// What timed out.
        cause: String,
    },
    /// The TLS handshake failed.
    #[error("TLS with the collector at {server} failed ({cause}): {}", .problem.fix())]
    Tls {
        /// The collector URL.
        server: String,
        /// What the TLS library said.
        cause: String,
        /// What that means.
        problem: TlsProblem,
    },
    /// http:// against a TLS server, or https:// against a plaintext one.
    #[error("{server}: {}", .mismatch.explain())]
    SchemeMismatch {
        /// The collector URL.
        server: String,
        /// Which way round.
        mismatch: SchemeMismatch,
    },
    /// The collector wants a token and none was sent.
    #[error(
        "the collector at {server} requires a bearer token ({detail}): pass --token-file FILE or set UPID_TOKEN_FILE (a token of role `query` from the collector's --tokens-file)"
    )]
    TokenRequired {
        /// The collector URL.
        server: String,
        /// The server's message.
        detail: String,
    },
    /// The collector does not know the token sent.
    #[error(
        "the collector at {server} rejected the token from {} ({detail}): check that it matches a line of the collector's --tokens-file",
        token_file.display()
    )]
    TokenRejected {
        /// The collector URL.
        server: String,
        /// Where the token came from.
        token_file: PathBuf,
        /// The server's message.
        detail: String,
    },
    /// The token's role does not allow queries.
    #[error(
        "the token from {} may not query the collector at {server} ({detail}): use a token of role `query` or `admin` in the collector's --tokens-file",
        token_file.display()
    )]
    PermissionDenied {
        /// The collector URL.
        server: String,
        /// Where the token came from.
        token_file: PathBuf,
        /// The server's message.
        detail: String,
    },
    /// No container matches the id asked for.
    #[error(
        "no container matches `{id}` on the collector at {server} ({detail}): list them with `upid get containers --all`"
    )]
    NotFound {
        /// The id asked for.
        id: String,
        /// The collector URL.
        server: String,
        /// The server's message.
        detail: String,
    },
    /// The collector refused the request as asked (e.g. an ambiguous id).
    #[error("the collector at {server} rejected the request: {detail}")]
    InvalidArgument {
        /// The collector URL.
        server: String,
        /// The server's message.
        detail: String,
    },
    /// The collector does not implement the call: it is older.
    #[error(
        "the collector at {server} does not implement {method} ({detail}): it is older than this upid {client_version}; upgrade the collector, or use the upid that matches it (see `upid doctor`)"
    )]
    Unimplemented {
        /// The collector URL.
        server: String,
        /// The gRPC method.
        method: &'static str,
        /// The server's message.
        detail: String,
        /// This client's version.
        client_version: &'static str,
    },
    /// Any other gRPC failure.
    #[error("{method} on the collector at {server} failed: {code}: {detail}")]
    Rpc {
        /// The collector URL.
        server: String,
        /// The gRPC method.
        method: &'static str,
        /// The gRPC status code.
        code: String,
        /// The server's message.
        detail: String,
    },
    /// Flags that parse one by one but cannot be used together as given.
    #[error("invalid {flag}: {reason}")]
    BadFlag {
        /// The flag or flags, e.g. `--since/--until`.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Output could not be encoded.
    #[error("cannot write {format} output: {cause}")]
    Encode {
        /// `json` or `yaml`.
        format: &'static str,
        /// Why.
        cause: String,
    },
    /// `upid updates apply` refused or failed; the message says what state
    /// the containers are in and what to do.
    #[error("{message}")]
    Apply {
        /// What happened and what to do.
        message: String,
    },
    /// `upid export` could not write a file, or what arrived is not what
    /// the collector announced (a checksum or size mismatch, a path outside
    /// the directory). Files already completed stay; the failed one is
    /// left as it was.
    #[error("upid export: {message}")]
    Export {
        /// What went wrong, naming the file.
        message: String,
    },
}

impl CliError {
    /// What went wrong, without the advice: the underlying cause as the
    /// library or the server said it.
    pub fn cause(&self) -> String {
        match self {
            CliError::BadServer { reason, .. } => reason.clone(),
            CliError::ReadFile { source, .. } => source.to_string(),
            CliError::EmptyToken { .. } => "the token file is empty".into(),
            CliError::BadToken { .. } => "the token is not a valid HTTP header value".into(),
            CliError::HalfIdentity => "only one of --client-cert and --client-key".into(),
            CliError::NoTrustRoots { tried, .. } => format!("no --ca and no CA bundle at {tried}"),
            CliError::TlsConfig { cause, .. }
            | CliError::Unreachable { cause, .. }
            | CliError::Unresolvable { cause, .. }
            | CliError::Timeout { cause, .. }
            | CliError::Tls { cause, .. }
            | CliError::Encode { cause, .. } => cause.clone(),
            CliError::Apply { message } | CliError::Export { message } => message.clone(),
            CliError::BadFlag { reason, .. } => reason.clone(),
            CliError::SchemeMismatch { mismatch, .. } => match mismatch {
                SchemeMismatch::ServerWantsTls => "the collector speaks TLS, the URL says http://",
                SchemeMismatch::ServerIsPlaintext => {
                    "the collector speaks plain HTTP/2, the URL says https://"
                }
                SchemeMismatch::NotGrpc => "the port answers HTTP/1, not gRPC",
            }
            .into(),
            CliError::TokenRequired { detail, .. }
            | CliError::TokenRejected { detail, .. }
            | CliError::PermissionDenied { detail, .. }
            | CliError::NotFound { detail, .. }
            | CliError::InvalidArgument { detail, .. }
            | CliError::Unimplemented { detail, .. } => detail.clone(),
            CliError::Rpc { code, detail, .. } => format!("{code}: {detail}"),
        }
    }

    /// What to do about it, as one imperative sentence.
    pub fn fix(&self) -> String {
        match self {
            CliError::BadServer { .. } => {
                "use a URL like http://127.0.0.1:7070 or https://collector.example.com:7070 in --server or UPID_SERVER".into()
            }
            CliError::ReadFile { flag, path, .. } => {
                format!("check the path and permissions of {} (given to {flag})", path.display())
            }
            CliError::EmptyToken { .. } | CliError::BadToken { .. } => {
                "write the token alone on the first line of the --token-file".into()
            }
            CliError::HalfIdentity => "pass both --client-cert and --client-key, or neither".into(),
            CliError::NoTrustRoots { .. } => {
                "pass --ca PEM (or set UPID_CA) with the CA that signed the collector's certificate".into()
            }
            CliError::TlsConfig { .. } => {
                "check that --ca, --client-cert and --client-key are PEM files (certificate, certificate, private key)".into()
            }
            CliError::Unreachable { .. } => {
                "start the collector (`upid-collector standalone`, or `serve` for a cluster), or point --server / UPID_SERVER at it (default port 7070)".into()
            }
            CliError::Unresolvable { .. } => {
                "check the host name in --server or UPID_SERVER and this machine's DNS, or use an IP address".into()
            }
            CliError::Timeout { .. } => {
                "check that the host is up and that no firewall drops the port; raise --timeout on a slow link".into()
            }
            CliError::Tls { problem, .. } => problem.fix().into(),
            CliError::SchemeMismatch { mismatch, .. } => mismatch.explain().into(),
            CliError::TokenRequired { .. } => {
                "pass --token-file FILE (or set UPID_TOKEN_FILE) holding a token of role `query` from the collector's --tokens-file".into()
            }
            CliError::TokenRejected { token_file, .. } => format!(
                "check that the token in {} matches a line `NAME TOKEN query` of the collector's --tokens-file",
                token_file.display()
            ),
            CliError::PermissionDenied { .. } => {
                "give the token role `query` (or `admin`) in the collector's --tokens-file: `NAME TOKEN query`".into()
            }
            CliError::NotFound { .. } => "list containers with `upid get containers --all`".into(),
            CliError::InvalidArgument { .. } => "correct the request as the collector says".into(),
            CliError::Unimplemented { client_version, .. } => format!(
                "upgrade the collector to {client_version}, or use the upid that matches it"
            ),
            CliError::Rpc { .. } => {
                "look at the collector's log; retry with a longer --timeout if it is busy".into()
            }
            CliError::BadFlag { flag, .. } => format!("correct {flag} (see `upid help`)"),
            CliError::Encode { .. } => "report this as a bug".into(),
            CliError::Apply { .. } => {
                "see `upid updates` for the decision and `upid updates events` for what was recorded".into()
            }
            CliError::Export { .. } => {
                "check that --out is writable and has room, then run the same export again (completed files are replaced atomically)".into()
            }
        }
    }
}

/// Which TLS problem a handshake error points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// The collector's certificate is signed by a CA we do not trust.
    UnknownIssuer,
    /// The certificate is not valid for the name we asked for.
    WrongName,
    /// The certificate is expired or not valid yet.
    Expired,
    /// The collector wants a client certificate and got none.
    ClientCertRequired,
    /// The collector did not accept the client certificate sent.
    ClientCertRejected,
    /// Something else.
    Other,
}

impl TlsProblem {
    /// What to do about it.
    pub fn fix(self) -> &'static str {
        match self {
            TlsProblem::UnknownIssuer => {
                "pass --ca (or UPID_CA) with the PEM of the CA that signed the collector's certificate"
            }
            TlsProblem::WrongName => {
                "pass --tls-domain (or UPID_TLS_DOMAIN) with a name the collector's certificate is valid for, or use that name in --server"
            }
            TlsProblem::Expired => {
                "the collector's certificate is expired or not valid yet: renew it, or check this machine's clock"
            }
            TlsProblem::ClientCertRequired => {
                "the collector requires a client certificate: pass --client-cert and --client-key (signed by the CA given to the collector's --client-ca)"
            }
            TlsProblem::ClientCertRejected => {
                "the collector does not accept this client certificate: use one signed by the CA given to the collector's --client-ca"
            }
            TlsProblem::Other => {
                "check --ca, --client-cert/--client-key and --tls-domain, then run `upid doctor`"
            }
        }
    }
}

/// The URL's scheme and what the server speaks disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeMismatch {
    /// `http://` given, the server speaks TLS.
    ServerWantsTls,
    /// `https://` given, the server speaks plaintext HTTP/2.
    ServerIsPlaintext,
    /// The port answers HTTP/1 (e.g. the metrics port), not gRPC.
    NotGrpc,
}

impl SchemeMismatch {
    /// What happened and what to do.
    pub fn explain(self) -> &'static str {
        match self {
            SchemeMismatch::ServerWantsTls => {
                "the collector speaks TLS but --server uses http://: use https:// (with --ca for its CA)"
            }
            SchemeMismatch::ServerIsPlaintext => {
                "the collector speaks plain HTTP/2 without TLS but --server uses https://: use http://, or start the collector with --tls-cert and --tls-key"
            }
            SchemeMismatch::NotGrpc => {
                "this port answers HTTP/1, not gRPC (is it the collector's /metrics port?): point --server at the gRPC port (default 7070)"
            }
        }
    }
}

/// What a failed connection attempt comes down to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// Connection refused: nothing listens.
    Refused,
    /// The host name does not resolve.
    Dns,
    /// No answer in time.
    TimedOut,
    /// The TLS handshake failed.
    Tls(TlsProblem),
    /// Something else (reset, protocol error, ...).
    Other,
}

/// An error and its sources as one line, `outer: inner: innermost`, with
/// repeated messages left out.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // tonic's wrapper says nothing its source does not say better.
        let generic = text == "transport error" && e.source().is_some();
        if !generic && !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Reads what kind of failure an error chain describes (as text, since the
/// layers between tonic, hyper and rustls do not expose typed causes).
pub fn classify(chain: &str) -> TransportFailure {
    let t = chain.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    if has(&["connection refused"]) {
        TransportFailure::Refused
    } else if has(&[
        "failed to lookup address",
        "name or service not known",
        "no address associated",
        "temporary failure in name resolution",
        "nodename nor servname",
        "dns error",
    ]) {
        TransportFailure::Dns
    } else if has(&["timed out", "timeout expired", "deadline has elapsed"]) {
        TransportFailure::TimedOut
    } else if has(&["unknownissuer", "unknown issuer", "unknownca", "unknown ca"])
        && !has(&["received fatal alert"])
    {
        TransportFailure::Tls(TlsProblem::UnknownIssuer)
    } else if has(&["notvalidforname", "not valid for name"]) {
        TransportFailure::Tls(TlsProblem::WrongName)
    } else if has(&["expired", "notvalidyet", "not valid yet"]) {
        TransportFailure::Tls(TlsProblem::Expired)
    } else if has(&["alert: certificaterequired", "alert: handshakefailure"]) {
        TransportFailure::Tls(TlsProblem::ClientCertRequired)
    } else if has(&[
        "alert: unknownca",
        "alert: badcertificate",
        "alert: certificateunknown",
        "alert: decrypterror",
        "alert: accessdenied",
    ]) {
        TransportFailure::Tls(TlsProblem::ClientCertRejected)
    } else if has(&[
        "invalid peer certificate",
        "received fatal alert",
        "tls handshake",
        "peer is incompatible",
        "peer misbehaved",
        "corrupt message",
    ]) {
        TransportFailure::Tls(TlsProblem::Other)
    } else {
        TransportFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connections_are_read_as_refused() {
        let chain = "transport error: error trying to connect: tcp connect error: Connection refused (os error 111)";
        assert_eq!(classify(chain), TransportFailure::Refused);
    }

    #[test]
    fn resolver_failures_are_read_as_dns() {
        let chain = "error trying to connect: dns error: failed to lookup address information: Name or service not known";
        assert_eq!(classify(chain), TransportFailure::Dns);
    }

    #[test]
    fn rustls_errors_name_their_fix() {
        let cases = [
            (
                "invalid peer certificate: UnknownIssuer",
                TlsProblem::UnknownIssuer,
            ),
            (
                "invalid peer certificate: certificate not valid for name \"x\"; certificate is only valid for y",
                TlsProblem::WrongName,
            ),
            (
                "invalid peer certificate: certificate expired: verification time 2 (UNIX), but certificate is not valid after 1 (1 seconds ago)",
                TlsProblem::Expired,
            ),
            (
                "received fatal alert: CertificateRequired",
                TlsProblem::ClientCertRequired,
            ),
            (
                "received fatal alert: UnknownCA",
                TlsProblem::ClientCertRejected,
            ),
            ("received fatal alert: ProtocolVersion", TlsProblem::Other),
        ];
        for (chain, problem) in cases {
            assert_eq!(classify(chain), TransportFailure::Tls(problem), "{chain}");
        }
        assert!(TlsProblem::UnknownIssuer.fix().contains("--ca"));
        assert!(
            TlsProblem::ClientCertRequired
                .fix()
                .contains("--client-cert")
        );
        assert!(TlsProblem::WrongName.fix().contains("--tls-domain"));
    }

    #[test]
    fn unreachable_says_what_was_tried_and_what_to_do() {
        let e = CliError::Unreachable {
            server: "http://127.0.0.1:7070".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the collector at http://127.0.0.1:7070 (connection refused): is `upid-collector standalone` running? set --server or UPID_SERVER"
        );
    }

    #[test]
    fn auth_errors_name_the_flag_and_the_role() {
        let e = CliError::TokenRequired {
            server: "https://c:7070".into(),
            detail: "missing bearer token".into(),
        };
        assert!(e.to_string().contains("--token-file"), "{e}");
        let e = CliError::PermissionDenied {
            server: "https://c:7070".into(),
            token_file: "/etc/upid/token".into(),
            detail: "role agent".into(),
        };
        let text = e.to_string();
        assert!(text.contains("/etc/upid/token"), "{text}");
        assert!(text.contains("`query`"), "{text}");
    }

    #[test]
    fn a_scheme_mismatch_says_which_scheme_to_use() {
        let e = CliError::SchemeMismatch {
            server: "http://c:7070".into(),
            mismatch: SchemeMismatch::ServerWantsTls,
        };
        assert!(e.to_string().contains("use https://"), "{e}");
        let e = CliError::SchemeMismatch {
            server: "https://c:7070".into(),
            mismatch: SchemeMismatch::ServerIsPlaintext,
        };
        assert!(e.to_string().contains("use http://"), "{e}");
    }

    #[test]
    fn error_chains_drop_repeated_messages() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(inner)), "connect failed: refused");
    }
}
