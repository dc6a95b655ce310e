//! `upid updates decide`: one decision from the tags given on the command
//! line, made by the same code the collector runs, without a collector or
//! a registry. `upid updates` lists the collector's decisions, `upid
//! updates apply` applies one on this host's Docker Engine with the health
//! gate, `upid updates events` lists what applies recorded, and `upid
//! updates rollouts` lists the image changes the collector saw, judged by
//! the health gate.

mod kube;

use super::Session;
use crate::cli::Output;
use crate::cli::args::{
    ApplyArgs, DecideArgs, Format, RolloutsArgs, UpdateEventsArgs, UpdatesListArgs,
};
use crate::cli::doctor::now_unix_ns;
use crate::cli::error::CliError;
use crate::cli::render;
use crate::cli::view::updates::{
    ApplyView, RolloutsView, UpdateDecisionView, UpdateEventView, UpdateEventsView, UpdatesView,
};
use crate::updates::decide::{Candidate, decide as decide_update};
use crate::updates::docker_apply::{ApplyOptions, apply};
use crate::updates::event::UpdateEvent;
use crate::updates::gate::Verdict as GateVerdictKind;
use crate::updates::kube_apply::WorkloadRef;
use crate::updates::policy::{Policy, PolicyLevel, PolicySource};
use crate::updates::reference::ImageReference;
use crate::wire::v1;

const NS_PER_S: i64 = 1_000_000_000;

/// Decides on `--current` against `--available` under the flags' policy,
/// as of `--now` (default `now_unix_ns`).
pub fn decide(args: &DecideArgs, format: Format, now_unix_ns: i64) -> Result<Output, CliError> {
    let now_unix_ns = args.now.map_or(now_unix_ns, |t| t.resolve(now_unix_ns));
    let now_unix_s = now_unix_ns.div_euclid(NS_PER_S);
    let policy = policy(args);
    let candidates: Vec<Candidate> = args
        .available
        .iter()
        .map(|a| Candidate {
            tag: a.tag.clone(),
            digest: a.digest.clone(),
            created_unix_s: a
                .created
                .map(|t| t.resolve(now_unix_ns).div_euclid(NS_PER_S)),
        })
        .collect();
    let decision = decide_update(
        &args.current,
        args.current_digest.as_deref(),
        &candidates,
        &policy,
        now_unix_s,
    );
    Ok(Output::ok(render::decision(&decision, format)?))
}

/// The policy the flags describe; `source` is `flags` when any was given.
fn policy(args: &DecideArgs) -> Policy {
    let any = args.policy.is_some() || args.min_age.is_some() || args.allow_tags.is_some();
    Policy {
        level: args.policy.map_or(PolicyLevel::Default, |p| p.level()),
        min_age_s: args.min_age.filter(|&s| s > 0),
        allow_tags: args.allow_tags.clone(),
        source: if any {
            PolicySource::Flags
        } else {
            PolicySource::Default
        },
    }
}

impl Session {
    /// `upid updates`: the collector's decision for every running image.
    pub async fn updates(
        &self,
        args: &UpdatesListArgs,
        format: Format,
    ) -> Result<Output, CliError> {
        let response = self
            .list_updates(args.ns.wanted(), args.workload.as_deref(), args.refresh)
            .await?;
        let view = UpdatesView {
            decisions: response
                .decisions
                .iter()
                .map(UpdateDecisionView::from)
                .collect(),
            skipped: response.skipped,
        };
        let stdout = render::updates(&view, format)?;
        self.with_hint(
            stdout,
            format,
            view.decisions.is_empty(),
            "running images",
            None,
            None,
        )
        .await
    }

    async fn list_updates(
        &self,
        namespace: &str,
        workload: Option<&str>,
        refresh: bool,
    ) -> Result<v1::ListUpdatesResponse, CliError> {
        let request = v1::ListUpdatesRequest {
            namespace: namespace.to_owned(),
            workload: workload.unwrap_or_default().to_owned(),
            refresh,
        };
        let r = self.conn.query().list_updates(request).await;
        self.answer("ListUpdates", r, None).await
    }

    /// `upid updates events`.
    pub async fn update_events(
        &self,
        args: &UpdateEventsArgs,
        format: Format,
    ) -> Result<Output, CliError> {
        let request = v1::ListUpdateEventsRequest {
            target: args.target.clone().unwrap_or_default(),
            since_unix_ns: args.since.map_or(0, |t| t.resolve(now_unix_ns()).max(0)),
            limit: args.limit,
        };
        let r = self.conn.query().list_update_events(request).await;
        let events = self.answer("ListUpdateEvents", r, None).await?.events;
        let view = UpdateEventsView {
            events: events.iter().map(UpdateEventView::from).collect(),
        };
        let stdout = render::update_events(&view, format)?;
        self.with_hint(
            stdout,
            format,
            view.events.is_empty(),
            "update events",
            None,
            None,
        )
        .await
    }

