//! One HTTP exchange with a registry: plain HTTP or HTTPS (rustls, ring)
//! chosen as Docker chooses, the per-host rate limit, a timeout and a size
//! cap, redirects, a retry or two of transient failures, and the cool-down
//! a 429 asks for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Counters, RegistryError};

/// Redirects followed for one request (blob downloads redirect to storage).
const MAX_REDIRECTS: usize = 5;
/// A registry's `Retry-After` blocks this client for at most this long.
const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A registry's answer, body read.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The URL that answered (after redirects).
    pub(crate) url: String,
}

impl Response {
    /// Every value of header `name` that is text.
    pub(crate) fn header_values(&self, name: header::HeaderName) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The first value of header `name` that is text.
    pub(crate) fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Settings of the transport.
pub(crate) struct TransportSettings {
    pub(crate) requests_per_second: u32,
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_bytes: u64,
    pub(crate) retries: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) insecure_registries: Vec<String>,
    pub(crate) ca_files: Vec<PathBuf>,
}

/// The HTTP side of the registry client.
pub(crate) struct Transport {
    client: HttpsClient,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    timeout: Duration,
    max_response_bytes: u64,
    retries: u32,
    retry_backoff: Duration,
    insecure: Vec<String>,
    counters: Arc<Counters>,
    blocked_until: Mutex<HashMap<String, Instant>>,
    /// The scheme a plain-HTTP-eligible host turned out to speak.
    learnt_schemes: Mutex<HashMap<String, &'static str>>,
}

impl Transport {
    pub(crate) fn new(
        settings: TransportSettings,
        counters: Arc<Counters>,
    ) -> Result<Transport, RegistryError> {
        if settings.request_timeout.is_zero() {
            return Err(RegistryError::Config {
                setting: "request_timeout",
                problem: "must be more than zero".into(),
            });
        }
        let tls = tls_config(&settings.ca_files)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.request_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        let limiter = NonZeroU32::new(settings.requests_per_second)
            .map(|rps| RateLimiter::keyed(Quota::per_second(rps)));
        Ok(Transport {
            client,
            limiter,
            timeout: settings.request_timeout,
            max_response_bytes: settings.max_response_bytes.max(1),
            retries: settings.retries,
            retry_backoff: settings.retry_backoff,
            insecure: settings
                .insecure_registries
                .iter()
                .map(|s| normalise_insecure(s))
                .collect(),
            counters,
            blocked_until: Mutex::new(HashMap::new()),
            learnt_schemes: Mutex::new(HashMap::new()),
        })
    }

    /// `http://host` or `https://host` for a registry host (with port):
    /// plain HTTP first for loopback and insecure registries, unless the
    /// host turned out to speak HTTPS.
    pub(crate) fn base_url(&self, host: &str) -> String {
        if let Some(scheme) = self.learnt_scheme(host) {
            format!("{scheme}://{host}")
        } else if plain_http_allowed(host, &self.insecure) {
            format!("http://{host}")
        } else {
            format!("https://{host}")
        }
    }

