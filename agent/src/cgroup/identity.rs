//! Who a cgroup belongs to, from its path alone: Docker, containerd, CRI-O
//! and Podman containers (with the Kubernetes pod and QoS class when the
//! kubelet created the parent), systemd services, and cgroups matched by a
//! user's glob ([`CgroupGlob`]).
//!
//! Paths are relative to the hierarchy root and start with `/`, e.g.
//! `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`.

use upid::model::{CgroupIdentity, QosClass, Runtime};

/// Container scope prefixes and the runtime that creates them. CRI-O and
/// Podman conmon scopes (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`)
/// fail the 64-hex id check and so are not containers.
const SCOPE_PREFIXES: &[(&str, Runtime)] = &[
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::Crio),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
];

/// Classifies a cgroup path (relative to the hierarchy root, starting with
/// `/`). `None` for everything that is neither a container nor a top-level
/// systemd service: slices, pod cgroups themselves, session scopes,
/// `init.scope`, runtime internals below a container.
///
/// Recognised:
/// - Docker: `/docker/<id>` (cgroupfs driver), `…/docker-<id>.scope`
///   (systemd driver, any slice);
/// - containerd `…/cri-containerd-<id>.scope`, CRI-O `…/crio-<id>.scope`,
///   Podman `…/libpod-<id>.scope` and `/libpod_parent/libpod-<id>`;
/// - kubelet pods, systemd driver
///   (`/kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid>.slice/<scope>`)
///   and cgroupfs driver (`/kubepods/[<qos>/]pod<uid>/<id>`, a bare id being
///   containerd), also under the kubelet's `--cgroup-root` of `kubelet`
///   (`/kubelet.slice/kubelet-kubepods.slice/…`, `/kubelet/kubepods/…`);
/// - systemd services `/system.slice/<name>.service`.
///
/// Container ids must be exactly 64 lowercase hex digits.
pub fn identify(cgroup_path: &str) -> Option<CgroupIdentity> {
    let rest = cgroup_path.strip_prefix('/')?;
    if rest.is_empty() {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    if let Some(kube) = kube_pod_container(&segments) {
        return kube.map(|k| container(cgroup_path, k.runtime, k.id, Some(k.pod), Some(k.qos)));
    }
    match segments.as_slice() {
        ["docker", id] if is_container_id(id) => {
            return Some(container(cgroup_path, Runtime::Docker, id, None, None));
        }
        ["libpod_parent", name] => {
            let id = name
                .strip_prefix("libpod-")
                .filter(|id| is_container_id(id))?;
            return Some(container(cgroup_path, Runtime::Podman, id, None, None));
        }
        ["system.slice", unit] => {
            if let Some(name) = unit.strip_suffix(".service")
                && !name.is_empty()
            {
                return Some(CgroupIdentity {
                    cgroup_path: cgroup_path.to_owned(),
                    runtime: Runtime::Systemd,
                    container_id: None,
                    pod_uid: None,
                    qos: None,
                    unit: Some((*unit).to_owned()),
                });
            }
        }
        _ => {}
    }
    // A container scope anywhere, unless an ancestor is already a container
    // (then this is a runtime's internals, e.g. Docker-in-Docker).
    let (last, ancestors) = segments.split_last()?;
    let (runtime, id) = scope_container(last)?;
    if ancestors.iter().any(|s| scope_container(s).is_some())
        || matches!(segments.as_slice(), ["docker", id, ..] if is_container_id(id))
    {
        return None;
    }
    Some(container(cgroup_path, runtime, id, None, None))
}

fn container(
    cgroup_path: &str,
    runtime: Runtime,
    id: &str,
    pod_uid: Option<String>,
    qos: Option<QosClass>,
) -> CgroupIdentity {
    CgroupIdentity {
        cgroup_path: cgroup_path.to_owned(),
        runtime,
        container_id: Some(id.to_owned()),
        pod_uid,
        qos,
        unit: None,
    }
}

/// True for exactly 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `<runtime prefix><id>.scope`.
fn scope_container(segment: &str) -> Option<(Runtime, &str)> {
    let body = segment.strip_suffix(".scope")?;
    prefixed_container(body)
}

/// `<runtime prefix><id>`.
fn prefixed_container(body: &str) -> Option<(Runtime, &str)> {
    SCOPE_PREFIXES.iter().find_map(|(prefix, runtime)| {
        body.strip_prefix(prefix)
            .filter(|id| is_container_id(id))
            .map(|id| (*runtime, id))
    })
}

/// A container of a kubelet-managed pod.
struct KubeContainer<'a> {
    runtime: Runtime,
    id: &'a str,
    pod: String,
    qos: QosClass,
}

