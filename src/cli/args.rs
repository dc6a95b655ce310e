//! The command line of `upid`: every subcommand, flag and environment
//! variable, declared with clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cli::time_arg::{self, TimeArg};
use crate::wire::v1;

mod export;
mod updates;

pub use export::{ExportArgs, ExportTable};
pub use updates::{
    ApplyArgs, AvailableTag, DEFAULT_ROLLOUT_TIMEOUT, DecideArgs, PolicyArg, RolloutsArgs,
    UpdateEventsArgs, UpdatesListArgs, UpdatesWhat, parse_available,
};

/// Where `upid` looks for the collector when neither `--server` nor
/// `UPID_SERVER` is set: `upid-collector standalone` listens here.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// `upid`: what your containers really use, asked of a upid collector.
#[derive(Debug, Parser)]
#[command(name = "upid", version)]
pub struct Cli {
    /// How to reach the collector.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output format: table (people), wide (more columns), json or yaml
    /// (scripts; field names are stable, see docs/cli.md).
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t = Format::Table
    )]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Connection settings shared by every command that talks to the collector.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Collector gRPC URL: http://HOST:PORT, or https://HOST:PORT for TLS.
    #[arg(long, env = "UPID_SERVER", global = true, default_value = DEFAULT_SERVER)]
    pub server: String,
    /// PEM CA bundle that signed the collector's certificate (https only;
    /// without it the system CA bundle is used).
    #[arg(long, env = "UPID_CA", global = true, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for collectors started with --client-ca.
    #[arg(long, env = "UPID_CLIENT_CERT", global = true, value_name = "PEM")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "UPID_CLIENT_KEY", global = true, value_name = "PEM")]
    pub client_key: Option<PathBuf>,
    /// Server name to verify in the collector's certificate, when it differs
    /// from the host in --server.
    #[arg(long, env = "UPID_TLS_DOMAIN", global = true, value_name = "NAME")]
    pub tls_domain: Option<String>,
    /// File holding the bearer token (role `query` or `admin`), sent as
    /// `authorization: Bearer <token>`.
    #[arg(long, env = "UPID_TOKEN_FILE", global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// How long to wait for the connection and for each answer.
    #[arg(
        long,
        env = "UPID_TIMEOUT",
        global = true,
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub timeout: Duration,
}

/// Output format chosen with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with human units.
    Table,
    /// The table with more columns and full ids.
    Wide,
    /// JSON with unit-named fields.
    Json,
    /// YAML with the same fields as JSON.
    Yaml,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List nodes, containers or workloads.
    Get {
        /// What to list.
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Containers by their latest CPU (or memory) use, busiest first.
    Top(TopArgs),
    /// Show one container in detail: identity, image, state, workload,
    /// requests and limits, latest usage, a recent series and its recent
    /// events.
    Describe {
        /// What to describe.
        #[command(subcommand)]
        what: DescribeWhat,
    },
    /// Lifecycle events (start, die, OOM, restart, image and health
    /// changes, create, destroy), newest first.
    Events(EventsArgs),
    /// What containers should request and limit, from their usage
    /// history: current → recommended, confidence, monthly saving and the
    /// reason (wide and JSON: the evidence).
    Rightsize(RightsizeArgs),
    /// Workloads whose CPU and network stayed under the idle thresholds:
    /// since when, and what they cost.
    Idle(IdleArgs),
    /// What containers cost over a window, grouped, with waste and the
    /// saving the recommendations would bring.
    Cost(CostArgs),
    /// A one-screen summary of a cluster, node, workload or pod: cost, top
    /// savings, idle workloads, OOM and throttling hot spots.
    Analyze {
        /// What to analyze.
        #[command(subcommand)]
        what: AnalyzeWhat,
    },
    /// Image updates: which newer tag to take, what kind of change it is,
    /// and whether the policy approves it (`decide`: offline, from tags
    /// you give).
    #[command(args_conflicts_with_subcommands = true)]
    Updates {
        /// What to do; without a subcommand, list the decision for every
        /// running image.
        #[command(subcommand)]
        what: Option<UpdatesWhat>,
        /// Flags of the listing.
        #[command(flatten)]
        list: UpdatesListArgs,
    },
    /// Download the Parquet reports of a range into a directory,
    /// Hive-partitioned by date (`<table>/date=YYYY-MM-DD/part-0.parquet`):
    /// samples, containers, rightsizing, idle, cost and update decisions.
    /// Each file is checked against its SHA-256 and replaced atomically; a
    /// progress bar shows on a terminal.
    Export(ExportArgs),
    /// Check the way to the collector step by step (address, TLS, health,
    /// auth, versions, clocks, agents) and say how to fix what fails.
    Doctor,
    /// Print a shell completion script: `source <(upid completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `upid get ...`.
#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// Nodes and the agents that report them.
    #[command(visible_alias = "node", alias = "no")]
    Nodes,
    /// Containers (and services) with who they are (name, workload, image,
    /// state, health, restarts) and their latest usage.
    #[command(visible_alias = "container", alias = "ctr")]
    Containers(ContainersArgs),
    /// Workloads (Kubernetes owners, compose services, containers) with
    /// their summed usage.
    #[command(visible_alias = "workload", alias = "wl")]
    Workloads(WorkloadsArgs),
}