    fn learnt_scheme(&self, host: &str) -> Option<&'static str> {
        self.learnt_schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .copied()
    }

    fn learn_scheme(&self, host: &str, scheme: &'static str) {
        self.learnt_schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), scheme);
    }

    /// Whether `host` may be spoken to over plain HTTP.
    pub(crate) fn plain_http_allowed(&self, host: &str) -> bool {
        plain_http_allowed(host, &self.insecure)
    }

    /// One request, with redirects and retries; any status is returned
    /// except 429, which is an error (and blocks the host for `Retry-After`).
    /// `registry` names the registry in errors.
    ///
    /// The first plain-HTTP request to a loopback or insecure registry that
    /// answers as an HTTPS server would (Go's "Client sent an HTTP request to
    /// an HTTPS server", or a broken connection) is sent again over HTTPS, as
    /// Docker falls back between the two; the host's scheme is remembered.
    pub(crate) async fn exchange(
        &self,
        registry: &str,
        method: Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let host = host_of(url).to_string();
        let Some(rest) = url.strip_prefix("http://") else {
            return self
                .exchange_following(registry, method, url, accept, authorization)
                .await;
        };
        if self.learnt_scheme(&host).is_some() || !self.plain_http_allowed(&host) {
            return self
                .exchange_following(registry, method, url, accept, authorization)
                .await;
        }
        let plain = self
            .exchange_following(registry, method.clone(), url, accept, authorization)
            .await;
        let speaks_tls = match &plain {
            Ok(r) => {
                r.status == StatusCode::BAD_REQUEST
                    && String::from_utf8_lossy(&r.body).contains("HTTPS server")
            }
            Err(RegistryError::Unreachable { .. }) => true,
            Err(_) => false,
        };
        if !speaks_tls {
            if plain.is_ok() {
                self.learn_scheme(&host, "http");
            }
            return plain;
        }
        let tls_url = format!("https://{rest}");
        match self
            .exchange_following(registry, method, &tls_url, accept, authorization)
            .await
        {
            Ok(response) => {
                self.learn_scheme(&host, "https");
                Ok(response)
            }
            // A plain-HTTP answer saying "use HTTPS": the TLS error says why
            // that failed (an unknown CA, say). A dead host: the first error.
            Err(tls_error) => match plain {
                Ok(_) => Err(tls_error),
                Err(plain_error) => Err(plain_error),
            },
        }
    }

    async fn exchange_following(
        &self,
        registry: &str,
        method: Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut url = url.to_string();
        let mut authorization = authorization.map(str::to_string);
        let mut redirects = 0;
        loop {
            let response = self
                .exchange_retrying(registry, &method, &url, accept, authorization.as_deref())
                .await?;
            if !response.status.is_redirection() || response.status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            let Some(location) = response.header(header::LOCATION) else {
                return Ok(response);
            };
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(invalid(
                    registry,
                    &url,
                    response.status,
                    format!("more than {MAX_REDIRECTS} redirects"),
                ));
            }
            let next = super::link::resolve(&url, location);
            if url.starts_with("https://") && next.starts_with("http://") {
                return Err(invalid(
                    registry,
                    &url,
                    response.status,
                    format!("redirect from HTTPS to plain HTTP ({next}) refused"),
                ));
            }
            // Credentials stay with the host they are for.
            if host_of(&next) != host_of(&url) {
                authorization = None;
            }
            url = next;
        }
    }

    async fn exchange_retrying(
        &self,
        registry: &str,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 0;
        loop {
            let result = self
                .exchange_once(registry, method, url, accept, authorization)
                .await;
            let transient = match &result {
                Ok(r) => matches!(r.status.as_u16(), 500 | 502 | 503 | 504),
                Err(RegistryError::Unreachable { .. }) => true,
                Err(_) => false,
            };
            if !transient || attempt >= self.retries {
                return result;
            }
            let wait = self.retry_backoff.saturating_mul(1 << attempt.min(16));
            tracing::debug!(
                registry,
                url,
                attempt,
                ?wait,
                "transient registry failure, retrying"
            );
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn exchange_once(
        &self,
        registry: &str,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let host = host_of(url).to_string();
        if let Some(remaining) = self.cooling_down(&host) {
            return Err(RegistryError::RateLimited {
                registry: registry.to_string(),
                url: url.to_string(),
                retry_after_s: Some(remaining.as_secs().max(1)),
            });
        }
        if let Some(limiter) = &self.limiter
            && limiter.check_key(&host).is_err()
        {
            self.counters
                .rate_limit_waits
                .fetch_add(1, Ordering::Relaxed);
            limiter.until_key_ready(&host).await;
        }
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(
                header::USER_AGENT,
                concat!("upid/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(auth) = authorization {
            let mut value = HeaderValue::from_str(auth).map_err(|_| RegistryError::Config {
                setting: "credentials",
                problem: "the Authorization header would hold characters HTTP does not allow"
                    .into(),
            })?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| RegistryError::Reference {
                image: url.to_string(),
                problem: format!("not a valid request URL: {e}"),
            })?;
        self.counters.requests_sent.fetch_add(1, Ordering::Relaxed);
        let cap = self.max_response_bytes;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| RegistryError::Unreachable {
                        registry: registry.to_string(),
                        url: url.to_string(),
                        problem: error_chain(&e),
                    })?;
            let (parts, body) = response.into_parts();
            let too_large = || RegistryError::TooLarge {
                registry: registry.to_string(),
                url: url.to_string(),
                limit_bytes: cap,
            };
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if *method != Method::HEAD && declared.is_some_and(|n| n > cap) {
                return Err(too_large());
            }
            let limit = usize::try_from(cap).unwrap_or(usize::MAX);
            let body = Limited::new(body, limit).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    RegistryError::Unreachable {
                        registry: registry.to_string(),
                        url: url.to_string(),
                        problem: format!("reading the answer: {}", error_chain(&*e)),
                    }
                }
            })?;
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body: body.to_bytes(),
                url: url.to_string(),
            })
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RegistryError::Timeout {
                registry: registry.to_string(),
                url: url.to_string(),
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            })??;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after_s = response
                .header(header::RETRY_AFTER)
                .and_then(parse_retry_after_s);
            if let Some(s) = retry_after_s {
                let block = Duration::from_secs(s).min(MAX_COOL_DOWN);
                self.blocked_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(host, Instant::now() + block);
            }
            tracing::warn!(
                registry,
                url,
                ?retry_after_s,
                "rate limited by the registry"
            );
            return Err(RegistryError::RateLimited {
                registry: registry.to_string(),
                url: url.to_string(),
                retry_after_s,
            });
        }
        Ok(response)
    }

    fn cooling_down(&self, host: &str) -> Option<Duration> {
        let mut blocked = self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
        let until = *blocked.get(host)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(host);
            None
        }
    }
}

