//! A client for the OCI distribution API: where new tags come from.
//!
//! [`RegistryClient`] lists a repository's tags (following `Link` pages),
//! resolves a tag to its manifest digest (`HEAD`, `Docker-Content-Digest`),
//! and finds an image's `created` time (manifest → the configured platform
//! of an index → config blob), so a release age can be given where the
//! registry knows it, and a reason where it cannot.
//!
//! It authenticates as Docker does (basic credentials or a bearer token
//! from the registry's challenge, credentials from Docker's `config.json`),
//! speaks plain HTTP only to loopback and configured insecure registries,
//! rate limits itself per registry host (governor), and caches answers with
//! a time to live, so a fleet of identical images costs one request per
//! repository and tag per TTL. Concurrent callers of the same key share one
//! request.

mod auth;
mod cache;
mod challenge;
mod credentials;
mod error;
mod link;
pub mod manifest;
mod transport;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use hyper::{Method, StatusCode, header};
use serde::Deserialize;

pub use error::RegistryError;

use auth::{Authenticator, Target};
use cache::{Cache, Source};
use credentials::DockerCredentials;
use manifest::{Manifest, config_created, manifest_accept, parse_manifest, pick_platform};
use transport::{Response, Transport, TransportSettings};

use crate::updates::reference::ImageReference;

/// A tag list longer than this many pages is refused (a registry looping).
const MAX_TAG_PAGES: usize = 10_000;
/// What is known by digest never changes; it is kept at least this long.
const IMMUTABLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The platform whose image an index (multi-platform tag) is resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, `arm`, …
    pub architecture: String,
    /// `v7`, `v8`, … when it matters.
    pub variant: Option<String>,
}

impl Default for Platform {
    /// `linux/amd64`.
    fn default() -> Self {
        Platform {
            os: "linux".to_string(),
            architecture: "amd64".to_string(),
            variant: None,
        }
    }
}

impl FromStr for Platform {
    type Err = RegistryError;

    /// `os/architecture[/variant]`, as `docker --platform` writes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return Err(RegistryError::Config {
                setting: "platform",
                problem: format!("{s:?} is not os/architecture[/variant], e.g. linux/amd64"),
            });
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Settings of a [`RegistryClient`]. Every default is documented on its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Docker's `config.json` (or the directory holding it) to read
    /// credentials from. Default `None`: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`, and no credentials when that does not exist.
    pub docker_config: Option<PathBuf>,
    /// Requests per second to any one registry host (bursts of as many).
    /// `0` means no limit. Default 5.
    pub requests_per_second: u32,
    /// How long tag lists and tag → digest answers are kept. What is known
    /// by digest (created times) is kept at least 24 h. Default 30 min.
    pub cache_ttl: Duration,
    /// The most one HTTP exchange (connect, answer, body) may take.
    /// Default 30 s.
    pub request_timeout: Duration,
    /// Registries spoken to over plain HTTP besides loopback (`localhost`,
    /// 127.0.0.0/8, ::1): `host`, `host:port`, or an IP range
    /// `10.0.0.0/8`, as in Docker's `insecure-registries`. Default none.
    pub insecure_registries: Vec<String>,
    /// The platform an index is resolved to for created times. Default
    /// `linux/amd64`.
    pub platform: Platform,
    /// Answers larger than this are refused. Default 8 MiB.
    pub max_response_bytes: u64,
    /// Tags asked for per page (`n=`); registries may send fewer. Default 1000.
    pub tag_page_size: u32,
    /// Tags resolved at once by [`RegistryClient::tag_info`]. Default 4.
    pub max_concurrent_requests: usize,
    /// Retries of a 500/502/503/504 or a failed connection. Default 2.
    pub retries: u32,
    /// Wait before the first retry, doubled for each next one. Default 500 ms.
    pub retry_backoff: Duration,
    /// Extra CA certificates (PEM files) trusted for HTTPS besides the
    /// system's. Default none.
    pub ca_files: Vec<PathBuf>,
    /// Whether [`RegistryClient::tag_info`] also finds created times (each
    /// new digest costs one or two manifest GETs and a config blob GET; on
    /// Docker Hub manifest GETs count as pulls). Default true.
    pub created_times: bool,
    /// Entries kept per cache (tag lists, digests, created times). Default
    /// 50,000.
    pub max_cache_entries: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            docker_config: None,
            requests_per_second: 5,
            cache_ttl: Duration::from_secs(30 * 60),
            request_timeout: Duration::from_secs(30),
            insecure_registries: Vec::new(),
            platform: Platform::default(),
            max_response_bytes: 8 * 1024 * 1024,
            tag_page_size: 1000,
            max_concurrent_requests: 4,
            retries: 2,
            retry_backoff: Duration::from_millis(500),
            ca_files: Vec::new(),
            created_times: true,
            max_cache_entries: 50_000,
        }
    }
}

