//! Image references as Docker and Kubernetes write them, normalised the way
//! the Docker CLI does: `nginx` is `docker.io/library/nginx:latest`,
//! `ghcr.io/org/app:1.2@sha256:…` keeps both its tag and its digest, and a
//! first component with a `.` or `:` (or `localhost`) is a registry host.

use std::fmt;

/// The registry host Docker Hub images live on, as written in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's distribution API actually answers on.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Why an image reference could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is empty or only whitespace.
    #[error("empty image reference")]
    Empty,
    /// The repository path has an empty or invalid component.
    #[error(
        "invalid repository {repository:?} in image reference {reference:?}: components are lower-case letters, digits and . _ - separators"
    )]
    InvalidRepository {
        /// The whole reference as given.
        reference: String,
        /// The repository part that failed.
        repository: String,
    },
    /// The tag is empty, too long or has characters tags cannot have.
    #[error(
        "invalid tag {tag:?} in image reference {reference:?}: tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -"
    )]
    InvalidTag {
        /// The whole reference as given.
        reference: String,
        /// The tag part that failed.
        tag: String,
    },
    /// The digest is not `algorithm:hex`.
    #[error(
        "invalid digest {digest:?} in image reference {reference:?}: expected algorithm:hex such as sha256:<64 hex>"
    )]
    InvalidDigest {
        /// The whole reference as given.
        reference: String,
        /// The digest part that failed.
        digest: String,
    },
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry host (with port when given), `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path, with `library/` added for official Docker Hub images.
    pub repository: String,
    /// Tag, when the reference names one (`None` for digest-only references).
    pub tag: Option<String>,
    /// Digest (`sha256:…`), when the reference pins one.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses `[host[:port]/]path[:tag][@digest]`. A reference with neither a
    /// tag nor a digest gets the tag `latest`, as `docker pull` does.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let reference = input.trim();
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((name, digest)) => {
                if !valid_digest(digest) {
                    return Err(ReferenceError::InvalidDigest {
                        reference: reference.to_string(),
                        digest: digest.to_string(),
                    });
                }
                (name, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        // A tag follows the last ':' that comes after the last '/', so a
        // registry port (`host:5000/app`) is never taken for a tag.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (
                    &name_and_tag[..split],
                    Some(name_and_tag[split + 1..].to_string()),
                )
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::InvalidTag {
                reference: reference.to_string(),
                tag: tag.clone(),
            });
        }
        let (registry, repository) = split_registry(name);
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if !valid_repository(&repository) {
            return Err(ReferenceError::InvalidRepository {
                reference: reference.to_string(),
                repository,
            });
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag,
        };
        Ok(ImageReference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The host to send distribution API requests to (`registry-1.docker.io`
    /// for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, without tag or digest: the key a registry cache
    /// and a policy use.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> ImageReference {
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }
}

impl fmt::Display for ImageReference {
    /// The fully qualified form, `docker.io/library/nginx:1.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits off the registry host: the first component when it has a `.` or a
/// `:` or is `localhost`, Docker Hub otherwise.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            let registry = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (registry, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.split('/').all(|component| {
            !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && component
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && component
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
        })
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !tag.starts_with(['.', '-'])
}

/// Whether `digest` is `algorithm:hex` with at least 32 hex digits, as
/// image references and registries write digests (`sha256:…`).
pub fn valid_digest(digest: &str) -> bool {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> ImageReference {
        match ImageReference::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn docker_hub_official_image_gets_library_and_latest() {
        let r = parsed("nginx");
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn registry_port_is_not_a_tag() {
        let r = parsed("127.0.0.1:5000/team/app");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = parsed("localhost:5000/app:1.2.3-alpine");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.tag.as_deref(), Some("1.2.3-alpine"));
    }

    #[test]
    fn tag_and_digest_both_kept_digest_only_has_no_tag() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let r = parsed(&format!("ghcr.io/org/app:1.2@{digest}"));
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        let r = parsed(&format!("redis@{digest}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.name(), "docker.io/library/redis");
    }

    #[test]
    fn user_repository_on_hub_and_index_alias() {
        assert_eq!(parsed("bitnami/redis:7").name(), "docker.io/bitnami/redis");
        assert_eq!(
            parsed("index.docker.io/library/nginx:1").name(),
            "docker.io/library/nginx"
        );
    }

    #[test]
    fn bad_references_are_errors_not_panics() {
        assert_eq!(ImageReference::parse("  "), Err(ReferenceError::Empty));
        assert!(matches!(
            ImageReference::parse("Nginx:1"),
            Err(ReferenceError::InvalidRepository { .. })
        ));
        assert!(matches!(
            ImageReference::parse("nginx:"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            ImageReference::parse("nginx@sha256:xyz"),
            Err(ReferenceError::InvalidDigest { .. })
        ));
        assert!(matches!(
            ImageReference::parse("a//b"),
            Err(ReferenceError::InvalidRepository { .. })
        ));
    }
}