    /// `upid updates rollouts`: image changes found in the collector's
    /// history, each with the health gate's verdict.
    pub async fn rollouts(&self, args: &RolloutsArgs, format: Format) -> Result<Output, CliError> {
        let request = v1::ListRolloutsRequest {
            namespace: args.ns.wanted().to_owned(),
            workload: args.workload.clone().unwrap_or_default(),
            since_unix_ns: Some(args.since.resolve(now_unix_ns()).max(0)),
            all: args.all,
            window_s: args
                .window
                .map_or(0, |w| u32::try_from(w.as_secs()).unwrap_or(u32::MAX)),
        };
        let r = self.conn.query().list_rollouts(request).await;
        let response = self.answer("ListRollouts", r, None).await?;
        let view = RolloutsView::from(&response);
        let stdout = render::rollouts(&view, format)?;
        let scope = match &view.since {
            Some(t) => format!("since {t}"),
            None => "in the stored history".to_owned(),
        };
        self.with_hint(
            stdout,
            format,
            view.rollouts.is_empty(),
            "rollouts",
            Some(&scope),
            Some("a rollout shows when a workload's containers start with another image than the ones before them; widen --since (or --since all)"),
        )
        .await
    }

    /// `upid updates apply CONTAINER`: the decision from the collector,
    /// applied on this host's Docker Engine with the health gate, every
    /// step recorded at the collector. Fails (non-zero exit) when the
    /// update was rolled back or could not be applied.
    pub async fn apply_update(&self, args: &ApplyArgs, format: Format) -> Result<Output, CliError> {
        match WorkloadRef::parse(&args.container, "") {
            Ok(Some(workload)) => return self.apply_kube(args, workload, format).await,
            Ok(None) => {}
            Err(message) => {
                return Err(CliError::BadFlag {
                    flag: "CONTAINER|KIND/NAME",
                    reason: message,
                });
            }
        }
        let kube_only = args.kubernetes_flags();
        if !kube_only.is_empty() {
            return Err(CliError::Apply {
                message: format!(
                    "{} {} only to a Kubernetes workload (KIND/NAME, such as deployment/{}); {:?} is a Docker container name; nothing was changed",
                    kube_only.join(", "),
                    if kube_only.len() == 1 {
                        "applies"
                    } else {
                        "apply"
                    },
                    args.container,
                    args.container
                ),
            });
        }
        let docker = bollard::Docker::connect_with_local_defaults().map_err(|e| {
            CliError::Apply {
                message: format!(
                    "cannot reach the Docker Engine ({e}): `upid updates apply` runs on the Docker host (DOCKER_HOST is honoured)"
                ),
            }
        })?;
        let inspected = docker
            .inspect_container(&args.container, None)
            .await
            .map_err(|e| CliError::Apply {
                message: format!(
                    "container {:?} on this Docker host: {e} (`docker ps` lists them); nothing was changed",
                    args.container
                ),
            })?;
        let id = inspected.id.clone().unwrap_or_default();
        let running_image = inspected
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let current = ImageReference::parse(&running_image).map_err(|e| CliError::Apply {
            message: format!("container {:?} runs {running_image:?}: {e}", args.container),
        })?;

        let decisions = self.list_updates("", None, args.refresh).await?;
        let decision = decisions
            .decisions
            .iter()
            .find(|d| d.container_ids.contains(&id))
            .cloned();
        let what = format!("{:?}", args.container);
        let no_decision = format!(
            "the collector has no decision for container {what}: it lists only running containers an agent (or `upid-collector standalone`) on this host reports; check `upid updates`, or give --to TAG --force"
        );
        let target = choose_target(
            args,
            &what,
            "Docker",
            &no_decision,
            &current,
            decision.as_ref(),
        )?;

        let defaults = ApplyOptions::default();
        let options = ApplyOptions {
            before_window: args.before_window,
            health_timeout: args.health_timeout,
            gate_window: args.gate_window,
            keep_old: args.keep_old,
            rollback_on_degraded: args.rollback_on_degraded,
            poll_interval: args.poll_interval.unwrap_or(defaults.poll_interval),
            ..defaults
        };
        let outcome = apply(&docker, &args.container, &target, &options).await;
        let node = hostname();
        let (report, failure) = match outcome {
            Ok(report) => (Some(report), None),
            Err(e) => {
                let events = e.events().to_vec();
                (None, Some((e.to_string(), events)))
            }
        };
        let events: Vec<UpdateEvent> = match (&report, &failure) {
            (Some(r), _) => r.events.clone(),
            (None, Some((_, events))) => events.clone(),
            (None, None) => Vec::new(),
        };
        let ids: Vec<String> = report
            .as_ref()
            .map(|r| vec![r.old_container_id.clone(), r.new_container_id.clone()])
            .unwrap_or_else(|| vec![id.clone()]);
        let recording_error = self.record(&events, &node, &ids).await.err();

        if let Some((message, _)) = failure {
            let mut message = message;
            if let Some(why) = &recording_error {
                message.push_str(&format!(
                    " (the steps could not be recorded at the collector: {why})"
                ));
            }
            return Err(CliError::Apply { message });
        }
        let Some(report) = report else {
            return Err(CliError::Apply {
                message: "the update ended without a report".into(),
            });
        };
        let verdict = report.gate.verdict;
        let view = ApplyView {
            container: report.container.clone(),
            from_image: report.from_image.clone(),
            to_image: report.to_image.clone(),
            verdict: verdict.as_str().to_owned(),
            rolled_back: report.rolled_back,
            decision: decision.as_ref().map(UpdateDecisionView::from),
            forced: args.force,
            old_container_id: report.old_container_id.clone(),
            new_container_id: report.new_container_id.clone(),
            old_container_kept_as: report.old_container_kept_as.clone(),
            gate: report.gate.clone(),
            events: report.events.clone(),
            recording_error,
            kubernetes: None,
        };
        let mut out = Output::ok(render::apply(&view, format)?);
        out.success = !report.rolled_back && verdict != GateVerdictKind::Failed;
        Ok(out)
    }