/// When an image was created, or why that cannot be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatedTime {
    /// The image config's `created`, unix seconds.
    Known(i64),
    /// Why there is no usable created time (no such field, the Unix epoch of
    /// a reproducible build, no image for the platform, an artifact, …).
    Unknown(String),
}

impl CreatedTime {
    /// Unix seconds, when known.
    pub fn unix_s(&self) -> Option<i64> {
        match self {
            CreatedTime::Known(s) => Some(*s),
            CreatedTime::Unknown(_) => None,
        }
    }

    /// Why it is unknown, when it is.
    pub fn unknown_reason(&self) -> Option<&str> {
        match self {
            CreatedTime::Known(_) => None,
            CreatedTime::Unknown(why) => Some(why),
        }
    }
}

/// What the registry says about one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag.
    pub tag: String,
    /// The manifest digest it points to now (`sha256:…`).
    pub digest: String,
    /// Created time, unix seconds, when known (and asked for).
    pub created_unix_s: Option<i64>,
    /// Why the created time is unknown, when it is.
    pub created_unknown: Option<String>,
}

/// Counters of a client (and its clones), for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// HTTP requests sent to registries and token services (retries and
    /// redirects included).
    pub requests_sent: u64,
    /// Answers served from the cache or shared with a concurrent caller.
    pub cache_hits: u64,
    /// Answers that had to be fetched.
    pub cache_misses: u64,
    /// Requests that waited for the per-host rate limit.
    pub rate_limit_waits: u64,
    /// Bearer tokens fetched.
    pub token_fetches: u64,
    /// Retries of transient failures.
    pub retries: u64,
}

/// The live counters behind [`RegistryStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests_sent: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) rate_limit_waits: AtomicU64,
    pub(crate) token_fetches: AtomicU64,
    pub(crate) retries: AtomicU64,
}

struct Inner {
    config: RegistryConfig,
    transport: Transport,
    auth: Authenticator,
    counters: Arc<Counters>,
    tags: Cache<Vec<String>>,
    digests: Cache<String>,
    created: Cache<CreatedTime>,
}

