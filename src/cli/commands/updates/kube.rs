//! `upid updates apply KIND/NAME`: the collector's decision for a
//! Kubernetes workload's container, applied through its pod template with
//! the rollout watched and the health gate run
//! ([`crate::updates::kube_apply`]), every step recorded at the collector
//! under `NAMESPACE/KIND/NAME`. The same rules as for a Docker container:
//! approved decisions only unless `--force`, `--to TAG` needs `--force`
//! unless it is the approved candidate, non-zero exit after a rollback.

use super::{choose_target, same_image};
use crate::cli::Output;
use crate::cli::args::{ApplyArgs, Format};
use crate::cli::commands::Session;
use crate::cli::connect::QueryClient;
use crate::cli::error::CliError;
use crate::cli::render;
use crate::cli::view::updates::{ApplyView, KubeApplyView, UpdateDecisionView};
use crate::updates::event::UpdateEvent;
use crate::updates::kube_apply::usage::{SeriesError, SeriesFuture, UsageSource};
use crate::updates::kube_apply::{
    self, Cluster, DEFAULT_POLL_INTERVAL, KubeApplyError, KubeApplyOptions, WorkloadRef, patch,
};
use crate::updates::reference::ImageReference;
use crate::wire::v1;

/// The collector as the source of the gate's CPU and memory: each
/// container's `GetContainerSeries`.
struct CollectorUsage(QueryClient);

impl UsageSource for CollectorUsage {
    fn series<'a>(
        &'a self,
        container_id: &'a str,
        start_unix_ns: i64,
        end_unix_ns: i64,
        step_ns: i64,
    ) -> SeriesFuture<'a> {
        let mut client = self.0.clone();
        Box::pin(async move {
            let request = v1::GetContainerSeriesRequest {
                id: container_id.to_owned(),
                start_unix_ns,
                end_unix_ns,
                step_ns,
            };
            match client.get_container_series(request).await {
                Ok(r) => Ok(r.into_inner().points),
                Err(s) if s.code() == tonic::Code::NotFound => Err(SeriesError::NotFound),
                Err(s) => Err(SeriesError::Failed(format!(
                    "GetContainerSeries answered {:?}: {}",
                    s.code(),
                    s.message()
                ))),
            }
        })
    }
}

fn apply_error(e: &KubeApplyError) -> CliError {
    CliError::Apply {
        message: e.to_string(),
    }
}

impl Session {
    /// `upid updates apply KIND/NAME`: see the module documentation.
    pub(super) async fn apply_kube(
        &self,
        args: &ApplyArgs,
        workload: WorkloadRef,
        format: Format,
    ) -> Result<Output, CliError> {
        if args.keep_old {
            return Err(CliError::Apply {
                message: format!(
                    "--keep-old is for Docker containers: a rollout of {workload} replaces its pods, and the image it ran stays in the {} annotation for a rollback by hand; nothing was changed",
                    patch::PREVIOUS_IMAGE_ANNOTATION
                ),
            });
        }
        let cluster = Cluster::connect(args.kubeconfig.as_deref(), args.context.as_deref())
            .await
            .map_err(|e| apply_error(&e))?;
        let mut workload = workload;
        workload.namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| cluster.default_namespace.clone());
        let found = kube_apply::inspect(&cluster, &workload, args.pod_container.as_deref())
            .await
            .map_err(|e| apply_error(&e))?;
        let current = ImageReference::parse(&found.image).map_err(|e| CliError::Apply {
            message: format!(
                "{workload} container {} runs {:?}: {e}; nothing was changed",
                found.container, found.image
            ),
        })?;