    /// Sends `events` to the collector (needs an admin token when the
    /// collector requires tokens).
    async fn record(
        &self,
        events: &[UpdateEvent],
        node: &str,
        ids: &[String],
    ) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let request = v1::RecordUpdateEventsRequest {
            events: events
                .iter()
                .map(|e| v1::UpdateEvent {
                    timestamp_unix_ns: e.ts_unix_ms.saturating_mul(1_000_000),
                    target: e.container.clone(),
                    kind: e.kind.as_str().to_owned(),
                    from_image: e.from_image.clone(),
                    to_image: e.to_image.clone(),
                    message: e.message.clone(),
                    node: node.to_owned(),
                    container_ids: ids.iter().filter(|i| !i.is_empty()).cloned().collect(),
                })
                .collect(),
        };
        let r = self.conn.query().record_update_events(request).await;
        self.answer("RecordUpdateEvents", r, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The image to apply: the approved candidate, or with --force the
/// candidate whatever its decision, or --to's tag. `what` names the
/// container (or workload) in messages, `seen_by` what says it runs
/// `current` (`Docker`, `the pod template`), `no_decision` is the refusal
/// when the collector has no decision for it.
fn choose_target(
    args: &ApplyArgs,
    what: &str,
    seen_by: &str,
    no_decision: &str,
    current: &ImageReference,
    decision: Option<&v1::UpdateDecision>,
) -> Result<String, CliError> {
    let refuse = |message: String| Err(CliError::Apply { message });
    if let Some(tag) = &args.to {
        let wanted = current.with_tag(tag).to_string();
        let approved = decision.is_some_and(|d| {
            d.decision == "approve"
                && d.candidate
                    .as_deref()
                    .is_some_and(|c| same_image(c, &wanted))
        });
        if !approved && !args.force {
            return refuse(format!(
                "{wanted} is not the approved update of {what}: add --force to apply it anyway"
            ));
        }
        return Ok(wanted);
    }
    let Some(d) = decision else {
        return refuse(no_decision.to_owned());
    };
    if !same_image(&d.current, &current.to_string()) {
        return refuse(format!(
            "the collector still sees {what} running {} but {seen_by} says {current}: its inventory is behind (it follows within seconds); try again",
            d.current
        ));
    }
    let Some(candidate) = d.candidate.clone() else {
        return refuse(format!("nothing to apply to {what}: {}", d.reason));
    };
    if d.decision != "approve" && !args.force {
        return refuse(format!(
            "the update of {what} to {candidate} is `{}`, not approved: {} (add --force to apply it anyway)",
            d.decision, d.reason
        ));
    }
    // A new digest of the same tag is applied by digest (the local tag
    // still names the old image); a new tag by tag, as people write it.
    if d.change == "digest" {
        return Ok(candidate);
    }
    match ImageReference::parse(&candidate) {
        Ok(r) => Ok(match &r.tag {
            Some(tag) => r.with_tag(tag).to_string(),
            None => candidate,
        }),
        Err(_) => Ok(candidate),
    }
}

/// Whether two references name the same repository and tag (ignoring
/// digests and Docker Hub spellings).
fn same_image(a: &str, b: &str) -> bool {
    match (ImageReference::parse(a), ImageReference::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.registry == b.registry && a.repository == b.repository && a.tag == b.tag
        }
        _ => a == b,
    }
}

/// This host's name, for the events' `node`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
