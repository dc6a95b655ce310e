//! The command line of `upid`: every subcommand, flag and environment
//! variable, declared with clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Show one container in detail: identity, limits, latest usage and a
    /// recent series.
    Describe {
        /// What to describe.
        #[command(subcommand)]
        what: DescribeWhat,
    },
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
    /// Containers (and services) with their latest usage.
    #[command(visible_alias = "container", alias = "ctr")]
    Containers(ContainersArgs),
    /// Workloads (Kubernetes owners) with their summed usage.
    #[command(visible_alias = "workload", alias = "wl")]
    Workloads(WorkloadsArgs),
}

/// Flags of `upid get containers`.
#[derive(Debug, Clone, Args)]
pub struct ContainersArgs {
    /// Only containers on this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Include containers that are gone (exited, not sampled any more).
    #[arg(long, short = 'a')]
    pub all: bool,
}

/// Flags of `upid get workloads`.
#[derive(Debug, Clone, Args)]
pub struct WorkloadsArgs {
    /// Only workloads in this Kubernetes namespace.
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

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
}
