//! `ListUpdates`: for every image the inventory says is running, which
//! newer tag its policy would take. Tags come from the image's registry
//! (`upid::registry`, rate-limited and cached); the decision is
//! `upid::updates::decide`, the same code `upid updates decide` runs
//! offline, so both always agree.
//!
//! Replicas of one workload container running the same image share one
//! decision. Per image the registry is asked for the tag list, then for the
//! digest and creation time of a few tags only: the running tag (a new
//! digest under the same tag is an update too), the tag a first decision
//! without ages chose, the newest tag of the same shape, and the newest
//! others up to `updates.max_candidates`.

pub mod rollouts;
pub mod settings;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::StreamExt;
use upid::registry::{RegistryClient, RegistryConfig, RegistryError};
use upid::updates::decide::{Candidate, Decision, decide, relevant_tags};
use upid::updates::policy::{Policy, PolicyLevel, PolicySource, parse_min_age};
use upid::updates::reference::ImageReference;
use upid::updates::tag::Tag;
use upid::wire::v1;

use self::settings::UpdateSettings;
use crate::api::query::workloads::kind_name;
use crate::store::InventoryRecord;

/// Why update checks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpdateSetupError {
    /// The configured default policy is not one of the accepted names.
    #[error(
        "updates.policy {0:?} is not a policy: use default, none, digest, patch, minor, major or all"
    )]
    Policy(String),
    /// The configured default min-age is not a duration.
    #[error("updates.min_age {value:?}: {cause}")]
    MinAge {
        /// The value.
        value: String,
        /// Why it does not parse.
        cause: String,
    },
    /// The registry client could not be built (TLS roots, ...).
    #[error("registry client: {0}")]
    Registry(#[from] RegistryError),
}

/// Decides updates for running containers; one per collector, shared by
/// every `ListUpdates` call (so the registry cache is too).
#[derive(Debug, Clone)]
pub struct UpdateChecker {
    registry: RegistryClient,
    default_policy: Policy,
    max_candidates: usize,
    concurrency: usize,
}

/// Containers that share one decision: a workload container name running
/// one image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct GroupKey {
    namespace: String,
    workload_kind: String,
    workload: String,
    container: String,
    image: String,
}

/// What is known of one group before the registry is asked.
#[derive(Debug, Clone, Default)]
struct Group {
    container_ids: Vec<String>,
    nodes: Vec<String>,
    labels: BTreeMap<String, String>,
    running_digest: Option<String>,
}

impl UpdateChecker {
    /// A checker with `settings`' default policy and registry access.
    pub fn new(settings: &UpdateSettings) -> Result<UpdateChecker, UpdateSetupError> {
        let level = match settings.policy.trim() {
            "" | "default" => PolicyLevel::Default,
            other => PolicyLevel::parse(other)
                .ok_or_else(|| UpdateSetupError::Policy(settings.policy.clone()))?,
        };
        let min_age_s = if settings.min_age.trim().is_empty() {
            None
        } else {
            parse_min_age(&settings.min_age).map_err(|cause| UpdateSetupError::MinAge {
                value: settings.min_age.clone(),
                cause,
            })?
        };
        let default_policy = Policy {
            level,
            min_age_s,
            allow_tags: None,
            source: PolicySource::Default,
        };
        let registry = RegistryClient::new(RegistryConfig {
            docker_config: settings.registry.docker_config.clone(),
            requests_per_second: settings.registry.requests_per_second,
            cache_ttl: std::time::Duration::from_secs(settings.registry.cache_ttl_s),
            request_timeout: std::time::Duration::from_secs(settings.registry.request_timeout_s),
            insecure_registries: settings.registry.insecure.clone(),
            ..RegistryConfig::default()
        })?;
        Ok(UpdateChecker {
            registry,
            default_policy,
            max_candidates: settings.max_candidates,
            concurrency: settings.concurrency.max(1),
        })
    }

