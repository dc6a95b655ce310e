//! The commands that query the collector: call, turn the answer into
//! views, render. Sorting and the empty-result hints live here too; the
//! analysis commands are in [`analysis`]; `upid updates decide`, which
//! asks no collector, in [`updates`].

mod analysis;
pub mod export;
pub mod updates;

use std::cmp::Ordering;
use std::time::Duration;

use crate::cli::Output;
use crate::cli::args::{
    ContainersArgs, DESCRIBE_EVENT_LIMIT, DescribeContainerArgs, EventsArgs, Format, SortBy,
    TopArgs, WorkloadsArgs,
};
use crate::cli::connect::{Connection, Settings};
use crate::cli::doctor::now_unix_ns;
use crate::cli::error::CliError;
use crate::cli::render::{self, empty_hint};
use crate::cli::units::rfc3339;
use crate::cli::view::{ContainerView, DescribeView, EventView, NodeView, WorkloadView};
use crate::wire::v1;

/// An open connection and the settings it was opened with.
pub struct Session {
    settings: Settings,
    conn: Connection,
}

impl Session {
    /// Connects.
    pub async fn open(settings: Settings) -> Result<Session, CliError> {
        let conn = settings.connect().await?;
        Ok(Session { settings, conn })
    }

    /// The answer of a call, or the error that says what to do.
    async fn answer<T>(
        &self,
        method: &'static str,
        result: Result<tonic::Response<T>, tonic::Status>,
        container_id: Option<&str>,
    ) -> Result<T, CliError> {
        match result {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => Err(self
                .settings
                .explain(self.settings.status_error(method, &status, container_id))
                .await),
        }
    }

    /// Agents connected, for empty-result hints (best effort).
    async fn agents_connected(&self) -> Option<u32> {
        let info = self
            .conn
            .query()
            .get_server_info(v1::GetServerInfoRequest {})
            .await
            .ok()?;
        Some(info.into_inner().agents_connected)
    }

    /// `upid get nodes`.
    pub async fn nodes(&self, format: Format) -> Result<Output, CliError> {
        let r = self.conn.query().list_nodes(v1::ListNodesRequest {}).await;
        let mut nodes: Vec<NodeView> = self
            .answer("ListNodes", r, None)
            .await?
            .nodes
            .iter()
            .map(NodeView::from)
            .collect();
        nodes.sort_by(|a, b| a.node_name.cmp(&b.node_name));
        let stdout = render::nodes(&nodes, format, now_unix_ns())?;
        let advice = format!(
            "start `upid-agent run --collector {}` on each node, or use `upid-collector standalone` on this host",
            self.settings.target.url
        );
        self.with_hint(
            stdout,
            format,
            nodes.is_empty(),
            "nodes",
            None,
            Some(&advice),
        )
        .await
    }

    /// `upid get containers`.
    pub async fn containers(
        &self,
        args: &ContainersArgs,
        format: Format,
    ) -> Result<Output, CliError> {
        let namespace = args.ns.wanted();
        let request = v1::ListContainersRequest {
            node_name: args.node.clone().unwrap_or_default(),
            include_gone: args.all,
            namespace: namespace.to_owned(),
        };
        let r = self.conn.query().list_containers(request).await;
        let mut containers: Vec<ContainerView> = self
            .answer("ListContainers", r, None)
            .await?
            .containers
            .iter()
            .map(ContainerView::from)
            .collect();
        // A collector older than the namespace filter ignores it: filter
        // here too, so `-n` never shows another namespace.
        retain_namespace(&mut containers, namespace);
        sort_containers(&mut containers);
        let stdout = render::containers(&containers, format, now_unix_ns())?;
        let advice = (!args.all).then_some("add --all to include containers that are gone");
        let scope = scope(args.node.as_deref(), namespace);
        self.with_hint(
            stdout,
            format,
            containers.is_empty(),
            "containers",
            scope.as_deref(),
            advice,
        )
        .await
    }

    /// `upid top`.
    pub async fn top(&self, args: &TopArgs, format: Format) -> Result<Output, CliError> {
        let request = v1::TopRequest {
            node_name: args.node.clone().unwrap_or_default(),
        };
        let r = self.conn.query().top(request).await;
        let mut containers: Vec<ContainerView> = self
            .answer("Top", r, None)
            .await?
            .containers
            .iter()
            .map(ContainerView::from)
            .collect();
        sort_top(&mut containers, args.sort);
        let stdout = render::top(&containers, format)?;
        let scope = scope(args.node.as_deref(), "");
        self.with_hint(
            stdout,
            format,
            containers.is_empty(),
            "running containers",
            scope.as_deref(),
            None,
        )
        .await
    }