/// A registry client. Cheap to clone: clones share the connection pool,
/// rate limits, tokens, caches and counters.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// A client with `config`. Reads Docker's `config.json` now: an explicit
    /// file that is missing, or any file that is not valid JSON, is an error.
    pub fn new(config: RegistryConfig) -> Result<RegistryClient, RegistryError> {
        let credentials = DockerCredentials::load(config.docker_config.as_deref())?;
        if config.cache_ttl.is_zero() {
            tracing::debug!("registry cache TTL is zero: nothing is cached");
        }
        let counters = Arc::new(Counters::default());
        let transport = Transport::new(
            TransportSettings {
                requests_per_second: config.requests_per_second,
                request_timeout: config.request_timeout,
                max_response_bytes: config.max_response_bytes,
                retries: config.retries,
                retry_backoff: config.retry_backoff,
                insecure_registries: config.insecure_registries.clone(),
                ca_files: config.ca_files.clone(),
            },
            counters.clone(),
        )?;
        let entries = config.max_cache_entries;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                config,
                transport,
                auth: Authenticator::new(credentials),
                counters,
                tags: Cache::new(entries),
                digests: Cache::new(entries),
                created: Cache::new(entries),
            }),
        })
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The counters so far, across all clones of this client.
    pub fn stats(&self) -> RegistryStats {
        let c = &self.inner.counters;
        RegistryStats {
            requests_sent: c.requests_sent.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            rate_limit_waits: c.rate_limit_waits.load(Ordering::Relaxed),
            token_fetches: c.token_fetches.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// Forgets every cached tag list, digest and created time (tokens stay).
    pub fn clear_cache(&self) {
        self.inner.tags.clear();
        self.inner.digests.clear();
        self.inner.created.clear();
    }

    /// Every tag of the image's repository, in the registry's order (the tag
    /// and digest of `image` do not matter). Follows `Link: <…>; rel="next"`
    /// pages. Cached for the TTL.
    pub async fn list_tags(&self, image: &ImageReference) -> Result<Vec<String>, RegistryError> {
        let key = format!("{}/tags", image.name());
        let (tags, source) = self
            .inner
            .tags
            .get_or_fetch(&key, || async {
                let tags = self.fetch_tags(image).await?;
                Ok((tags, self.inner.config.cache_ttl))
            })
            .await;
        self.count(source);
        tags
    }

    /// The manifest digest (`sha256:…`) the image's tag points to now: a
    /// `HEAD` of the manifest (`Docker-Content-Digest`), or a `GET` and the
    /// sha256 of the body when the registry does not say. A reference with
    /// only a digest is answered without a request. Cached for the TTL.
    pub async fn digest(&self, image: &ImageReference) -> Result<String, RegistryError> {
        let tag = match (&image.tag, &image.digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(digest)) => return Ok(digest.clone()),
            (None, None) => {
                return Err(RegistryError::Reference {
                    image: image.to_string(),
                    problem: "names neither a tag nor a digest".into(),
                });
            }
        };
        let key = format!("{}:{tag}", image.name());
        let (digest, source) = self
            .inner
            .digests
            .get_or_fetch(&key, || async {
                let digest = self.fetch_digest(image, &tag).await?;
                Ok((digest, self.inner.config.cache_ttl))
            })
            .await;
        self.count(source);
        digest
    }

    /// When the image the reference names was created (unix seconds), or
    /// `None` where the registry cannot tell; [`Self::created_time`] says why.
    pub async fn created(&self, image: &ImageReference) -> Result<Option<i64>, RegistryError> {
        Ok(self.created_time(image).await?.unix_s())
    }

    /// The image's created time or why it is unknown: its digest (see
    /// [`Self::digest`]), the manifest (for an index, the entry of the
    /// configured platform), then the config blob's `created`. Kept by digest
    /// for at least 24 h, since what a digest names never changes.
    pub async fn created_time(&self, image: &ImageReference) -> Result<CreatedTime, RegistryError> {
        let digest = self.digest(image).await?;
        let key = format!("{}@{digest} {}", image.name(), self.inner.config.platform);
        let ttl = self.inner.config.cache_ttl.max(IMMUTABLE_TTL);
        let (created, source) = self
            .inner
            .created
            .get_or_fetch(&key, || async {
                let created = self.fetch_created(image, &digest).await?;
                Ok((created, ttl))
            })
            .await;
        self.count(source);
        created
    }

    /// Digest and (when [`RegistryConfig::created_times`]) created time of
    /// each of `tags` of the image's repository, at most
    /// [`RegistryConfig::max_concurrent_requests`] at a time, in the order
    /// given. One tag failing does not stop the others.
    pub async fn tag_info(
        &self,
        image: &ImageReference,
        tags: &[&str],
    ) -> Vec<(String, Result<TagInfo, RegistryError>)> {
        let concurrency = self.inner.config.max_concurrent_requests.max(1);
        // Owned inputs: closures over references would make the future
        // not Send (rustc's higher-ranked lifetime limits).
        let jobs: Vec<(String, ImageReference)> = tags
            .iter()
            .map(|tag| (tag.to_string(), image.with_tag(tag)))
            .collect();
        futures_util::stream::iter(
            jobs.into_iter()
                .map(|(tag, tagged)| self.one_tag_info(tag, tagged)),
        )
        .buffered(concurrency)
        .collect()
        .await
    }

    async fn one_tag_info(
        &self,
        tag: String,
        tagged: ImageReference,
    ) -> (String, Result<TagInfo, RegistryError>) {
        let info = async {
            let digest = self.digest(&tagged).await?;
            let created = if self.inner.config.created_times {
                self.created_time(&tagged).await?
            } else {
                CreatedTime::Unknown("created times are switched off".into())
            };
            Ok(TagInfo {
                tag: tag.clone(),
                digest,
                created_unix_s: created.unix_s(),
                created_unknown: created.unknown_reason().map(str::to_string),
            })
        }
        .await;
        (tag, info)
    }

    fn count(&self, source: Source) {
        let counter = match source {
            Source::Fetched => &self.inner.counters.cache_misses,
            Source::Cached => &self.inner.counters.cache_hits,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn target(image: &ImageReference) -> Target {
        Target {
            registry: image.registry.clone(),
            api_host: image.api_host().to_string(),
            repository: image.repository.clone(),
        }
    }

    fn url(&self, target: &Target, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.inner.transport.base_url(&target.api_host),
            target.repository
        )
    }

    /// An authenticated request whose answer must be 2xx.
    async fn get_ok(
        &self,
        target: &Target,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let response = self
            .inner
            .auth
            .send(
                &self.inner.transport,
                &self.inner.counters,
                target,
                method,
                url,
                accept,
            )
            .await?;
        check(target, response)
    }

    async fn fetch_tags(&self, image: &ImageReference) -> Result<Vec<String>, RegistryError> {
        let target = Self::target(image);
        let page_size = self.inner.config.tag_page_size.max(1);
        let mut url = self.url(&target, &format!("tags/list?n={page_size}"));
        let mut seen_urls = HashSet::new();
        let mut seen_tags = HashSet::new();
        let mut tags = Vec::new();
        loop {
            seen_urls.insert(url.clone());
            let response = self
                .get_ok(&target, Method::GET, &url, Some("application/json"))
                .await?;
            let invalid = |problem: String| RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                url: response.url.clone(),
                status: response.status.as_u16(),
                problem,
            };
            let page: TagList = manifest::json_object(&response.body).map_err(|e| {
                invalid(format!(
                    "tag list is not JSON of the form {{\"tags\": [...]}}: {e}"
                ))
            })?;
            for tag in page.tags.unwrap_or_default() {
                if !tag.is_empty() && seen_tags.insert(tag.clone()) {
                    tags.push(tag);
                }
            }
            let Some(next) = link::next_link(response.header_values(header::LINK)) else {
                return Ok(tags);
            };
            let next = link::resolve(&response.url, &next);
            if !(next.starts_with("http://") || next.starts_with("https://"))
                || next.parse::<hyper::Uri>().is_err()
            {
                return Err(invalid(format!("the next page link {next:?} is not a URL")));
            }
            if seen_urls.contains(&next) {
                return Err(invalid(format!(
                    "the next page link {next} was already read (the registry's pages loop)"
                )));
            }
            if seen_urls.len() >= MAX_TAG_PAGES {
                return Err(invalid(format!("more than {MAX_TAG_PAGES} pages of tags")));
            }
            url = next;
        }
    }

    async fn fetch_digest(
        &self,
        image: &ImageReference,
        tag: &str,
    ) -> Result<String, RegistryError> {
        let target = Self::target(image);
        let url = self.url(&target, &format!("manifests/{tag}"));
        let accept = manifest_accept();
        let head = self
            .inner
            .auth
            .send(
                &self.inner.transport,
                &self.inner.counters,
                &target,
                Method::HEAD,
                &url,
                Some(&accept),
            )
            .await?;
        // Some registries refuse HEAD (405) or do not send the digest.
        if head.status != StatusCode::METHOD_NOT_ALLOWED {
            let head = check(&target, head)?;
            if let Some(digest) =
                head.header(header::HeaderName::from_static("docker-content-digest"))
            {
                let digest = digest.trim();
                if manifest::valid_digest(digest) {
                    return Ok(digest.to_string());
                }
                tracing::debug!(url, digest, "invalid Docker-Content-Digest, computing it");
            }
        }
        let response = self
            .get_ok(&target, Method::GET, &url, Some(&accept))
            .await?;
        parse_manifest(&response.body, response.header(header::CONTENT_TYPE)).map_err(
            |problem| RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                url: response.url.clone(),
                status: response.status.as_u16(),
                problem,
            },
        )?;
        Ok(manifest::sha256_digest(&response.body))
    }

    /// GETs a manifest or blob by digest and checks the body hashes to it.
    async fn get_by_digest(
        &self,
        target: &Target,
        kind: &str,
        digest: &str,
        accept: &str,
    ) -> Result<Response, RegistryError> {
        let url = self.url(target, &format!("{kind}/{digest}"));
        let response = self.get_ok(target, Method::GET, &url, Some(accept)).await?;
        if manifest::verify_digest(digest, &response.body) == Some(false) {
            return Err(RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                url: response.url.clone(),
                status: response.status.as_u16(),
                problem: format!(
                    "the content does not hash to {digest} (it hashes to {})",
                    manifest::sha256_digest(&response.body)
                ),
            });
        }
        Ok(response)
    }

    async fn fetch_created(
        &self,
        image: &ImageReference,
        digest: &str,
    ) -> Result<CreatedTime, RegistryError> {
        let target = Self::target(image);
        let accept = manifest_accept();
        let invalid = |response: &Response, problem: String| RegistryError::InvalidResponse {
            registry: target.registry.clone(),
            url: response.url.clone(),
            status: response.status.as_u16(),
            problem,
        };
        let mut response = self
            .get_by_digest(&target, "manifests", digest, &accept)
            .await?;
        let mut parsed = parse_manifest(&response.body, response.header(header::CONTENT_TYPE))
            .map_err(|p| invalid(&response, p))?;
        if let Manifest::Index(entries) = &parsed {
            let platform = &self.inner.config.platform;
            let entry = match pick_platform(entries, platform) {
                Ok(entry) => entry.digest.clone(),
                Err(why) => return Ok(CreatedTime::Unknown(why)),
            };
            if !manifest::valid_digest(&entry) {
                return Err(invalid(
                    &response,
                    format!("the index entry for {platform} has an invalid digest {entry:?}"),
                ));
            }
            response = self
                .get_by_digest(&target, "manifests", &entry, &accept)
                .await?;
            parsed = parse_manifest(&response.body, response.header(header::CONTENT_TYPE))
                .map_err(|p| invalid(&response, p))?;
        }
        let config = match parsed {
            Manifest::Image(config) => config,
            Manifest::Index(_) => {
                return Ok(CreatedTime::Unknown(
                    "the platform's entry is itself an index (nested indexes are not followed)"
                        .into(),
                ));
            }
            Manifest::SchemaV1 => {
                return Ok(CreatedTime::Unknown(
                    "the registry serves only a Docker schema 1 manifest, which has no image config"
                        .into(),
                ));
            }
        };
        match config.media_type.as_deref() {
            None | Some(manifest::OCI_CONFIG) | Some(manifest::DOCKER_CONFIG) => {}
            Some(other) => {
                return Ok(CreatedTime::Unknown(format!(
                    "an artifact (config media type {other}), not a container image"
                )));
            }
        }
        if !manifest::valid_digest(&config.digest) {
            return Err(invalid(
                &response,
                format!("the config digest {:?} is invalid", config.digest),
            ));
        }
        let blob = self
            .get_by_digest(
                &target,
                "blobs",
                &config.digest,
                config
                    .media_type
                    .as_deref()
                    .unwrap_or("application/json, */*"),
            )
            .await?;
        match config_created(&blob.body) {
            Ok(Ok(s)) => Ok(CreatedTime::Known(s)),
            Ok(Err(why)) => Ok(CreatedTime::Unknown(why)),
            Err(problem) => Err(invalid(&blob, problem)),
        }
    }
}