/// `-n NAMESPACE` / `-A`, shared by the commands that filter by namespace.
/// Without either, every namespace is listed (as kubectl does when no
/// namespace is configured).
#[derive(Debug, Clone, Default, Args)]
pub struct NamespaceArgs {
    /// Only this namespace: a Kubernetes namespace or a compose project.
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Every namespace (the default; for kubectl habits).
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

impl NamespaceArgs {
    /// The namespace to ask for; empty means every namespace.
    pub fn wanted(&self) -> &str {
        match (&self.namespace, self.all_namespaces) {
            (Some(ns), false) => ns,
            _ => "",
        }
    }
}

/// Flags of `upid get containers`.
#[derive(Debug, Clone, Args)]
pub struct ContainersArgs {
    /// Only containers on this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Include containers that are gone (exited, removed, not sampled any
    /// more); their STATE is `gone`.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Flags of `upid get workloads`.
#[derive(Debug, Clone, Args)]
pub struct WorkloadsArgs {
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// A lifecycle event type, as `--type` takes it and tables show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum EventType {
    /// The container started (first start or after a restart).
    Start,
    /// Its main process exited.
    Die,
    /// The kernel OOM-killed a process in it.
    Oom,
    /// The runtime restarted it.
    Restart,
    /// Its image (or its workload's image) changed.
    #[value(alias = "image_change")]
    ImageChange,
    /// Its health status changed.
    #[value(alias = "health_change")]
    HealthChange,
    /// It was created.
    Create,
    /// It was removed.
    Destroy,
}

impl EventType {
    /// Every type, in the order help and errors list them.
    pub const ALL: [EventType; 8] = [
        EventType::Start,
        EventType::Die,
        EventType::Oom,
        EventType::Restart,
        EventType::ImageChange,
        EventType::HealthChange,
        EventType::Create,
        EventType::Destroy,
    ];

    /// The name `--type` takes and tables and JSON show.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Start => "start",
            EventType::Die => "die",
            EventType::Oom => "oom",
            EventType::Restart => "restart",
            EventType::ImageChange => "image-change",
            EventType::HealthChange => "health-change",
            EventType::Create => "create",
            EventType::Destroy => "destroy",
        }
    }

    /// The wire kind.
    pub fn kind(self) -> v1::EventKind {
        match self {
            EventType::Start => v1::EventKind::Start,
            EventType::Die => v1::EventKind::Die,
            EventType::Oom => v1::EventKind::Oom,
            EventType::Restart => v1::EventKind::Restart,
            EventType::ImageChange => v1::EventKind::ImageChange,
            EventType::HealthChange => v1::EventKind::HealthChange,
            EventType::Create => v1::EventKind::Create,
            EventType::Destroy => v1::EventKind::Destroy,
        }
    }

