//! Authentication against a registry: answer a 401's challenge with basic
//! credentials or a bearer token from the challenge's realm (fetched with
//! the basic credentials when there are some, anonymously otherwise), keep
//! tokens until they expire and send them up front next time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::header;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::cache::{Cache, Source};
use super::challenge::{Challenge, parse_challenges};
use super::credentials::{Credentials, DockerCredentials, Lookup, auth_key_for};
use super::transport::{Response, Transport, host_of};
use super::{Counters, RegistryError};
use crate::updates::reference::DOCKER_HUB;

/// What the token spec says to assume when a token service gives no
/// `expires_in`.
const DEFAULT_TOKEN_LIFETIME_S: u64 = 60;

/// Where a request goes: the registry as images name it (for credentials
/// and messages), the host that answers, and the repository (for scopes).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) registry: String,
    pub(crate) api_host: String,
    pub(crate) repository: String,
}

/// How a host asked to be authenticated, learnt from its first 401.
#[derive(Debug, Clone)]
enum HostScheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Credentials, learnt schemes and cached tokens.
pub(crate) struct Authenticator {
    credentials: DockerCredentials,
    schemes: Mutex<HashMap<String, HostScheme>>,
    tokens: Cache<String>,
}

impl Authenticator {
    pub(crate) fn new(credentials: DockerCredentials) -> Authenticator {
        Authenticator {
            credentials,
            schemes: Mutex::new(HashMap::new()),
            tokens: Cache::new(4096),
        }
    }

    fn credentials_for(&self, registry: &str) -> Option<Credentials> {
        match self.credentials.lookup(registry) {
            Lookup::Found(c, _) => Some(c),
            _ => None,
        }
    }