/// `None`: not under a kubepods cgroup, let other rules decide.
/// `Some(None)`: under kubepods but not a pod's container (a QoS or pod
/// cgroup itself, or something unexpected).
fn kube_pod_container<'a>(segments: &[&'a str]) -> Option<Option<KubeContainer<'a>>> {
    match segments {
        ["kubepods.slice", rest @ ..] => Some(kube_systemd("kubepods", rest)),
        ["kubelet.slice", "kubelet-kubepods.slice", rest @ ..] => {
            Some(kube_systemd("kubelet-kubepods", rest))
        }
        ["kubepods", rest @ ..] | ["kubelet", "kubepods", rest @ ..] => Some(kube_cgroupfs(rest)),
        _ => None,
    }
}

/// Below `<base>.slice`, systemd driver: `[<base>-<qos>.slice/]<base>[-<qos>]-pod<uid>.slice/<scope>`.
fn kube_systemd<'a>(base: &str, rest: &[&'a str]) -> Option<KubeContainer<'a>> {
    let (qos, pod_slice, scope) = match rest {
        [pod_slice, scope] => (QosClass::Guaranteed, *pod_slice, *scope),
        [qos_slice, pod_slice, scope] => {
            let qos_name = qos_slice
                .strip_prefix(base)?
                .strip_prefix('-')?
                .strip_suffix(".slice")?;
            (qos_from_name(qos_name)?, *pod_slice, *scope)
        }
        _ => return None,
    };
    let pod_prefix = pod_slice.strip_prefix(base)?.strip_prefix('-')?;
    let uid = match qos {
        QosClass::Guaranteed => pod_prefix,
        QosClass::Burstable => pod_prefix.strip_prefix("burstable-")?,
        QosClass::BestEffort => pod_prefix.strip_prefix("besteffort-")?,
    }
    .strip_prefix("pod")?
    .strip_suffix(".slice")?;
    let pod = pod_uid(uid)?;
    let (runtime, id) = scope_container(scope)?;
    Some(KubeContainer {
        runtime,
        id,
        pod,
        qos,
    })
}

/// Below `kubepods`, cgroupfs driver: `[<qos>/]pod<uid>/<container>`, the
/// container a bare id (containerd) or a runtime-prefixed name
/// (`crio-<id>`), with or without `.scope`.
fn kube_cgroupfs<'a>(rest: &[&'a str]) -> Option<KubeContainer<'a>> {
    let (qos, pod_dir, name) = match rest {
        [pod_dir, name] => (QosClass::Guaranteed, *pod_dir, *name),
        [qos_dir, pod_dir, name] => (qos_from_name(qos_dir)?, *pod_dir, *name),
        _ => return None,
    };
    let pod = pod_uid(pod_dir.strip_prefix("pod")?)?;
    let body = name.strip_suffix(".scope").unwrap_or(name);
    let (runtime, id) = if is_container_id(body) && body.len() == name.len() {
        (Runtime::Containerd, body)
    } else {
        prefixed_container(body)?
    };
    Some(KubeContainer {
        runtime,
        id,
        pod,
        qos,
    })
}

fn qos_from_name(name: &str) -> Option<QosClass> {
    match name {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// A pod UID from a cgroup name: a UUID (or a static pod's 32-hex hash),
/// `_` standing for `-` in systemd slice names.
fn pod_uid(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    ok.then(|| raw.replace('_', "-"))
}

/// A `--cgroup-glob` pattern over cgroup paths (`/user.slice/**`).
///
/// `*` matches any characters within one path segment, `?` exactly one
/// character, and `**` (a whole segment) any number of segments. A trailing
/// `/**` matches everything below its parent but not the parent itself, so
/// `/user.slice/**` matches `/user.slice/user-1000.slice` but not
/// `/user.slice`. Patterns must start with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupGlob {
    pattern: String,
    segments: Vec<GlobSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobSegment {
    /// `**`: zero or more segments.
    Deep,
    /// One segment matching these tokens.
    One(Vec<Token>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    AnyChar,
    /// `*`
    Star,
}

/// A `--cgroup-glob` pattern that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    /// The pattern is empty.
    #[error("empty cgroup glob; expected a path such as `/user.slice/**`")]
    Empty,
    /// The pattern does not start with `/`.
    #[error(
        "cgroup glob `{0}` must start with `/` (paths are relative to the cgroup root, e.g. `/user.slice/**`)"
    )]
    NotAbsolute(String),
    /// An empty segment (`//`) in the pattern.
    #[error("cgroup glob `{0}` has an empty segment (`//`)")]
    EmptySegment(String),
    /// `**` mixed with other characters in one segment.
    #[error(
        "cgroup glob `{0}`: `**` must be a whole segment (`/a/**/b`), use `*` within a segment"
    )]
    PartialDeep(String),
    /// A glob feature this matcher does not have.
    #[error(
        "cgroup glob `{0}`: `{1}` is not supported; only `*`, `?` and `**` are (character classes and alternatives are not)"
    )]
    Unsupported(String, char),
}