    /// `upid get workloads`.
    pub async fn workloads(
        &self,
        args: &WorkloadsArgs,
        format: Format,
    ) -> Result<Output, CliError> {
        let namespace = args.ns.wanted();
        let request = v1::ListWorkloadsRequest {
            namespace: namespace.to_owned(),
        };
        let r = self.conn.query().list_workloads(request).await;
        let mut workloads: Vec<WorkloadView> = self
            .answer("ListWorkloads", r, None)
            .await?
            .workloads
            .iter()
            .map(WorkloadView::from)
            .collect();
        workloads.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
        });
        let stdout = render::workloads(&workloads, format)?;
        let scope = scope(None, namespace);
        self.with_hint(
            stdout,
            format,
            workloads.is_empty(),
            "workloads",
            scope.as_deref(),
            Some("`upid get containers` lists everything sampled"),
        )
        .await
    }

    /// `upid events`, over `range` (from [`event_range`]).
    pub async fn events(
        &self,
        args: &EventsArgs,
        range: EventRange,
        format: Format,
    ) -> Result<Output, CliError> {
        let EventRange {
            now_unix_ns: now,
            since_unix_ns,
            until_unix_ns,
        } = range;
        let namespace = args.ns.wanted();
        let request = v1::ListEventsRequest {
            since_unix_ns,
            until_unix_ns,
            node_name: args.node.clone().unwrap_or_default(),
            namespace: namespace.to_owned(),
            workload: args.workload.clone().unwrap_or_default(),
            container: args.container.clone().unwrap_or_default(),
            kinds: args.types.iter().map(|t| t.kind() as i32).collect(),
            limit: args.limit,
        };
        let r = self.conn.query().list_events(request).await;
        let mut events: Vec<EventView> = self
            .answer("ListEvents", r, args.container.as_deref())
            .await?
            .events
            .iter()
            .map(EventView::from)
            .collect();
        sort_events(&mut events);
        let stdout = render::events(&events, format, now)?;
        let scope = scope(args.node.as_deref(), namespace);
        let mut out = self
            .with_hint(
                stdout,
                format,
                events.is_empty(),
                "events",
                scope.as_deref(),
                Some("widen --since, or drop filters"),
            )
            .await?;
        let table = matches!(format, Format::Table | Format::Wide);
        if table && args.limit > 0 && events.len() >= args.limit as usize {
            out.stderr = format!(
                "Showing the newest {} events: raise --limit (0: the collector's maximum) or narrow --since\n",
                events.len()
            );
        }
        Ok(out)
    }

    /// `upid describe container ID`.
    pub async fn describe(
        &self,
        args: &DescribeContainerArgs,
        format: Format,
    ) -> Result<Output, CliError> {
        let request = v1::GetContainerRequest {
            id: args.id.clone(),
        };
        let r = self.conn.query().get_container(request).await;
        let detail = self.answer("GetContainer", r, Some(&args.id)).await?;
        // Ask for the series by the exact key, so a prefix that became
        // ambiguous in between cannot pick another container.
        let key = detail
            .summary
            .as_ref()
            .and_then(|s| s.r#ref.as_ref())
            .map(|r| {
                crate::cli::view::container_key(
                    &r.node_name,
                    &r.identity.clone().unwrap_or_default(),
                )
            })
            .unwrap_or_else(|| args.id.clone());
        let end_unix_ns = now_unix_ns();
        let since_ns = i64::try_from(args.since.as_nanos()).unwrap_or(i64::MAX);
        let start_unix_ns = end_unix_ns.saturating_sub(since_ns);
        let step = args.step.unwrap_or_else(|| default_step(args.since));
        let step_ns = i64::try_from(step.as_nanos()).unwrap_or(i64::MAX);
        let request = v1::GetContainerSeriesRequest {
            id: key.clone(),
            start_unix_ns,
            end_unix_ns,
            step_ns,
        };
        let r = self.conn.query().get_container_series(request).await;
        let series = self.answer("GetContainerSeries", r, Some(&key)).await;
        let container_id = detail
            .summary
            .as_ref()
            .and_then(|s| s.r#ref.as_ref())
            .and_then(|r| r.identity.as_ref())
            .map(|i| i.container_id.clone())
            .unwrap_or_default();
        // Events are the runtime's: a cgroup without a container id has none.
        let events = if container_id.is_empty() {
            Ok(v1::ListEventsResponse::default())
        } else {
            let request = v1::ListEventsRequest {
                container: container_id.clone(),
                limit: DESCRIBE_EVENT_LIMIT,
                ..Default::default()
            };
            let r = self.conn.query().list_events(request).await;
            self.answer("ListEvents", r, Some(&container_id)).await
        };
        let view = DescribeView::new(
            &detail,
            match &series {
                Ok(s) => Ok((start_unix_ns, end_unix_ns, s)),
                Err(e) => Err(e.to_string()),
            },
            match &events {
                Ok(e) => Ok(e.events.as_slice()),
                Err(e) => Err(e.to_string()),
            },
        );
        Ok(Output::ok(render::describe(&view, format, now_unix_ns())?))
    }

    async fn with_hint(
        &self,
        stdout: String,
        format: Format,
        empty: bool,
        what: &str,
        scope: Option<&str>,
        advice: Option<&str>,
    ) -> Result<Output, CliError> {
        let mut out = Output::ok(String::new());
        if empty && matches!(format, Format::Table | Format::Wide) {
            let agents = self.agents_connected().await;
            out.stderr = empty_hint(what, scope, agents, advice);
        } else {
            out.stdout = stdout;
        }
        Ok(out)
    }
}

/// Points `describe` shows without `--step`: a short series.
const DEFAULT_SERIES_POINTS: u64 = 12;

/// Round steps, shortest first.
const ROUND_STEPS_S: &[u64] = &[
    10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
];

/// The step for about [`DEFAULT_SERIES_POINTS`] points over `since`: the
/// smallest round step at least `since / 12` (10 s at least, a day at most).
pub fn default_step(since: Duration) -> Duration {
    let wanted_s = since.as_secs().div_ceil(DEFAULT_SERIES_POINTS);
    let step_s = ROUND_STEPS_S
        .iter()
        .copied()
        .find(|s| *s >= wanted_s)
        .unwrap_or(86_400);
    Duration::from_secs(step_s)
}

/// The time range `upid events` asks for, resolved once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRange {
    /// Now, as the range was resolved.
    pub now_unix_ns: i64,
    /// Lower bound; 0: unbounded.
    pub since_unix_ns: i64,
    /// Upper bound; 0: unbounded.
    pub until_unix_ns: i64,
}