        let decisions = self
            .list_updates(&workload.namespace, Some(&workload.name), args.refresh)
            .await?;
        let mine: Vec<&v1::UpdateDecision> = decisions
            .decisions
            .iter()
            .filter(|d| {
                d.namespace == workload.namespace
                    && d.workload == workload.name
                    && d.workload_kind.eq_ignore_ascii_case(workload.kind.kind())
                    && d.container == found.container
            })
            .collect();
        // Mid-rollout the collector may decide for two images of one
        // container: the one the template names is the one to update.
        let decision = mine
            .iter()
            .find(|d| same_image(&d.current, &current.to_string()))
            .or(mine.first())
            .map(|d| (*d).clone());
        let what = format!(
            "{workload} (container {}, namespace {})",
            found.container, workload.namespace
        );
        let no_decision = format!(
            "the collector has no decision for {what}: it decides for the running pods the upid agents in the cluster report; check `upid updates -n {} --workload {}`, or give --to TAG --force",
            workload.namespace, workload.name
        );
        let target = choose_target(
            args,
            &what,
            "the pod template",
            &no_decision,
            &current,
            decision.as_ref(),
        )?;
        let new_image = match ImageReference::parse(&target) {
            Ok(r) => patch::respell(&found.image, &r),
            Err(_) => target,
        };
        let why = match &decision {
            Some(d) if d.decision == "approve" && !args.force => {
                format!("{} update, approved: {}", d.change, d.reason)
            }
            Some(d) => format!("forced; the decision was {}: {}", d.decision, d.reason),
            None => "forced with --to".to_owned(),
        };
        let options = KubeApplyOptions {
            before_window: args.before_window,
            rollout_timeout: args
                .rollout_timeout
                .unwrap_or(crate::cli::args::DEFAULT_ROLLOUT_TIMEOUT),
            gate_window: args.gate_window,
            poll_interval: args.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL),
            rollback_on_degraded: args.rollback_on_degraded,
            change_cause: Some(format!(
                "upid updates apply: {} {} -> {new_image} ({why})",
                found.container, found.image
            )),
            ..KubeApplyOptions::default()
        };

        let collector = CollectorUsage(self.conn.query());
        let outcome = kube_apply::apply(
            &cluster,
            &workload,
            &found.container,
            &new_image,
            &options,
            Some(&collector),
        )
        .await;
        let (report, failure) = match outcome {
            Ok(report) => (Some(report), None),
            Err(e) => (None, Some((e.to_string(), e.events().to_vec()))),
        };
        let events: Vec<UpdateEvent> = match (&report, &failure) {
            (Some(r), _) => r.events.clone(),
            (None, Some((_, events))) => events.clone(),
            (None, None) => Vec::new(),
        };
        let (nodes, ids) = match &report {
            Some(r) => (
                r.nodes.join(","),
                r.old_container_ids
                    .iter()
                    .chain(&r.new_container_ids)
                    .cloned()
                    .collect(),
            ),
            None => (String::new(), Vec::new()),
        };
        let recording_error = self.record(&events, &nodes, &ids).await.err();

        if let Some((mut message, _)) = failure {
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
        let view = ApplyView {
            container: report.container.clone(),
            from_image: report.from_image.clone(),
            to_image: report.to_image.clone(),
            verdict: report.gate.verdict.as_str().to_owned(),
            rolled_back: report.rolled_back,
            decision: decision.as_ref().map(UpdateDecisionView::from),
            forced: args.force,
            old_container_id: String::new(),
            new_container_id: String::new(),
            old_container_kept_as: None,
            gate: report.gate.clone(),
            events: report.events.clone(),
            recording_error,
            kubernetes: Some(KubeApplyView {
                namespace: workload.namespace.clone(),
                kind: workload.kind.kind().to_owned(),
                name: workload.name.clone(),
                target: workload.target(),
                from_revision: report.from_revision.clone(),
                to_revision: report.to_revision.clone(),
                rollout_completed: report.rollout.completed,
                rollout: report.rollout.message.clone(),
                rollback_started: report.rollback_started,
                old_pods: report.old_pods.clone(),
                new_pods: report.new_pods.clone(),
                old_container_ids: report.old_container_ids.clone(),
                new_container_ids: report.new_container_ids.clone(),
                nodes: report.nodes.clone(),
            }),
        };
        let mut out = Output::ok(render::apply(&view, format)?);
        out.success = !report.rollback_started;
        Ok(out)
    }
}