/// A 2xx answer as it is; anything else as the error it means.
fn check(target: &Target, response: Response) -> Result<Response, RegistryError> {
    if response.status.is_success() {
        return Ok(response);
    }
    let detail = error_detail(&response.body);
    Err(match response.status {
        StatusCode::NOT_FOUND => RegistryError::NotFound {
            registry: target.registry.clone(),
            url: response.url,
            detail,
        },
        status => RegistryError::Status {
            registry: target.registry.clone(),
            url: response.url,
            status: status.as_u16(),
            detail,
        },
    })
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `: CODE message` from a distribution API error body, or `: ` and the
/// start of any other text, or nothing.
pub(crate) fn error_detail(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let parts: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| {
                [e.code.as_deref(), e.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return format!(" ({})", clean(&parts.join("; ")));
        }
    }
    let text = clean(&String::from_utf8_lossy(body));
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

/// Printable, one line, at most 200 characters.
fn clean(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.chars().count() > 200 {
        let mut s: String = trimmed.chars().take(200).collect();
        s.push('…');
        s
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_strings() {
        for (text, shown) in [
            ("linux/amd64", "linux/amd64"),
            (" Linux/ARM64/v8 ", "linux/arm64/v8"),
            ("windows/amd64", "windows/amd64"),
        ] {
            match text.parse::<Platform>() {
                Ok(p) => assert_eq!(p.to_string(), shown),
                Err(e) => panic!("{text}: {e}"),
            }
        }
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
        assert_eq!(Platform::default().to_string(), "linux/amd64");
    }

    #[test]
    fn error_details() {
        assert_eq!(
            error_detail(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#),
            " (MANIFEST_UNKNOWN manifest unknown)"
        );
        assert_eq!(error_detail(b""), "");
        assert_eq!(
            error_detail(b"  <html>\n<b>Bad\tGateway</b>\r\n"),
            " (<html> <b>Bad Gateway</b>)"
        );
        assert_eq!(error_detail(&[0xff, 0xfe, b'x']), " (\u{fffd}\u{fffd}x)");
        assert!(error_detail("y".repeat(1000).as_bytes()).chars().count() < 210);
    }
}