/// Resolves `--since`/`--until` against `now_unix_ns`; an empty range is
/// an error (before anything is asked of the collector).
pub fn event_range(args: &EventsArgs, now_unix_ns: i64) -> Result<EventRange, CliError> {
    let since_unix_ns = args.since.map_or(0, |t| t.resolve(now_unix_ns));
    let until_unix_ns = args.until.map_or(0, |t| t.resolve(now_unix_ns));
    let until_or_now = if until_unix_ns > 0 {
        until_unix_ns
    } else {
        now_unix_ns
    };
    if since_unix_ns > 0 && since_unix_ns >= until_or_now {
        return Err(CliError::BadFlag {
            flag: "--since/--until",
            reason: format!(
                "--since ({}) is not before {} ({})",
                rfc3339(since_unix_ns).unwrap_or_default(),
                if until_unix_ns > 0 { "--until" } else { "now" },
                rfc3339(until_or_now).unwrap_or_default()
            ),
        });
    }
    Ok(EventRange {
        now_unix_ns,
        since_unix_ns,
        until_unix_ns,
    })
}

/// Where a listing looked, for its empty hint: `in namespace shop on node
/// n1`; `None` when it looked everywhere.
fn scope(node: Option<&str>, namespace: &str) -> Option<String> {
    let mut parts = Vec::new();
    if !namespace.is_empty() {
        parts.push(format!("in namespace {namespace}"));
    }
    if let Some(node) = node {
        parts.push(format!("on node {node}"));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Keeps the containers of `namespace` (all when it is empty).
fn retain_namespace(containers: &mut Vec<ContainerView>, namespace: &str) {
    if !namespace.is_empty() {
        containers.retain(|c| c.namespace.as_deref() == Some(namespace));
    }
}

/// By namespace (none first), name, node and id: replicas of one workload
/// side by side, a stable order for scripts.
fn sort_containers(containers: &mut [ContainerView]) {
    containers.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.node_name, &a.id).cmp(&(
            &b.namespace,
            &b.name,
            &b.node_name,
            &b.id,
        ))
    });
}

/// Newest first (whatever order the collector sent), ties in a stable order.
fn sort_events(events: &mut [EventView]) {
    events.sort_by(|a, b| {
        b.time_unix_ns
            .cmp(&a.time_unix_ns)
            .then_with(|| (&a.container_id, &a.event_type).cmp(&(&b.container_id, &b.event_type)))
    });
}