    fn scheme(&self, host: &str) -> Option<HostScheme> {
        self.schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    fn learn(&self, host: &str, scheme: HostScheme) {
        self.schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), scheme);
    }

    /// A request to `url` on `target`, authenticated as the registry asks.
    /// Returns any status but 401 (an `Unauthorized` error) and 429.
    pub(crate) async fn send(
        &self,
        transport: &Transport,
        counters: &Counters,
        target: &Target,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let creds = self.credentials_for(&target.registry);
        let host = host_of(url).to_string();
        // Up front: what worked for this host before.
        let upfront = match self.scheme(&host) {
            Some(HostScheme::Basic) => creds.as_ref().map(Credentials::basic_header),
            Some(HostScheme::Bearer { realm, service }) => self
                .tokens
                .peek(&token_key(
                    &realm,
                    service.as_deref(),
                    target,
                    creds.as_ref(),
                ))
                .map(|t| format!("Bearer {t}")),
            None => None,
        };
        let response = transport
            .exchange(
                &target.registry,
                method.clone(),
                url,
                accept,
                upfront.as_deref(),
            )
            .await?;
        if response.status != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenges = parse_challenges(response.header_values(header::WWW_AUTHENTICATE));
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => Some((realm.clone(), service.clone(), scope.clone())),
            _ => None,
        });
        let answer = if let Some((realm, service, scope)) = bearer {
            self.learn(
                &host,
                HostScheme::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                },
            );
            let key = token_key(&realm, service.as_deref(), target, creds.as_ref());
            // A token sent up front and refused is stale or short of scope.
            if upfront.is_some() {
                self.tokens.forget(&key);
            }
            let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", target.repository));
            let (token, source) = self
                .tokens
                .get_or_fetch(&key, || {
                    self.fetch_token(
                        transport,
                        target,
                        &realm,
                        service.as_deref(),
                        &scope,
                        creds.as_ref(),
                    )
                })
                .await;
            if source == Source::Fetched {
                counters.token_fetches.fetch_add(1, Ordering::Relaxed);
            }
            format!("Bearer {}", token?)
        } else if challenges.iter().any(|c| matches!(c, Challenge::Basic)) {
            self.learn(&host, HostScheme::Basic);
            match (&creds, &upfront) {
                (Some(c), None) => c.basic_header(),
                _ => return Err(self.unauthorized(target, url, creds.is_some())),
            }
        } else {
            return Err(self.unauthorized(target, url, creds.is_some()));
        };
        let response = transport
            .exchange(&target.registry, method, url, accept, Some(&answer))
            .await?;
        if response.status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(target, url, creds.is_some()));
        }
        Ok(response)
    }

    async fn fetch_token(
        &self,
        transport: &Transport,
        target: &Target,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<(String, Duration), RegistryError> {
        let token_error = |problem: String| RegistryError::Token {
            registry: target.registry.clone(),
            realm: realm.to_string(),
            problem,
        };
        let realm_host = host_of(realm);
        if !realm.starts_with("https://") && !realm.starts_with("http://") {
            return Err(token_error(
                "the realm in the registry's challenge is not an http(s) URL".into(),
            ));
        }
        if realm.starts_with("http://")
            && creds.is_some()
            && !transport.plain_http_allowed(realm_host)
        {
            return Err(token_error(
                "the realm is plain HTTP on a host that is not loopback or a configured insecure registry; refusing to send credentials there".into(),
            ));
        }
        // Built in a block: the serializer is not Send and must not live
        // across an await.
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                query.append_pair("scope", s);
            }
            query.finish()
        };
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{separator}{query}");
        let basic = creds.map(Credentials::basic_header);
        let response = transport
            .exchange(
                &target.registry,
                Method::GET,
                &url,
                Some("application/json"),
                basic.as_deref(),
            )
            .await?;
        if response.status == StatusCode::UNAUTHORIZED || response.status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(target, &url, creds.is_some()));
        }
        if !response.status.is_success() {
            return Err(token_error(format!(
                "HTTP {}{}",
                response.status.as_u16(),
                super::error_detail(&response.body)
            )));
        }
        let answer: TokenAnswer = super::manifest::json_object(&response.body).map_err(|e| {
            token_error(format!(
                "HTTP {}: not a token answer: {e}",
                response.status.as_u16()
            ))
        })?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| token_error("the answer has no token".into()))?;
        let lifetime_s = answer
            .expires_in
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME_S);
        // Renew a little early so a token never expires in flight.
        let keep_s = lifetime_s - (lifetime_s / 10).clamp(1, 30).min(lifetime_s - 1);
        Ok((token, Duration::from_secs(keep_s.max(1))))
    }

    /// The 401 error, saying which credentials were used or looked for.
    pub(crate) fn unauthorized(&self, target: &Target, url: &str, sent: bool) -> RegistryError {
        let file = match &self.credentials.path {
            Some(p) => p.display().to_string(),
            None => "Docker's config.json ($DOCKER_CONFIG and $HOME are unset)".to_string(),
        };
        let registry = &target.registry;
        let mut hint = match self.credentials.lookup(registry) {
            Lookup::Found(_, key) if sent => format!(
                "the registry refused the credentials of auths.\"{key}\" in {file}; check them (`docker login {registry}` rewrites them)"
            ),
            Lookup::Found(_, key) => format!(
                "credentials for {registry} are in auths.\"{key}\" of {file}, but the registry's challenge did not accept them"
            ),
            Lookup::Unusable(why) => format!("no usable credentials for {registry}: {why}"),
            Lookup::None => format!(
                "no credentials for {registry} in {file}; log in with `docker login {registry}` or add auths.\"{}\".auth (base64 of user:password) to it",
                auth_key_for(registry)
            ),
        };
        if registry == DOCKER_HUB {
            hint.push_str(
                "; Docker Hub also answers 401 for a repository that does not exist or is private",
            );
        }
        RegistryError::Unauthorized {
            registry: registry.clone(),
            url: url.to_string(),
            hint,
        }
    }
}

fn token_key(
    realm: &str,
    service: Option<&str>,
    target: &Target,
    creds: Option<&Credentials>,
) -> String {
    format!(
        "{realm}|{}|{}|{}",
        service.unwrap_or(""),
        target.repository,
        creds.map_or("", |c| c.username.as_str())
    )
}