    /// The type of a wire kind; `None` for unspecified or unknown values.
    pub fn of_kind(value: i32) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.kind() as i32 == value)
    }
}

/// Flags of `upid events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only events at or after this time: a duration back from now (`30m`,
    /// `2h`, `7d`) or an RFC 3339 time (`2024-05-01T12:00:00Z`). Default:
    /// everything stored.
    #[arg(long, value_name = "WHEN", value_parser = time_arg::parse)]
    pub since: Option<TimeArg>,
    /// Only events before this time (same forms as --since). Default: now.
    #[arg(long, value_name = "WHEN", value_parser = time_arg::parse)]
    pub until: Option<TimeArg>,
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// Only this workload: its name, `KIND/NAME` as the WORKLOAD column
    /// shows it (`deployment/web`), or `KIND/NAMESPACE/NAME`.
    #[arg(long, value_name = "WORKLOAD")]
    pub workload: Option<String>,
    /// Only this container: a full or unique-prefix id, or a container
    /// name.
    #[arg(long, value_name = "ID|NAME")]
    pub container: Option<String>,
    /// Only containers on this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Only these types, comma-separated or repeated.
    #[arg(long = "type", value_name = "TYPE", value_enum, value_delimiter = ',')]
    pub types: Vec<EventType>,
    /// At most this many events, the newest; 0 lets the collector choose
    /// (1000).
    #[arg(long, default_value_t = DEFAULT_EVENT_LIMIT)]
    pub limit: u32,
}

/// Events `upid events` shows without `--limit`.
pub const DEFAULT_EVENT_LIMIT: u32 = 100;

/// Events `upid describe container` shows.
pub const DESCRIBE_EVENT_LIMIT: u32 = 20;

/// What `upid top` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// CPU cores used, highest first.
    Cpu,
    /// Working-set memory, highest first.
    Memory,
}

/// Flags of `upid top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Only containers on this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Sort key.
    #[arg(long, value_enum, default_value_t = SortBy::Cpu)]
    pub sort: SortBy,
}

/// `upid describe ...`.
#[derive(Debug, Subcommand)]
pub enum DescribeWhat {
    /// One container: a full or unique-prefix container id, or
    /// `NODE:CGROUP_PATH` (the `id` field of `get containers -o json`).
    #[command(visible_alias = "containers")]
    Container(DescribeContainerArgs),
}

/// Flags of `upid describe container`.
#[derive(Debug, Clone, Args)]
pub struct DescribeContainerArgs {
    /// The container.
    pub id: String,
    /// How far back the recent series goes.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Width of each point of the series (default: a round step giving
    /// about 12 points, e.g. 5m for 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub step: Option<Duration>,
}

/// Which containers an analysis command covers: `-n`/`-A`, `--workload`,
/// `--node` (an `AnalysisScope`; what is not given matches everything).
#[derive(Debug, Clone, Default, Args)]
pub struct ScopeArgs {
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// Only this workload (its name: Deployment, compose service, ...).
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Only containers on this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

impl ScopeArgs {
    /// The scope to send.
    pub fn scope(&self) -> v1::AnalysisScope {
        v1::AnalysisScope {
            namespace: self.ns.wanted().to_owned(),
            workload: self.workload.clone().unwrap_or_default(),
            node_name: self.node.clone().unwrap_or_default(),
            pod: String::new(),
            container: String::new(),
        }
    }
}

/// How `upid rightsize` groups what the collector saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RightsizeBy {
    /// One row per workload and container name, every replica pooled.
    Workload,
    /// One row per container instance (with its node and id).
    Container,
}

impl RightsizeBy {
    /// The wire grouping.
    pub fn grouping(self) -> v1::RightsizeGrouping {
        match self {
            RightsizeBy::Workload => v1::RightsizeGrouping::Workload,
            RightsizeBy::Container => v1::RightsizeGrouping::Container,
        }
    }
}