/// Highest first; absent values last; ties by node and id for a stable
/// order.
fn sort_top(containers: &mut [ContainerView], by: SortBy) {
    let key = |c: &ContainerView| match by {
        SortBy::Cpu => c.cpu_cores,
        SortBy::Memory => c.memory_working_set_bytes.map(|b| b as f64),
    };
    containers.sort_by(|a, b| {
        let primary = match (key(a), key(b)) {
            (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        primary.then_with(|| (&a.node_name, &a.id).cmp(&(&b.node_name, &b.id)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::fixtures;
    use clap::Parser as _;

    fn views() -> Vec<ContainerView> {
        [fixtures::service(), fixtures::docker(), fixtures::pod()]
            .iter()
            .map(ContainerView::from)
            .collect()
    }

    fn order(c: &[ContainerView]) -> Vec<&str> {
        c.iter().map(|c| c.node_name.as_str()).collect()
    }

    #[test]
    fn describe_defaults_to_about_a_dozen_round_steps() {
        let step = |s: u64| default_step(Duration::from_secs(s)).as_secs();
        assert_eq!(step(3600), 300);
        assert_eq!(step(600), 60);
        assert_eq!(step(86_400), 7200);
        assert_eq!(step(30), 10);
        assert_eq!(step(90 * 86_400), 86_400);
    }

    #[test]
    fn top_sorts_by_cpu_then_memory_highest_first_unknown_last() {
        let mut c = views();
        sort_top(&mut c, SortBy::Cpu);
        // pod 1.25 cores, docker 0.253, service unknown.
        assert_eq!(order(&c), ["node-b", "node-a", "node-a"]);
        assert_eq!(c[2].unit.as_deref(), Some("ssh.service"));
        sort_top(&mut c, SortBy::Memory);
        // pod 1.2Gi, docker 120Mi, service 5Mi.
        assert_eq!(c[0].node_name, "node-b");
        assert!(c[1].container_id.is_some());
        assert_eq!(c[2].unit.as_deref(), Some("ssh.service"));
    }

    fn events_args(args: &[&str]) -> EventsArgs {
        let argv = ["upid", "events"].iter().chain(args).copied();
        match crate::cli::Cli::try_parse_from(argv)
            .expect("parses")
            .command
        {
            crate::cli::args::Command::Events(a) => a,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn event_ranges_resolve_against_now_and_refuse_empty_ones() {
        use crate::cli::render::fixtures::NOW_NS;
        let s = 1_000_000_000;
        let r = event_range(&events_args(&["--since", "1h"]), NOW_NS).expect("valid");
        assert_eq!(r.since_unix_ns, NOW_NS - 3600 * s);
        assert_eq!(r.until_unix_ns, 0, "unbounded: the collector's now");
        let r = event_range(
            &events_args(&["--since", "2023-11-14T00:00:00Z", "--until", "30m"]),
            NOW_NS,
        )
        .expect("valid");
        assert_eq!(r.since_unix_ns, NOW_NS - (22 * 3600 + 13 * 60 + 20) * s);
        assert_eq!(r.until_unix_ns, NOW_NS - 1800 * s);
        let none = event_range(&events_args(&[]), NOW_NS).expect("valid");
        assert_eq!((none.since_unix_ns, none.until_unix_ns), (0, 0));
        let e = event_range(&events_args(&["--since", "1h", "--until", "2h"]), NOW_NS)
            .expect_err("since after until");
        let text = e.to_string();
        assert!(
            text.contains(
                "--since (2023-11-14T21:13:20Z) is not before --until (2023-11-14T20:13:20Z)"
            ),
            "{text}"
        );
        assert!(event_range(&events_args(&["--since", "2030-01-01"]), NOW_NS).is_err());
    }

    #[test]
    fn events_are_newest_first_whatever_order_they_came_in() {
        let mut events: Vec<EventView> = fixtures::events()
            .iter()
            .rev()
            .map(EventView::from)
            .collect();
        sort_events(&mut events);
        let times: Vec<i64> = events.iter().map(|e| e.time_unix_ns).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        // Same instant: a stable order (by container, then type).
        assert_eq!(events[0].event_type, "die");
        assert_eq!(events[1].event_type, "oom");
    }

    #[test]
    fn the_namespace_filter_holds_even_if_the_collector_ignores_it() {
        let mut c: Vec<ContainerView> = [
            fixtures::docker(),
            fixtures::pod(),
            fixtures::service(),
            fixtures::gone(),
        ]
        .iter()
        .map(ContainerView::from)
        .collect();
        retain_namespace(&mut c, "");
        assert_eq!(c.len(), 4, "no namespace: everything");
        retain_namespace(&mut c, "shop");
        sort_containers(&mut c);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["checkout", "shop-web-1"]);
        assert_eq!(
            scope(Some("n1"), "shop").as_deref(),
            Some("in namespace shop on node n1")
        );
        assert_eq!(scope(None, ""), None);
    }
}