impl CgroupGlob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(GlobError::NotAbsolute(pattern.to_owned()));
        };
        if let Some(c) = pattern.chars().find(|c| matches!(c, '[' | ']' | '{' | '}')) {
            return Err(GlobError::Unsupported(pattern.to_owned(), c));
        }
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut segments = Vec::new();
        if !body.is_empty() {
            for seg in body.split('/') {
                if seg.is_empty() {
                    return Err(GlobError::EmptySegment(pattern.to_owned()));
                }
                if seg == "**" {
                    if segments.last() != Some(&GlobSegment::Deep) {
                        segments.push(GlobSegment::Deep);
                    }
                    continue;
                }
                if seg.contains("**") {
                    return Err(GlobError::PartialDeep(pattern.to_owned()));
                }
                let tokens = seg
                    .chars()
                    .map(|c| match c {
                        '*' => Token::Star,
                        '?' => Token::AnyChar,
                        c => Token::Char(c),
                    })
                    .collect();
                segments.push(GlobSegment::One(tokens));
            }
        }
        // A trailing `**` means "everything below": at least one segment.
        if segments.last() == Some(&GlobSegment::Deep) {
            segments.pop();
            segments.push(GlobSegment::One(vec![Token::Star]));
            segments.push(GlobSegment::Deep);
        }
        Ok(CgroupGlob {
            pattern: pattern.to_owned(),
            segments,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// True when `cgroup_path` (relative to the hierarchy root, starting
    /// with `/`) matches.
    pub fn matches(&self, cgroup_path: &str) -> bool {
        let Some(rest) = cgroup_path.strip_prefix('/') else {
            return false;
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return self.segments.iter().all(|s| *s == GlobSegment::Deep);
        }
        // Greedy matching with one backtrack point (the last `**`): every
        // other pattern segment consumes exactly one path segment, so the
        // classic wildcard algorithm applies at segment level.
        let mut pi = 0;
        let mut remaining = Some(rest);
        // (pattern index after the last `**`, path where it stopped swallowing)
        let mut star: Option<(usize, &str)> = None;
        while let Some(path) = remaining {
            let (seg, tail) = match path.split_once('/') {
                Some((seg, tail)) => (seg, Some(tail)),
                None => (path, None),
            };
            match self.segments.get(pi) {
                Some(GlobSegment::Deep) => {
                    pi += 1;
                    star = Some((pi, path));
                    continue;
                }
                Some(GlobSegment::One(tokens)) if segment_matches(tokens, seg) => {
                    pi += 1;
                    remaining = tail;
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last `**` swallow one more segment.
            let Some((after, at)) = star else {
                return false;
            };
            let next = at.split_once('/').map(|(_, tail)| tail);
            pi = after;
            remaining = next;
            star = next.map(|next| (after, next));
        }
        self.segments[pi..].iter().all(|s| *s == GlobSegment::Deep)
    }

    /// The identity of a cgroup this glob matched: [`Runtime::Cgroup`], no
    /// container, pod or unit.
    pub fn identity(cgroup_path: &str) -> CgroupIdentity {
        CgroupIdentity {
            cgroup_path: cgroup_path.to_owned(),
            runtime: Runtime::Cgroup,
            container_id: None,
            pod_uid: None,
            qos: None,
            unit: None,
        }
    }
}

/// Wildcard match of one path segment (`*`, `?`, literal characters),
/// greedy with a single backtrack point: O(len(tokens) × len(text)).
fn segment_matches(tokens: &[Token], text: &str) -> bool {
    let mut ti = 0; // byte offset into text
    let mut pi = 0;
    let mut star: Option<(usize, usize)> = None; // (token after `*`, text offset)
    while let Some(c) = text[ti..].chars().next() {
        match tokens.get(pi) {
            Some(Token::Star) => {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            Some(Token::AnyChar) => {
                pi += 1;
                ti += c.len_utf8();
                continue;
            }
            Some(Token::Char(p)) if *p == c => {
                pi += 1;
                ti += c.len_utf8();
                continue;
            }
            _ => {}
        }
        match star.as_mut() {
            Some((after, at)) => {
                let Some(skipped) = text[*at..].chars().next() else {
                    return false;
                };
                *at += skipped.len_utf8();
                pi = *after;
                ti = *at;
            }
            None => return false,
        }
    }
    tokens[pi..].iter().all(|t| *t == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_wildcards() {
        let t = |p: &str| -> Vec<Token> {
            p.chars()
                .map(|c| match c {
                    '*' => Token::Star,
                    '?' => Token::AnyChar,
                    c => Token::Char(c),
                })
                .collect()
        };
        assert!(segment_matches(&t("*"), ""));
        assert!(segment_matches(&t("a*b*c"), "aXXbYYc"));
        assert!(segment_matches(&t("a*b*c"), "abbc"));
        assert!(!segment_matches(&t("a*b*c"), "aXXbYY"));
        assert!(segment_matches(&t("?é?"), "aéb"));
        assert!(!segment_matches(&t("??"), "é"));
        assert!(segment_matches(&t("*.service"), "ssh.service"));
        assert!(!segment_matches(&t("*.service"), "ssh.scope"));
    }
}