/// Flags of `upid rightsize`.
#[derive(Debug, Clone, Args)]
pub struct RightsizeArgs {
    /// Namespace, workload and node filters.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Only this Kubernetes pod.
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,
    /// Only containers of this name (Kubernetes container name, compose
    /// service, Docker container name).
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// One row per workload and container name (replicas pooled), or one
    /// per container instance.
    #[arg(long, value_enum, default_value_t = RightsizeBy::Workload)]
    pub by: RightsizeBy,
    /// Recommend a CPU limit of the recommended request times R (at least
    /// 1). Default: the collector's setting (none: no CPU limit is
    /// recommended).
    #[arg(long, value_name = "R", value_parser = parse_limit_ratio)]
    pub cpu_limit_ratio: Option<f64>,
}

impl RightsizeArgs {
    /// The request to send.
    pub fn request(&self) -> v1::RightsizeRequest {
        let mut scope = self.scope.scope();
        scope.pod = self.pod.clone().unwrap_or_default();
        scope.container = self.container.clone().unwrap_or_default();
        v1::RightsizeRequest {
            scope: Some(scope),
            group_by: self.by.grouping() as i32,
            cpu_limit_ratio: self.cpu_limit_ratio,
        }
    }
}

/// `--cpu-limit-ratio`: a finite number of at least 1 (Kubernetes refuses
/// a limit below the request).
fn parse_limit_ratio(text: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "`{text}` is not a ratio of at least 1 (the limit is the request times R, and a limit below the request is refused): e.g. 1, 1.5, 2"
        )
    };
    let r: f64 = text.trim().parse().map_err(|_| bad())?;
    if r.is_finite() && r >= 1.0 {
        Ok(r)
    } else {
        Err(bad())
    }
}

/// Flags of `upid idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Namespace, workload and node filters.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Also list workloads that are not idle, with why not.
    #[arg(long, short = 'a')]
    pub all: bool,
}

impl IdleArgs {
    /// The request to send.
    pub fn request(&self) -> v1::IdleRequest {
        v1::IdleRequest {
            scope: Some(self.scope.scope()),
            include_active: self.all,
        }
    }
}

/// How `upid cost` groups containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CostBy {
    /// One line per namespace (compose project).
    Namespace,
    /// One line per workload.
    Workload,
    /// One line per node.
    Node,
    /// One line per image reference.
    Image,
    /// One line per container.
    Container,
}

impl CostBy {
    /// The wire grouping.
    pub fn grouping(self) -> v1::CostGrouping {
        match self {
            CostBy::Namespace => v1::CostGrouping::Namespace,
            CostBy::Workload => v1::CostGrouping::Workload,
            CostBy::Node => v1::CostGrouping::Node,
            CostBy::Image => v1::CostGrouping::Image,
            CostBy::Container => v1::CostGrouping::Container,
        }
    }

    /// The name `--by` takes and JSON shows.
    pub fn name(self) -> &'static str {
        match self {
            CostBy::Namespace => "namespace",
            CostBy::Workload => "workload",
            CostBy::Node => "node",
            CostBy::Image => "image",
            CostBy::Container => "container",
        }
    }
}

/// Flags of `upid cost`.
#[derive(Debug, Clone, Args)]
pub struct CostArgs {
    /// What one line is.
    #[arg(long, value_enum, default_value_t = CostBy::Workload)]
    pub by: CostBy,
    /// History to charge, ending now (`24h`, `7d`, `30d`; at least a
    /// minute). Default: the collector's (7 days).
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub window: Option<Duration>,
    /// Namespace, workload and node filters.
    #[command(flatten)]
    pub scope: ScopeArgs,
}

