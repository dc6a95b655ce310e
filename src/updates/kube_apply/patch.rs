//! The change made to a workload: a strategic merge patch (what `kubectl
//! set image` sends) that sets one container's image in the pod template
//! and notes on the workload what the image was before and why it changed.
//!
//! ```json
//! {"metadata": {"annotations": {
//!    "upid.io/previous-image": "registry.example.com/shop/web:2.4.1",
//!    "kubernetes.io/change-cause": "upid updates apply: app registry.example.com/shop/web:2.4.1 -> ...:2.4.2 (approve: ...)"}},
//!  "spec": {"template": {"spec": {"containers": [
//!    {"name": "app", "image": "registry.example.com/shop/web:2.4.2"}]}}}}
//! ```
//!
//! A strategic merge patch merges the `containers` list by `name`, so only
//! that container's `image` changes and nothing else in the template does.
//! The annotations go on the workload, not on the pod template: changing
//! the template's metadata would be a template change of its own. The
//! Deployment controller copies `kubernetes.io/change-cause` to the new
//! ReplicaSet, where `kubectl rollout history` shows it.

use serde_json::{Map, Value, json};

use crate::updates::reference::ImageReference;

/// Annotation on the workload: the image upid replaced last.
pub const PREVIOUS_IMAGE_ANNOTATION: &str = "upid.io/previous-image";
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// Longest change-cause written; longer text is cut (annotations may hold
/// 256 KiB in all, but nobody reads a novel in `rollout history`).
const MAX_CHANGE_CAUSE_BYTES: usize = 1_024;

/// The strategic merge patch that sets `container`'s image to `image` and
/// records `previous_image` and `change_cause` on the workload.
pub fn image_patch(
    container: &str,
    image: &str,
    previous_image: &str,
    change_cause: &str,
) -> Value {
    let mut annotations = Map::new();
    annotations.insert(
        PREVIOUS_IMAGE_ANNOTATION.to_string(),
        Value::String(previous_image.to_string()),
    );
    annotations.insert(
        CHANGE_CAUSE_ANNOTATION.to_string(),
        Value::String(clip(change_cause)),
    );
    json!({
        "metadata": {"annotations": Value::Object(annotations)},
        "spec": {"template": {"spec": {"containers": [
            {"name": container, "image": image}
        ]}}}
    })
}

fn clip(text: &str) -> String {
    if text.len() <= MAX_CHANGE_CAUSE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_CHANGE_CAUSE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `target` written the way the pod template writes its image today:
/// the template's `nginx:1.25.3` moving to `docker.io/library/nginx:1.25.4`
/// becomes `nginx:1.25.4`, so the template keeps its spelling. When the
/// template names another repository (or cannot be read), the fully
/// qualified `target`.
pub fn respell(template_image: &str, target: &ImageReference) -> String {
    let name = name_part(template_image);
    match ImageReference::parse(name) {
        Ok(r) if r.registry == target.registry && r.repository == target.repository => {
            let mut out = name.to_string();
            if let Some(tag) = &target.tag {
                out.push(':');
                out.push_str(tag);
            }
            if let Some(digest) = &target.digest {
                out.push('@');
                out.push_str(digest);
            }
            out
        }
        _ => target.to_string(),
    }
}

/// The reference without its tag and digest, as written
/// (`localhost:5000/app:1.2@sha256:…` → `localhost:5000/app`).
fn name_part(image: &str) -> &str {
    let image = image.trim();
    let no_digest = image.split_once('@').map_or(image, |(name, _)| name);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> ImageReference {
        match ImageReference::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn the_patch_sets_one_containers_image_and_notes_the_previous_one() {
        let p = image_patch(
            "app",
            "web:2.4.2",
            "web:2.4.1",
            "upid updates apply: app web:2.4.1 -> web:2.4.2",
        );
        assert_eq!(
            p,
            json!({
                "metadata": {"annotations": {
                    "upid.io/previous-image": "web:2.4.1",
                    "kubernetes.io/change-cause": "upid updates apply: app web:2.4.1 -> web:2.4.2"
                }},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2.4.2"}]}}}
            })
        );
        let long = "x".repeat(5_000);
        let p = image_patch("app", "a", "b", &long);
        let cause = p["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION]
            .as_str()
            .unwrap_or_default();
        assert!(cause.len() < 1_100 && cause.ends_with('…'));
    }

    #[test]
    fn the_template_keeps_its_spelling() {
        assert_eq!(
            respell("nginx:1.25.3", &reference("docker.io/library/nginx:1.25.4")),
            "nginx:1.25.4"
        );
        assert_eq!(
            respell(
                "registry.example.com/shop/web:2.4.1",
                &reference("registry.example.com/shop/web:2.4.2")
            ),
            "registry.example.com/shop/web:2.4.2"
        );
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            respell(
                &format!("localhost:5000/app:1.2@sha256:{}", "a".repeat(64)),
                &reference(&format!("localhost:5000/app:1.2@{digest}"))
            ),
            format!("localhost:5000/app:1.2@{digest}")
        );
        assert_eq!(
            respell("localhost:5000/app", &reference("localhost:5000/app:2")),
            "localhost:5000/app:2"
        );
        // Another repository: the target as given, fully qualified.
        assert_eq!(
            respell("nginx:1.25.3", &reference("ghcr.io/org/nginx:1.25.4")),
            "ghcr.io/org/nginx:1.25.4"
        );
    }
}
