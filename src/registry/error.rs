//! What can go wrong talking to a registry. Every error names the registry
//! and the URL, and the HTTP status where there was one, and says what to do.

/// Why a registry call failed.
///
/// `Clone` so one failed request can be handed to every caller that was
/// waiting for the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// HTTP 401: no credentials, wrong credentials, or (Docker Hub) a
    /// repository that does not exist or is private.
    #[error("registry {registry}: {url}: HTTP 401 Unauthorized: {hint}")]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// The URL that was refused.
        url: String,
        /// Which credentials were used (or looked for) and what to check.
        hint: String,
    },
    /// HTTP 404: the repository, tag or blob does not exist.
    #[error(
        "registry {registry}: {url}: HTTP 404 Not Found{detail}: the repository or tag does not exist on {registry}; check the image name and tag"
    )]
    NotFound {
        /// Registry host.
        registry: String,
        /// The URL that was not found.
        url: String,
        /// The registry's own error code and message in parentheses, or empty.
        detail: String,
    },
    /// HTTP 429: the registry rate limits this client.
    #[error(
        "registry {registry}: {url}: HTTP 429 Too Many Requests: rate limited by the registry; {}",
        retry_text(*retry_after_s)
    )]
    RateLimited {
        /// Registry host.
        registry: String,
        /// The URL that was refused.
        url: String,
        /// Seconds the registry asked to wait (`Retry-After`), when it said.
        retry_after_s: Option<u64>,
    },
    /// Any other unsuccessful HTTP status (5xx after the retries, 400, 403…).
    #[error("registry {registry}: {url}: HTTP {status}{detail}{}", status_advice(*status))]
    Status {
        /// Registry host.
        registry: String,
        /// The URL that failed.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's own error code and message in parentheses, or empty.
        detail: String,
    },
    /// No connection, TLS failure, or the connection broke.
    #[error(
        "registry {registry}: {url}: unreachable: {problem}; {}",
        unreachable_advice(problem)
    )]
    Unreachable {
        /// Registry host.
        registry: String,
        /// The URL that could not be reached.
        url: String,
        /// What the connection said.
        problem: String,
    },
    /// No complete answer within the request timeout.
    #[error(
        "registry {registry}: {url}: no complete answer within {timeout_ms} ms; raise the request timeout or check the registry"
    )]
    Timeout {
        /// Registry host.
        registry: String,
        /// The URL that did not answer.
        url: String,
        /// The timeout that ran out, in milliseconds.
        timeout_ms: u64,
    },
    /// The answer was larger than the response size cap.
    #[error(
        "registry {registry}: {url}: answer larger than {limit_bytes} bytes, refused; raise the response size cap if this registry is trusted"
    )]
    TooLarge {
        /// Registry host.
        registry: String,
        /// The URL that answered.
        url: String,
        /// The cap.
        limit_bytes: u64,
    },
    /// The answer is not what the distribution API sends: garbage JSON,
    /// a missing field, a bad header, a digest that does not match.
    #[error(
        "registry {registry}: {url}: HTTP {status}: not a valid OCI distribution API answer: {problem}"
    )]
    InvalidResponse {
        /// Registry host.
        registry: String,
        /// The URL that answered.
        url: String,
        /// The HTTP status of the answer.
        status: u16,
        /// What is wrong with it.
        problem: String,
    },
    /// The bearer token service failed (not a 401, which is `Unauthorized`).
    #[error("registry {registry}: token service {realm}: {problem}")]
    Token {
        /// Registry host the token was for.
        registry: String,
        /// The token service URL from the registry's challenge.
        realm: String,
        /// What went wrong.
        problem: String,
    },
    /// Docker's `config.json` could not be read or parsed.
    #[error(
        "Docker config {path}: {problem}; fix the file or point the registry client at another one"
    )]
    DockerConfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A registry client setting is not usable.
    #[error("registry client setting {setting}: {problem}")]
    Config {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The image reference does not name what the call needs.
    #[error("image {image}: {problem}")]
    Reference {
        /// The image reference.
        image: String,
        /// What is missing.
        problem: String,
    },
}

impl RegistryError {
    /// The HTTP status this error came with, where there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            RegistryError::Unauthorized { .. } => Some(401),
            RegistryError::NotFound { .. } => Some(404),
            RegistryError::RateLimited { .. } => Some(429),
            RegistryError::Status { status, .. }
            | RegistryError::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether asking again later may succeed (rate limits, 5xx, timeouts,
    /// unreachable registries), as opposed to a wrong name or credentials.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::RateLimited { .. }
            | RegistryError::Unreachable { .. }
            | RegistryError::Timeout { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

fn retry_text(retry_after_s: Option<u64>) -> String {
    match retry_after_s {
        Some(s) => format!(
            "retry after {s} s (the client refuses requests to this registry until then); lower the request rate or log in for a higher limit"
        ),
        None => "retry later; lower the request rate or log in for a higher limit".to_string(),
    }
}

fn unreachable_advice(problem: &str) -> &'static str {
    if problem.contains("certificate") {
        "the registry's TLS certificate is not trusted here: install its CA in the system's certificates or add the CA's PEM file to the registry client's CA files"
    } else {
        "check the host name, port and network (plain HTTP is used only for localhost, 127.0.0.0/8, ::1 and configured insecure registries, HTTPS otherwise)"
    }
}

fn status_advice(status: u16) -> &'static str {
    match status {
        403 => "; the credentials are valid but not allowed to pull this repository",
        500..=599 => "; the registry failed (retried already), try again later",
        _ => "",
    }
}