impl CostArgs {
    /// The request to send.
    pub fn request(&self) -> v1::CostRequest {
        v1::CostRequest {
            scope: Some(self.scope.scope()),
            group_by: self.by.grouping() as i32,
            window_s: self
                .window
                .map_or(0, |w| i64::try_from(w.as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

/// `--window`: a duration of at least a minute (usage is stored per
/// minute).
fn parse_window(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}): e.g. 24h, 7d, 30d"))?;
    if d < Duration::from_secs(60) {
        return Err(format!(
            "`{text}` is shorter than a minute (usage is stored per minute): e.g. 1h, 24h, 7d"
        ));
    }
    Ok(d)
}

/// `upid analyze ...`: what the summary covers.
#[derive(Debug, Subcommand)]
pub enum AnalyzeWhat {
    /// Every container the collector knows (with -n: one namespace).
    Cluster(AnalyzeClusterArgs),
    /// The containers on one node.
    Node(AnalyzeNamedArgs),
    /// One workload (its name: Deployment, compose service, ...).
    Workload(AnalyzeNamedArgs),
    /// One Kubernetes pod.
    Pod(AnalyzeNamedArgs),
}

/// Flags of `upid analyze cluster`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeClusterArgs {
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
}

/// Flags of `upid analyze node|workload|pod NAME`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeNamedArgs {
    /// The node, workload or pod name.
    pub name: String,
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
}

impl AnalyzeWhat {
    /// `cluster`, `node`, `workload` or `pod`; the name given (none for
    /// the cluster); the namespace flags.
    pub fn target(&self) -> (&'static str, Option<&str>, &NamespaceArgs) {
        match self {
            AnalyzeWhat::Cluster(a) => ("cluster", None, &a.ns),
            AnalyzeWhat::Node(a) => ("node", Some(&a.name), &a.ns),
            AnalyzeWhat::Workload(a) => ("workload", Some(&a.name), &a.ns),
            AnalyzeWhat::Pod(a) => ("pod", Some(&a.name), &a.ns),
        }
    }

