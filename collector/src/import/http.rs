//! A small client for Prometheus' HTTP API (`/api/v1/query` and
//! `/api/v1/query_range`, POSTed as forms): hyper with rustls, an optional
//! bearer token and CA bundle.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::ImportError;

/// How long one query may take (Prometheus' own default timeout is 2 m).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(180);

/// One series of a query's result.
#[derive(Debug, Deserialize)]
pub struct Series {
    /// Its labels.
    pub metric: HashMap<String, String>,
    /// Range queries: `[unix seconds, "value"]` pairs.
    #[serde(default)]
    pub values: Vec<(f64, String)>,
    /// Instant queries: one pair.
    #[serde(default)]
    pub value: Option<(f64, String)>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

/// A Prometheus server.
pub struct Prometheus {
    base: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: Option<String>,
}

impl Prometheus {
    /// A client for the server at `url` (`http://host:9090`, with a path
    /// prefix if Prometheus runs under one).
    pub fn new(
        url: &str,
        bearer_token_file: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<Prometheus, ImportError> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base.parse().map_err(|e| ImportError::Invalid {
            setting: "--url",
            value: url.to_owned(),
            problem: format!("not a URL: {e}"),
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ImportError::Invalid {
                setting: "--url",
                value: url.to_owned(),
                problem: "expected http://HOST:PORT or https://HOST:PORT".into(),
            });
        }
        let token = match bearer_token_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ImportError::ReadFile {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some(text.trim().to_owned())
            }
            None => None,
        };
        let tls = tls_config(ca)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Prometheus {
            base,
            client,
            token,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `query_range` from `start_s` to `end_s` (inclusive) every `step_s`.
    pub async fn query_range(
        &self,
        promql: &str,
        start_s: i64,
        end_s: i64,
        step_s: u64,
    ) -> Result<Vec<Series>, ImportError> {
        self.call(
            "/api/v1/query_range",
            promql,
            &[
                ("query", promql.to_owned()),
                ("start", start_s.to_string()),
                ("end", end_s.to_string()),
                ("step", step_s.to_string()),
            ],
        )
        .await
    }

    /// An instant `query` at `time_s`.
    pub async fn query(&self, promql: &str, time_s: i64) -> Result<Vec<Series>, ImportError> {
        self.call(
            "/api/v1/query",
            promql,
            &[("query", promql.to_owned()), ("time", time_s.to_string())],
        )
        .await
    }

    async fn call(
        &self,
        path: &str,
        promql: &str,
        form: &[(&str, String)],
    ) -> Result<Vec<Series>, ImportError> {
        let url = format!("{}{path}", self.base);
        let fail = |problem: String| ImportError::Prometheus {
            url: url.clone(),
            query: promql.to_owned(),
            problem,
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let mut request = hyper::Request::post(&url)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(format!("building the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(format!("unreachable: {}", error_chain(&e))))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(format!("reading the response: {e}")))?
                .to_bytes();
            Ok::<_, ImportError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(QUERY_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {QUERY_TIMEOUT:?}")))??;
        let envelope: Envelope = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) if status.is_success() => {
                return Err(fail(format!(
                    "HTTP {status}, not a Prometheus API answer: {e}"
                )));
            }
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.trim().chars().take(300).collect();
                return Err(fail(format!("HTTP {status}: {text}")));
            }
        };
        if envelope.status != "success" {
            return Err(fail(format!(
                "HTTP {status}, status {}: {} {}",
                envelope.status,
                envelope.error_type.unwrap_or_default(),
                envelope.error.unwrap_or_default()
            )));
        }
        for w in &envelope.warnings {
            tracing::warn!(url = %url, query = promql, warning = %w, "Prometheus warning");
        }
        let data = envelope
            .data
            .ok_or_else(|| fail("status success without data".into()))?;
        if !matches!(data.result_type.as_str(), "matrix" | "vector") {
            return Err(fail(format!(
                "result type {} (expected matrix or vector)",
                data.result_type
            )));
        }
        Ok(data.result)
    }
}

/// rustls with ring: the roots in `ca` when given, else the system's.
fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, ImportError> {
    use hyper_rustls::ConfigBuilderExt;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ImportError::Tls(e.to_string()))?;
    let builder = match ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ImportError::Tls(format!("reading {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| ImportError::Tls(format!("parsing {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| ImportError::Tls(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(ImportError::Tls(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots)
        }
        // Without system roots plain http:// still works; https:// then
        // fails at the handshake, after this warning.
        None => match builder.clone().with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system CA certificates; pass --ca for https");
                builder.with_root_certificates(rustls::RootCertStore::empty())
            }
        },
    };
    Ok(builder.with_no_client_auth())
}

/// An error and its sources, `: `-separated (hyper's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