    /// The registry client (its counters feed `/metrics`).
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// Decisions for every running container of `inventory` that
    /// `request`'s namespace and workload select, sorted by namespace,
    /// workload and container.
    pub async fn decide_running(
        self: &Arc<Self>,
        inventory: &HashMap<String, InventoryRecord>,
        request: &v1::ListUpdatesRequest,
        now_unix_ns: i64,
    ) -> v1::ListUpdatesResponse {
        if request.refresh {
            self.registry.clear_cache();
        }
        let (groups, mut skipped) = group_running(inventory, request);
        let now_unix_s = now_unix_ns.div_euclid(1_000_000_000);
        let mut decisions: Vec<v1::UpdateDecision> = futures_util::stream::iter(groups)
            .map(|(key, group)| {
                let this = Arc::clone(self);
                async move { this.decide_group(key, group, now_unix_s, now_unix_ns).await }
            })
            .buffer_unordered(self.concurrency)
            .filter_map(|outcome| {
                let kept = match outcome {
                    Ok(decision) => Some(decision),
                    Err(why) => {
                        skipped.push(why);
                        None
                    }
                };
                std::future::ready(kept)
            })
            .collect()
            .await;
        decisions.sort_by(|a, b| {
            (&a.namespace, &a.workload, &a.container, &a.current).cmp(&(
                &b.namespace,
                &b.workload,
                &b.container,
                &b.current,
            ))
        });
        skipped.sort();
        v1::ListUpdatesResponse {
            decisions,
            skipped,
            at_unix_ns: now_unix_ns,
        }
    }

    /// One group's decision, or why it was skipped.
    async fn decide_group(
        &self,
        key: GroupKey,
        group: Group,
        now_unix_s: i64,
        now_unix_ns: i64,
    ) -> Result<v1::UpdateDecision, String> {
        let who = format!(
            "{}/{} container {}",
            key.namespace, key.workload, key.container
        );
        let reference = ImageReference::parse(&key.image)
            .map_err(|e| format!("{who}: image {:?}: {e}", key.image))?;
        let policy = Policy::from_labels(&group.labels, &self.default_policy).map_err(|e| {
            tracing::warn!(workload = %who, error = %e, "update policy label refused");
            format!("{who}: {e}; fix the label (no decision is made on a policy upid cannot read)")
        })?;
        let running_digest = group.running_digest.as_deref();
        let (candidates, unknown_ages, registry_error) = match self
            .candidates(&reference, running_digest, &policy, now_unix_s)
            .await
        {
            Ok((c, unknown)) => (c, unknown, String::new()),
            Err(e) => {
                tracing::warn!(image = %reference, error = %e, "registry not answering for update check");
                (Vec::new(), HashMap::new(), e.to_string())
            }
        };
        let decision = decide(&reference, running_digest, &candidates, &policy, now_unix_s);
        let age_unknown = match (&decision.candidate_tag, decision.age_s) {
            (Some(tag), None) => unknown_ages.get(tag).cloned().unwrap_or_else(|| {
                "its digest and creation time were not fetched (not among updates.max_candidates)"
                    .to_owned()
            }),
            _ => String::new(),
        };
        Ok(to_wire(
            key,
            group,
            decision,
            registry_error,
            age_unknown,
            now_unix_ns,
        ))
    }

    /// The candidates of `reference`: every tag of the registry's list,
    /// with digest and creation time for the few that matter; and, by
    /// tag, why a fetched tag's creation time is unknown.
    async fn candidates(
        &self,
        reference: &ImageReference,
        running_digest: Option<&str>,
        policy: &Policy,
        now_unix_s: i64,
    ) -> Result<(Vec<Candidate>, HashMap<String, String>), RegistryError> {
        let Some(current_tag) = reference.tag.as_deref() else {
            // Pinned by digest only: there is no tag to compare with.
            return Ok((Vec::new(), HashMap::new()));
        };
        let tags = self.registry.list_tags(reference).await?;
        let relevant = relevant_tags(current_tag, tags.iter().map(String::as_str));
        let mut candidates: Vec<Candidate> = relevant.iter().map(|t| Candidate::tag(*t)).collect();

        // Which tags to ask about: first decide without metadata.
        let first = decide(reference, running_digest, &candidates, policy, now_unix_s);
        let mut wanted: Vec<&str> = vec![current_tag];
        for t in [first.candidate_tag.as_deref(), first.newest_tag.as_deref()]
            .into_iter()
            .flatten()
        {
            if !wanted.contains(&t) {
                wanted.push(t);
            }
        }
        let mut newer: Vec<Tag<'_>> = relevant
            .iter()
            .filter(|t| **t != current_tag)
            .map(|t| Tag::parse(t))
            .collect();
        newer.sort_by(|a, b| b.cmp_version(a).then_with(|| a.raw().cmp(b.raw())));
        for t in newer {
            if wanted.len() > self.max_candidates.max(1) {
                break;
            }
            if !wanted.contains(&t.raw()) {
                wanted.push(t.raw());
            }
        }
        let infos = self.registry.tag_info(reference, &wanted).await;
        let mut known: HashMap<String, (String, Option<i64>)> = HashMap::new();
        let mut unknown_ages: HashMap<String, String> = HashMap::new();
        for (tag, info) in infos {
            match info {
                Ok(info) => {
                    if let Some(why) = info.created_unknown {
                        unknown_ages.insert(tag.clone(), why);
                    }
                    known.insert(tag, (info.digest, info.created_unix_s));
                }
                // The running tag vanished (or one candidate failed): the
                // others still count; the candidate stays without an age.
                Err(e) => {
                    tracing::debug!(image = %reference, tag, error = %e, "tag metadata unavailable");
                    unknown_ages.insert(tag, format!("the registry did not describe it: {e}"));
                }
            }
        }
        for c in &mut candidates {
            if let Some((digest, created)) = known.get(&c.tag) {
                c.digest = Some(digest.clone());
                c.created_unix_s = *created;
            }
        }
        // The running tag's registry digest must be present even when the
        // list did not carry it (it always does; this is belt and braces).
        if !candidates.iter().any(|c| c.tag == current_tag)
            && let Some((digest, created)) = known.get(current_tag)
        {
            candidates.push(Candidate {
                tag: current_tag.to_owned(),
                digest: Some(digest.clone()),
                created_unix_s: *created,
            });
        }
        Ok((candidates, unknown_ages))
    }
}