fn invalid(registry: &str, url: &str, status: StatusCode, problem: String) -> RegistryError {
    RegistryError::InvalidResponse {
        registry: registry.to_string(),
        url: url.to_string(),
        status: status.as_u16(),
        problem,
    }
}

/// `Retry-After`: delta seconds or an HTTP date.
pub(crate) fn parse_retry_after_s(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(s) = value.parse::<u64>() {
        return Some(s);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// The `host[:port]` of an absolute URL.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

fn normalise_insecure(entry: &str) -> String {
    let e = entry.trim();
    let e = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .unwrap_or(e);
    e.trim_end_matches('/').to_ascii_lowercase()
}

/// Splits `host`, `host:port`, `[v6]:port`, `[v6]` into the host name.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons: keep it whole.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Docker's rule: plain HTTP for loopback (`localhost`, 127.0.0.0/8, ::1)
/// and for registries configured insecure (by `host`, `host:port` or an
/// IP range `a.b.c.d/nn`).
pub(crate) fn plain_http_allowed(host: &str, insecure: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    let name = host_name(&host);
    let ip: Option<IpAddr> = name.parse().ok();
    if name == "localhost" || name.ends_with(".localhost") || ip.is_some_and(|ip| ip.is_loopback())
    {
        return true;
    }
    insecure.iter().any(|entry| {
        if entry == &host || entry == name {
            return true;
        }
        match (ip, entry.split_once('/')) {
            (Some(ip), Some((net, bits))) => in_cidr(ip, net, bits),
            _ => false,
        }
    })
}

fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// rustls with ring: the system's roots plus `ca_files`.
fn tls_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig, RegistryError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls_error = |problem: String| RegistryError::Config {
        setting: "ca_files",
        problem,
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(format!("TLS setup: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    for path in ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| tls_error(format!("reading {}: {e}", path.display())))?;
        let mut any = false;
        for cert in certs {
            let cert = cert.map_err(|e| tls_error(format!("parsing {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            any = true;
        }
        if !any {
            return Err(tls_error(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
    }
    if added == 0 && ca_files.is_empty() {
        // Plain-HTTP registries still work; HTTPS ones fail at the
        // handshake with an error naming the certificate.
        tracing::warn!(
            "no system CA certificates found: HTTPS registries will fail (install ca-certificates)"
        );
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// An error and its sources, `: `-separated (hyper's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_like_docker() {
        let none: Vec<String> = Vec::new();
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "[::1]",
            "::1",
            "LOCALHOST:80",
        ] {
            assert!(plain_http_allowed(host, &none), "{host}");
        }
        for host in [
            "docker.io",
            "registry-1.docker.io",
            "ghcr.io",
            "10.0.0.5:5000",
            "128.0.0.1",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!plain_http_allowed(host, &none), "{host}");
        }
        let insecure: Vec<String> = ["registry.lan:5000", "http://build.lan/", "10.1.0.0/16"]
            .iter()
            .map(|s| normalise_insecure(s))
            .collect();
        assert!(plain_http_allowed("registry.lan:5000", &insecure));
        assert!(!plain_http_allowed("registry.lan:5001", &insecure));
        assert!(plain_http_allowed("build.lan", &insecure));
        assert!(plain_http_allowed("build.lan:8080", &insecure));
        assert!(plain_http_allowed("10.1.200.3:5000", &insecure));
        assert!(!plain_http_allowed("10.2.0.1", &insecure));
    }

    #[test]
    fn retry_after() {
        assert_eq!(parse_retry_after_s("120"), Some(120));
        assert_eq!(parse_retry_after_s(" 0 "), Some(0));
        assert_eq!(
            parse_retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0)
        );
        assert_eq!(parse_retry_after_s("soon"), None);
        assert_eq!(parse_retry_after_s("-5"), None);
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://a.b:5000/v2/x?y"), "a.b:5000");
        assert_eq!(host_of("http://[::1]:5000/v2/"), "[::1]:5000");
        assert_eq!(host_of("http://h"), "h");
        assert_eq!(host_of("http://h?x"), "h");
    }
}