    /// The scope to send: the name goes to `node_name`, `workload` or
    /// `pod`, `-n` to `namespace`.
    pub fn scope(&self) -> v1::AnalysisScope {
        let (_, name, ns) = self.target();
        let name = name.unwrap_or_default().to_owned();
        let mut scope = v1::AnalysisScope {
            namespace: ns.wanted().to_owned(),
            ..Default::default()
        };
        match self {
            AnalyzeWhat::Cluster(_) => {}
            AnalyzeWhat::Node(_) => scope.node_name = name,
            AnalyzeWhat::Workload(_) => scope.workload = name,
            AnalyzeWhat::Pod(_) => scope.pod = name,
        }
        scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_work_before_and_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "upid",
            "--server",
            "http://h:1",
            "get",
            "containers",
            "--node",
            "n1",
            "-a",
            "-o",
            "json",
            "--timeout",
            "3s",
        ])
        .expect("parses");
        assert_eq!(cli.connect.server, "http://h:1");
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.connect.timeout, Duration::from_secs(3));
        match cli.command {
            Command::Get {
                what: GetWhat::Containers(a),
            } => {
                assert_eq!(a.node.as_deref(), Some("n1"));
                assert!(a.all);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn describe_takes_an_id_and_a_window() {
        let cli = Cli::try_parse_from([
            "upid",
            "describe",
            "container",
            "abc123",
            "--since",
            "30m",
            "--step",
            "1m",
        ])
        .expect("parses");
        match cli.command {
            Command::Describe {
                what: DescribeWhat::Container(a),
            } => {
                assert_eq!(a.id, "abc123");
                assert_eq!(a.since, Duration::from_secs(1800));
                assert_eq!(a.step, Some(Duration::from_secs(60)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn containers_and_workloads_take_a_namespace_or_all_of_them() {
        let cli = Cli::try_parse_from(["upid", "get", "containers", "-n", "shop", "--all"])
            .expect("parses");
        match cli.command {
            Command::Get {
                what: GetWhat::Containers(a),
            } => {
                assert_eq!(a.ns.wanted(), "shop");
                assert!(a.all);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["upid", "get", "workloads", "-A"]).expect("parses");
        match cli.command {
            Command::Get {
                what: GetWhat::Workloads(a),
            } => assert_eq!(a.ns.wanted(), "", "-A is every namespace"),
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["upid", "get", "containers"]).expect("parses");
        match cli.command {
            Command::Get {
                what: GetWhat::Containers(a),
            } => assert_eq!(a.ns.wanted(), "", "every namespace by default"),
            other => panic!("unexpected {other:?}"),
        }
        let e = Cli::try_parse_from(["upid", "get", "containers", "-n", "shop", "-A"])
            .expect_err("-n and -A conflict");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    fn events(args: &[&str]) -> Result<EventsArgs, clap::Error> {
        let argv = ["upid", "events"].iter().chain(args).copied();
        match Cli::try_parse_from(argv)?.command {
            Command::Events(a) => Ok(a),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn events_take_every_filter() {
        let a = events(&[
            "--since",
            "2h",
            "--until",
            "2024-05-01T12:00:00Z",
            "-n",
            "shop",
            "--workload",
            "deployment/web",
            "--container",
            "web",
            "--node",
            "n1",
            "--type",
            "die,oom",
            "--type",
            "image_change",
            "--limit",
            "5",
            "-o",
            "wide",
        ])
        .expect("parses");
        assert_eq!(a.since, Some(TimeArg::Ago(Duration::from_secs(7200))));
        assert_eq!(a.until, Some(TimeArg::At(1_714_564_800_000_000_000)));
        assert_eq!(a.ns.wanted(), "shop");
        assert_eq!(a.workload.as_deref(), Some("deployment/web"));
        assert_eq!(a.container.as_deref(), Some("web"));
        assert_eq!(a.node.as_deref(), Some("n1"));
        assert_eq!(
            a.types,
            [EventType::Die, EventType::Oom, EventType::ImageChange]
        );
        assert_eq!(a.limit, 5);
        let a = events(&[]).expect("parses");
        assert_eq!(a.since, None, "everything stored by default");
        assert_eq!(a.limit, DEFAULT_EVENT_LIMIT);
        assert!(a.types.is_empty());
    }

    #[test]
    fn an_unknown_event_type_is_refused_with_the_valid_ones() {
        let e = events(&["--type", "start,explode"]).expect_err("unknown type");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let text = e.to_string();
        assert!(text.contains("explode"), "{text}");
        for t in EventType::ALL {
            assert!(text.contains(t.name()), "{text} lacks {}", t.name());
        }
    }

    #[test]
    fn a_bad_since_is_refused_with_the_forms_that_work() {
        let e = events(&["--since", "yesterday"]).expect_err("bad time");
        let text = e.to_string();
        assert!(
            text.contains("30m, 2h, 7d") && text.contains("RFC 3339"),
            "{text}"
        );
    }

    fn command(args: &[&str]) -> Result<Command, clap::Error> {
        let argv = ["upid"].iter().chain(args).copied();
        Ok(Cli::try_parse_from(argv)?.command)
    }

    #[test]
    fn rightsize_sends_every_filter_its_grouping_and_ratio() {
        let Ok(Command::Rightsize(a)) = command(&[
            "rightsize",
            "-n",
            "shop",
            "--workload",
            "checkout",
            "--node",
            "n1",
            "--pod",
            "checkout-7d9f8-x2k4q",
            "--container",
            "app",
            "--by",
            "container",
            "--cpu-limit-ratio",
            "1.5",
        ]) else {
            panic!("rightsize parses");
        };
        let r = a.request();
        assert_eq!(
            r.scope,
            Some(v1::AnalysisScope {
                namespace: "shop".into(),
                workload: "checkout".into(),
                node_name: "n1".into(),
                pod: "checkout-7d9f8-x2k4q".into(),
                container: "app".into(),
            })
        );
        assert_eq!(r.group_by, v1::RightsizeGrouping::Container as i32);
        assert_eq!(r.cpu_limit_ratio, Some(1.5));
        let Ok(Command::Rightsize(a)) = command(&["rightsize", "-A"]) else {
            panic!("rightsize parses");
        };
        let r = a.request();
        assert_eq!(r.scope, Some(v1::AnalysisScope::default()));
        assert_eq!(r.group_by, v1::RightsizeGrouping::Workload as i32);
        assert_eq!(r.cpu_limit_ratio, None, "the collector's setting");
    }

    #[test]
    fn a_cpu_limit_below_the_request_is_refused() {
        for bad in ["0.5", "0", "-2", "NaN", "inf", "two"] {
            let flag = format!("--cpu-limit-ratio={bad}");
            let e = command(&["rightsize", &flag]).expect_err(bad);
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            assert!(e.to_string().contains("at least 1"), "{e}");
        }
        assert!(command(&["rightsize", "--cpu-limit-ratio", "1"]).is_ok());
    }

    #[test]
    fn idle_and_cost_send_their_scope_and_options() {
        let Ok(Command::Idle(a)) = command(&["idle", "-n", "staging", "--node", "n2", "--all"])
        else {
            panic!("idle parses");
        };
        let r = a.request();
        assert!(r.include_active);
        let scope = r.scope.unwrap_or_default();
        assert_eq!(
            (scope.namespace.as_str(), scope.node_name.as_str()),
            ("staging", "n2")
        );
        let Ok(Command::Cost(a)) = command(&["cost", "--by", "image", "--window", "30d"]) else {
            panic!("cost parses");
        };
        let r = a.request();
        assert_eq!(r.group_by, v1::CostGrouping::Image as i32);
        assert_eq!(r.window_s, 30 * 86_400);
        let Ok(Command::Cost(a)) = command(&["cost"]) else {
            panic!("cost parses");
        };
        let r = a.request();
        assert_eq!(r.group_by, v1::CostGrouping::Workload as i32, "the default");
        assert_eq!(r.window_s, 0, "the collector chooses");
        let e = command(&["cost", "--window", "30s"]).expect_err("too short");
        assert!(e.to_string().contains("shorter than a minute"), "{e}");
        let e = command(&["cost", "--window", "a week"]).expect_err("not a duration");
        assert!(e.to_string().contains("e.g. 24h, 7d, 30d"), "{e}");
        let e = command(&["cost", "--by", "team"]).expect_err("unknown grouping");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn analyze_puts_the_name_where_its_kind_goes() {
        let scope = |args: &[&str]| match command(args) {
            Ok(Command::Analyze { what }) => what.scope(),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(scope(&["analyze", "cluster"]), v1::AnalysisScope::default());
        assert_eq!(
            scope(&["analyze", "cluster", "-n", "shop"]).namespace,
            "shop"
        );
        assert_eq!(scope(&["analyze", "node", "n1"]).node_name, "n1");
        let w = scope(&["analyze", "workload", "checkout", "-n", "shop"]);
        assert_eq!(
            (w.workload.as_str(), w.namespace.as_str()),
            ("checkout", "shop")
        );
        assert!(w.node_name.is_empty() && w.pod.is_empty());
        let p = scope(&["analyze", "pod", "checkout-7d9f8-x2k4q", "-n", "shop"]);
        assert_eq!(p.pod, "checkout-7d9f8-x2k4q");
        assert!(p.workload.is_empty());
        assert!(
            command(&["analyze", "node"]).is_err(),
            "a node needs its name"
        );
    }

    #[test]
    fn event_type_names_match_their_wire_kinds_both_ways() {
        for t in EventType::ALL {
            assert_eq!(EventType::of_kind(t.kind() as i32), Some(t));
            // The name `--type` takes is the one clap knows.
            let value = t.to_possible_value().expect("visible");
            assert_eq!(value.get_name(), t.name());
        }
        assert_eq!(EventType::of_kind(0), None);
        assert_eq!(EventType::of_kind(99), None);
    }
}