/// Running containers grouped by workload container and image, and the
/// ones that cannot be decided.
fn group_running(
    inventory: &HashMap<String, InventoryRecord>,
    request: &v1::ListUpdatesRequest,
) -> (BTreeMap<GroupKey, Group>, Vec<String>) {
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let mut skipped = Vec::new();
    for record in inventory.values() {
        let info = &record.info;
        if record.removed || info.state != v1::ContainerState::Running as i32 {
            continue;
        }
        let (workload_kind, workload) = match &info.workload {
            Some(w) if !w.name.is_empty() => (kind_name(w.kind).to_owned(), w.name.clone()),
            _ => ("Container".to_owned(), info.name.clone()),
        };
        let namespace = info.namespace.clone();
        if (!request.namespace.is_empty() && request.namespace != namespace)
            || (!request.workload.is_empty() && request.workload != workload)
        {
            continue;
        }
        let image = info
            .image
            .as_ref()
            .map(|i| {
                if i.reference.is_empty() {
                    match (i.repository.is_empty(), i.tag.is_empty()) {
                        (false, false) => format!("{}:{}", i.repository, i.tag),
                        (false, true) => i.repository.clone(),
                        _ => String::new(),
                    }
                } else {
                    i.reference.clone()
                }
            })
            .unwrap_or_default();
        if image.is_empty() || image.starts_with("sha256:") {
            skipped.push(format!(
                "container {} ({}): runs an image without a name (only an image id), nothing to compare",
                info.name, info.container_id
            ));
            continue;
        }
        let key = GroupKey {
            namespace,
            workload_kind,
            workload,
            container: info.name.clone(),
            image,
        };
        let group = groups.entry(key).or_default();
        group.container_ids.push(info.container_id.clone());
        if !group.nodes.contains(&record.node_name) {
            group.nodes.push(record.node_name.clone());
        }
        for (k, v) in &info.labels {
            group.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if group.running_digest.is_none() {
            group.running_digest = info
                .image
                .as_ref()
                .map(|i| i.digest.clone())
                .filter(|d| !d.is_empty());
        }
    }
    for g in groups.values_mut() {
        g.container_ids.sort();
        g.nodes.sort();
    }
    (groups, skipped)
}

fn to_wire(
    key: GroupKey,
    group: Group,
    d: Decision,
    registry_error: String,
    candidate_age_unknown: String,
    now_unix_ns: i64,
) -> v1::UpdateDecision {
    let reason = if registry_error.is_empty() {
        d.reason
    } else {
        format!(
            "the registry could not be asked ({registry_error}); {}",
            d.reason
        )
    };
    v1::UpdateDecision {
        namespace: key.namespace,
        workload_kind: key.workload_kind,
        workload: key.workload,
        container: key.container,
        container_ids: group.container_ids,
        nodes: group.nodes,
        current: d.current,
        running_digest: group.running_digest.unwrap_or_default(),
        candidate: d.candidate,
        change: d.change.map_or("none", |c| c.name()).to_owned(),
        decision: d.decision.name().to_owned(),
        reason,
        policy: d.policy.update_policy.name().to_owned(),
        policy_source: policy_source_name(d.policy.source).to_owned(),
        candidate_age_s: d.age_s,
        newest: d.newest_tag.filter(|n| Some(n) != d.candidate_tag.as_ref()),
        registry_error,
        checked_unix_ns: now_unix_ns,
        candidate_age_unknown,
    }
}

fn policy_source_name(source: PolicySource) -> &'static str {
    match source {
        PolicySource::Default => "default",
        PolicySource::Labels => "labels",
        PolicySource::Flags => "flags",
    }
}
