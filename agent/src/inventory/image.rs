//! Splitting an image reference as people and runtimes write it
//! (`nginx`, `nginx:1.25`, `registry:5000/team/app:v2@sha256:…`) into the
//! repository, tag and digest of a `upid.v1.ImageRef`.
//!
//! Normalisation follows the Docker reference grammar: a first path
//! component without a `.` or `:` and other than `localhost` is not a
//! registry, so `nginx` is `docker.io/library/nginx` and `team/app` is
//! `docker.io/team/app`. A reference without tag or digest has no tag (the
//! runtime pulled `latest`, but the reference did not say so).

use upid::wire::v1;

/// Splits `reference` into repository, tag and digest; `image_id` is left
/// empty for the caller. Never fails: text that is not a valid reference
/// is kept whole as the repository.
pub fn parse_reference(reference: &str) -> v1::ImageRef {
    let reference = reference.trim();
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, d),
        None => (reference, ""),
    };
    // A ':' after the last '/' starts the tag; one before it is a port.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (&name_tag[..last_slash + i], &name_tag[last_slash + i + 1..]),
        None => (name_tag, ""),
    };
    v1::ImageRef {
        reference: reference.to_string(),
        repository: normalize_repository(name),
        tag: tag.to_string(),
        digest: digest.to_string(),
        image_id: String::new(),
    }
}

/// `nginx` → `docker.io/library/nginx`; `team/app` → `docker.io/team/app`;
/// names that start with a registry host are kept.
pub fn normalize_repository(name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            name.to_string()
        }
        Some(_) => format!("docker.io/{name}"),
    }
}

/// The digest part of a repo digest as Docker and Kubernetes report it
/// (`nginx@sha256:…`, `docker-pullable://nginx@sha256:…`), or empty.
pub fn digest_of(repo_digest: &str) -> &str {
    repo_digest.rsplit_once('@').map_or("", |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(r: &str) -> (String, String, String) {
        let i = parse_reference(r);
        (i.repository, i.tag, i.digest)
    }

    #[test]
    fn references_split_as_docker_does() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases = [
            ("nginx", ("docker.io/library/nginx", "", "")),
            (
                "nginx:1.25.3-alpine",
                ("docker.io/library/nginx", "1.25.3-alpine", ""),
            ),
            ("team/app:v2", ("docker.io/team/app", "v2", "")),
            ("localhost/app:1", ("localhost/app", "1", "")),
            ("registry:5000/team/app", ("registry:5000/team/app", "", "")),
            (
                "registry:5000/team/app:v1.2",
                ("registry:5000/team/app", "v1.2", ""),
            ),
            ("ghcr.io/o/r:latest", ("ghcr.io/o/r", "latest", "")),
        ];
        for (r, (repo, tag, digest)) in cases {
            assert_eq!(parts(r), (repo.into(), tag.into(), digest.into()), "{r}");
        }
        let with_digest = format!("registry:5000/app:v2@{d}");
        assert_eq!(
            parts(&with_digest),
            ("registry:5000/app".into(), "v2".into(), d.into())
        );
        let only_digest = format!("nginx@{d}");
        assert_eq!(
            parts(&only_digest),
            ("docker.io/library/nginx".into(), String::new(), d.into())
        );
        assert_eq!(parse_reference("").repository, "");
    }

    #[test]
    fn repo_digests_yield_their_digest() {
        assert_eq!(digest_of("docker-pullable://nginx@sha256:ab"), "sha256:ab");
        assert_eq!(digest_of("nginx@sha256:ab"), "sha256:ab");
        assert_eq!(digest_of("sha256:ab"), "");
    }
}
