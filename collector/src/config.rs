//! Collector configuration: command-line flags over `UPID_*` environment
//! variables (both parsed by clap) over a YAML config file over the
//! documented defaults (docs/collector.md).
//!
//! Every flag is an `Option` here so that "not given" can fall through to
//! the file and then to the default; [`Settings::resolve`] does that merge
//! and checks the result.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::analysis::settings::{AnalysisSettings, Pricing};
use crate::report::settings::ReportSettings;
use crate::store::RetentionSettings;
use crate::updates::settings::UpdateSettings;

/// Default gRPC address of `serve`.
pub const SERVE_LISTEN: &str = "0.0.0.0:7070";
/// Default `/metrics` address of `serve`.
pub const SERVE_METRICS_LISTEN: &str = "0.0.0.0:7071";
/// Default gRPC address of `standalone` (this host only).
pub const STANDALONE_LISTEN: &str = "127.0.0.1:7070";
/// Default `/metrics` address of `standalone`.
pub const STANDALONE_METRICS_LISTEN: &str = "127.0.0.1:7071";
/// Default store file of `serve`.
pub const SERVE_STORE: &str = "/var/lib/upid/upid.duckdb";
/// Default batches per second an agent may send (replays included).
pub const AGENT_RATE_LIMIT_PER_S: u32 = 50;
/// Default burst of batches above the rate.
pub const AGENT_RATE_BURST: u32 = 500;
/// Default largest accepted gRPC message.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Default sampling interval of `standalone`.
pub const STANDALONE_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest sampling interval allowed.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What is wrong with the configuration. Each message names the setting and
/// where it came from when that helps.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An `analysis:`, `pricing:`, `updates:` or `retention:` setting is out
    /// of range.
    #[error("config file: {0}")]
    Analysis(String),
    /// The config file could not be read.
    #[error("reading the config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The config file is not valid YAML for these settings.
    #[error("config file {path}: {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What the parser said (line, column, unknown key...).
        source: serde_norway::Error,
    },
    /// An address is not `IP:PORT`.
    #[error(
        "{setting} {value:?} is not an address of the form IP:PORT (e.g. 127.0.0.1:7070 or [::]:7070)"
    )]
    Address {
        /// The setting.
        setting: &'static str,
        /// What was given.
        value: String,
    },
    /// A duration could not be parsed.
    #[error("{setting} {value:?} is not a duration (e.g. 10s, 1m): {source}")]
    Duration {
        /// The setting.
        setting: &'static str,
        /// What was given.
        value: String,
        /// Why.
        source: humantime::DurationError,
    },
    /// A setting is out of its allowed range.
    #[error("{setting} {value} is out of range: {allowed}")]
    Range {
        /// The setting.
        setting: &'static str,
        /// What was given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// Only one half of a certificate/key pair was given.
    #[error("tls_cert and tls_key must be given together (got only {given})")]
    HalfTls {
        /// The half that was given.
        given: &'static str,
    },
    /// A client CA without a server certificate.
    #[error(
        "client_ca needs tls_cert and tls_key: client certificates are checked during the TLS handshake"
    )]
    ClientCaWithoutTls,
    /// No home directory to put the standalone store in.
    #[error("no store path given and neither XDG_DATA_HOME nor HOME is set: pass --store PATH")]
    NoDataDir,
}

/// Options shared by `serve` and `standalone`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// gRPC address to listen on [serve: 0.0.0.0:7070, standalone: 127.0.0.1:7070].
    #[arg(long, env = "UPID_LISTEN")]
    pub listen: Option<String>,
    /// Address of the HTTP `/metrics` endpoint, or `off` [serve: 0.0.0.0:7071, standalone: 127.0.0.1:7071].
    #[arg(long, env = "UPID_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// DuckDB store file [serve: /var/lib/upid/upid.duckdb, standalone: $XDG_DATA_HOME/upid/upid.duckdb].
    #[arg(long, env = "UPID_STORE")]
    pub store: Option<PathBuf>,
    /// PEM server certificate chain; enables TLS (with --tls-key).
    #[arg(long, env = "UPID_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "UPID_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    #[arg(long, env = "UPID_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Bearer tokens, one per line: `NAME TOKEN [agent|query|admin]`; when
    /// set, every call needs a token [default: no authentication].
    #[arg(long, env = "UPID_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Batches per second each agent may send, replays included [default: 50].
    #[arg(long, env = "UPID_AGENT_RATE_LIMIT")]
    pub agent_rate_limit: Option<u32>,
    /// Batches an agent may send at once above the rate [default: 500].
    #[arg(long, env = "UPID_AGENT_RATE_BURST")]
    pub agent_rate_burst: Option<u32>,
    /// Largest gRPC message accepted, in bytes [default: 16777216].
    #[arg(long, env = "UPID_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most bytes the store may use (DuckDB's blocks in use plus WAL); over
    /// it the oldest days are dropped; 0: no budget [default: 10737418240].
    #[arg(long, env = "UPID_DISK_BUDGET_BYTES")]
    pub disk_budget_bytes: Option<u64>,
}

/// Options of `standalone` beyond the server's: what to sample on this host.
#[derive(Debug, Clone, Default, Args)]
pub struct SamplingArgs {
    /// Time between samples (1s at the least) [default: 10s].
    #[arg(long, env = "UPID_INTERVAL")]
    pub interval: Option<String>,
    /// Where the host's filesystem is mounted when running in a container [default: /].
    #[arg(long, env = "UPID_HOST_ROOT")]
    pub host_root: Option<PathBuf>,
    /// Node name to report [default: the host name].
    #[arg(long, env = "UPID_NODE_NAME")]
    pub node_name: Option<String>,
    /// Also sample cgroups whose path matches this glob; repeatable.
    #[arg(long = "cgroup-glob", env = "UPID_CGROUP_GLOB", value_delimiter = ',')]
    pub cgroup_globs: Vec<String>,
    /// Never reset the kernel's memory high-water marks.
    #[arg(long, env = "UPID_NO_RESET_PEAKS")]
    pub no_reset_peaks: bool,
    /// Do not ask the Docker Engine who the containers are.
    #[arg(long, env = "UPID_NO_DOCKER")]
    pub no_docker: bool,
    /// Docker Engine to ask [default: $DOCKER_HOST, else /var/run/docker.sock].
    #[arg(long, env = "UPID_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Do not follow the kernel log (/dev/kmsg) for OOM kills: they come
    /// from the Docker Engine alone.
    #[arg(long, env = "UPID_NO_KERNEL_LOG")]
    pub no_kernel_log: bool,
}

/// The YAML config file: the same settings as the flags, in snake_case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--listen`.
    pub listen: Option<String>,
    /// See `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// See `--store`.
    pub store: Option<PathBuf>,
    /// See `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// See `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// See `--client-ca`.
    pub client_ca: Option<PathBuf>,
    /// See `--tokens-file`.
    pub tokens_file: Option<PathBuf>,
    /// See `--agent-rate-limit`.
    pub agent_rate_limit: Option<u32>,
    /// See `--agent-rate-burst`.
    pub agent_rate_burst: Option<u32>,
    /// See `--max-message-bytes`.
    pub max_message_bytes: Option<usize>,
    /// See `--interval` (standalone).
    pub interval: Option<String>,
    /// See `--host-root` (standalone).
    pub host_root: Option<PathBuf>,
    /// See `--node-name` (standalone).
    pub node_name: Option<String>,
    /// See `--cgroup-glob` (standalone).
    #[serde(default)]
    pub cgroup_globs: Vec<String>,
    /// See `--no-reset-peaks` (standalone).
    pub no_reset_peaks: Option<bool>,
    /// See `--no-docker` (standalone).
    pub no_docker: Option<bool>,
    /// See `--docker-host` (standalone).
    pub docker_host: Option<String>,
    /// See `--no-kernel-log` (standalone).
    pub no_kernel_log: Option<bool>,
    /// Rightsizing, idle and cost settings (docs/analysis.md); file only.
    #[serde(default)]
    pub analysis: AnalysisSettings,
    /// Image update checks: policy default and registry access
    /// (docs/updates.md); file only.
    #[serde(default)]
    pub updates: UpdateSettings,
    /// Prices per vCPU-hour and GiB-hour, per node (docs/analysis.md);
    /// file only.
    #[serde(default)]
    pub pricing: Pricing,
    /// Retention and the disk budget (docs/collector.md); the budget also
    /// as `--disk-budget-bytes`.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Periodic Parquet reports (docs/export.md); file only.
    #[serde(default)]
    pub reports: ReportSettings,
}

impl FileConfig {
    /// Reads and parses a YAML config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses YAML text; an empty document is an empty config.
    pub fn parse(text: &str) -> Result<FileConfig, serde_norway::Error> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_norway::from_str(text)
    }
}

/// Which program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Agents stream to it over the network.
    Serve,
    /// It also samples this host in-process.
    Standalone,
}

/// Certificate files for the gRPC listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle that must have signed client certificates.
    pub client_ca: Option<PathBuf>,
}

/// What `standalone` samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingSettings {
    /// Time between samples.
    pub interval: Duration,
    /// Host filesystem root.
    pub host_root: PathBuf,
    /// Node name override.
    pub node_name: Option<String>,
    /// Extra cgroup globs.
    pub cgroup_globs: Vec<String>,
    /// Whether to reset kernel peaks after reading them.
    pub reset_peaks: bool,
    /// Whether to ask the Docker Engine for inventory.
    pub docker: bool,
    /// Docker Engine to ask; `None`: `$DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
    /// Whether to follow the kernel log for OOM kills.
    pub kernel_log: bool,
}

/// The checked, merged configuration a collector runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Serve or standalone.
    pub mode: Mode,
    /// gRPC address.
    pub listen: SocketAddr,
    /// `/metrics` address; `None` when off.
    pub metrics_listen: Option<SocketAddr>,
    /// DuckDB file.
    pub store: PathBuf,
    /// TLS, when configured.
    pub tls: Option<TlsFiles>,
    /// Tokens file, when authentication is on.
    pub tokens_file: Option<PathBuf>,
    /// Batches per second per agent.
    pub agent_rate_limit_per_s: NonZeroU32,
    /// Burst above the rate.
    pub agent_rate_burst: NonZeroU32,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// Sampling, for standalone.
    pub sampling: Option<SamplingSettings>,
    /// Analysis settings.
    pub analysis: AnalysisSettings,
    /// Prices.
    pub pricing: Pricing,
    /// Image update checks.
    pub updates: UpdateSettings,
    /// Retention and the disk budget.
    pub retention: RetentionSettings,
    /// Periodic Parquet reports.
    pub reports: ReportSettings,
}

fn address(setting: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Address {
        setting,
        value: value.to_owned(),
    })
}

fn non_zero(setting: &'static str, value: u32) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(value).ok_or(ConfigError::Range {
        setting,
        value: value.to_string(),
        allowed: "at least 1",
    })
}

/// Where standalone keeps its store when none is configured:
/// `$XDG_DATA_HOME/upid/upid.duckdb`, else `~/.local/share/upid/upid.duckdb`.
pub fn default_standalone_store(
    xdg_data_home: Option<&str>,
    home: Option<&str>,
) -> Result<PathBuf, ConfigError> {
    match (xdg_data_home, home) {
        (Some(xdg), _) if !xdg.is_empty() => Ok(Path::new(xdg).join("upid/upid.duckdb")),
        (_, Some(home)) if !home.is_empty() => {
            Ok(Path::new(home).join(".local/share/upid/upid.duckdb"))
        }
        _ => Err(ConfigError::NoDataDir),
    }
}

impl Settings {
    /// Merges flags/environment (`args`, `sampling`) over `file` over the
    /// defaults of `mode`, and checks the result.
    pub fn resolve(
        mode: Mode,
        args: &ServerArgs,
        sampling: Option<&SamplingArgs>,
        file: &FileConfig,
    ) -> Result<Settings, ConfigError> {
        let standalone = mode == Mode::Standalone;
        let listen = args
            .listen
            .clone()
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| {
                if standalone {
                    STANDALONE_LISTEN
                } else {
                    SERVE_LISTEN
                }
                .to_owned()
            });
        let metrics = args
            .metrics_listen
            .clone()
            .or_else(|| file.metrics_listen.clone())
            .unwrap_or_else(|| {
                if standalone {
                    STANDALONE_METRICS_LISTEN
                } else {
                    SERVE_METRICS_LISTEN
                }
                .to_owned()
            });
        let metrics_listen = if metrics.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(address("metrics_listen", &metrics)?)
        };
        let store = match args.store.clone().or_else(|| file.store.clone()) {
            Some(path) => path,
            None if standalone => default_standalone_store(
                std::env::var("XDG_DATA_HOME").ok().as_deref(),
                std::env::var("HOME").ok().as_deref(),
            )?,
            None => PathBuf::from(SERVE_STORE),
        };
        let cert = args.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key = args.tls_key.clone().or_else(|| file.tls_key.clone());
        let client_ca = args.client_ca.clone().or_else(|| file.client_ca.clone());
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (Some(_), None) => return Err(ConfigError::HalfTls { given: "tls_cert" }),
            (None, Some(_)) => return Err(ConfigError::HalfTls { given: "tls_key" }),
            (None, None) if client_ca.is_some() => return Err(ConfigError::ClientCaWithoutTls),
            (None, None) => None,
        };
        let rate = args
            .agent_rate_limit
            .or(file.agent_rate_limit)
            .unwrap_or(AGENT_RATE_LIMIT_PER_S);
        let burst = args
            .agent_rate_burst
            .or(file.agent_rate_burst)
            .unwrap_or(AGENT_RATE_BURST);
        let max_message_bytes = args
            .max_message_bytes
            .or(file.max_message_bytes)
            .unwrap_or(MAX_MESSAGE_BYTES);
        if max_message_bytes < 64 * 1024 {
            return Err(ConfigError::Range {
                setting: "max_message_bytes",
                value: max_message_bytes.to_string(),
                allowed: "at least 65536",
            });
        }
        let sampling = if standalone {
            Some(resolve_sampling(
                sampling.cloned().unwrap_or_default(),
                file,
            )?)
        } else {
            None
        };
        file.analysis.validate().map_err(ConfigError::Analysis)?;
        file.pricing.validate().map_err(ConfigError::Analysis)?;
        file.updates.validate().map_err(ConfigError::Analysis)?;
        let mut retention = file.retention.clone();
        if let Some(bytes) = args.disk_budget_bytes {
            retention.disk_budget_bytes = bytes;
        }
        retention.validate().map_err(ConfigError::Analysis)?;
        file.reports.validate().map_err(ConfigError::Analysis)?;
        Ok(Settings {
            mode,
            listen: address("listen", &listen)?,
            metrics_listen,
            store,
            tls,
            tokens_file: args
                .tokens_file
                .clone()
                .or_else(|| file.tokens_file.clone()),
            agent_rate_limit_per_s: non_zero("agent_rate_limit", rate)?,
            agent_rate_burst: non_zero("agent_rate_burst", burst)?,
            max_message_bytes,
            sampling,
            analysis: file.analysis.clone(),
            pricing: file.pricing.clone(),
            updates: file.updates.clone(),
            retention,
            reports: file.reports.clone(),
        })
    }
}

fn resolve_sampling(
    args: SamplingArgs,
    file: &FileConfig,
) -> Result<SamplingSettings, ConfigError> {
    let interval = match args.interval.or_else(|| file.interval.clone()) {
        Some(text) => humantime::parse_duration(&text).map_err(|source| ConfigError::Duration {
            setting: "interval",
            value: text.clone(),
            source,
        })?,
        None => STANDALONE_INTERVAL,
    };
    if interval < MIN_INTERVAL {
        return Err(ConfigError::Range {
            setting: "interval",
            value: humantime::format_duration(interval).to_string(),
            allowed: "1s or more",
        });
    }
    let cgroup_globs = if args.cgroup_globs.is_empty() {
        file.cgroup_globs.clone()
    } else {
        args.cgroup_globs
    };
    Ok(SamplingSettings {
        interval,
        host_root: args
            .host_root
            .or_else(|| file.host_root.clone())
            .unwrap_or_else(|| PathBuf::from("/")),
        node_name: args.node_name.or_else(|| file.node_name.clone()),
        cgroup_globs,
        reset_peaks: !(args.no_reset_peaks || file.no_reset_peaks.unwrap_or(false)),
        docker: !(args.no_docker || file.no_docker.unwrap_or(false)),
        docker_host: args.docker_host.or_else(|| file.docker_host.clone()),
        kernel_log: !(args.no_kernel_log || file.no_kernel_log.unwrap_or(false)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(mode: Mode, args: ServerArgs, file: &str) -> Result<Settings, ConfigError> {
        let file = FileConfig::parse(file).map_err(|source| ConfigError::ParseFile {
            path: PathBuf::from("test.yaml"),
            source,
        })?;
        Settings::resolve(mode, &args, Some(&SamplingArgs::default()), &file)
    }

    #[test]
    fn serve_defaults_are_the_documented_ones() -> Result<(), ConfigError> {
        let s = resolve(Mode::Serve, ServerArgs::default(), "")?;
        assert_eq!(s.listen.to_string(), SERVE_LISTEN);
        assert_eq!(
            s.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some(SERVE_METRICS_LISTEN)
        );
        assert_eq!(s.store, PathBuf::from(SERVE_STORE));
        assert_eq!(s.agent_rate_limit_per_s.get(), AGENT_RATE_LIMIT_PER_S);
        assert_eq!(s.max_message_bytes, MAX_MESSAGE_BYTES);
        assert!(s.tls.is_none() && s.tokens_file.is_none() && s.sampling.is_none());
        Ok(())
    }

    #[test]
    fn standalone_listens_on_loopback_and_samples_every_10s() -> Result<(), ConfigError> {
        let s = resolve(Mode::Standalone, ServerArgs::default(), "")?;
        assert!(s.listen.ip().is_loopback());
        assert!(s.metrics_listen.is_some_and(|a| a.ip().is_loopback()));
        assert_eq!(
            s.sampling.as_ref().map(|x| x.interval),
            Some(STANDALONE_INTERVAL)
        );
        assert_eq!(s.sampling.map(|x| x.kernel_log), Some(true));
        let s = resolve(
            Mode::Standalone,
            ServerArgs::default(),
            "no_kernel_log: true\n",
        )?;
        assert_eq!(s.sampling.map(|x| x.kernel_log), Some(false));
        Ok(())
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() -> Result<(), ConfigError> {
        let file = "listen: 127.0.0.1:9000\nagent_rate_limit: 7\nmetrics_listen: off\n";
        let args = ServerArgs {
            listen: Some("127.0.0.1:9100".into()),
            ..ServerArgs::default()
        };
        let s = resolve(Mode::Serve, args, file)?;
        assert_eq!(s.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(s.agent_rate_limit_per_s.get(), 7);
        assert_eq!(s.metrics_listen, None);
        Ok(())
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = resolve(Mode::Serve, ServerArgs::default(), "listn: 1.2.3.4:5\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("listn"), "{e}");
        let e = resolve(Mode::Serve, ServerArgs::default(), "listen: localhost\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("listen") && e.contains("IP:PORT"), "{e}");
        let e = resolve(Mode::Serve, ServerArgs::default(), "agent_rate_limit: 0\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("agent_rate_limit"), "{e}");
        let e = resolve(Mode::Standalone, ServerArgs::default(), "interval: 100ms\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("interval"), "{e}");
    }

    #[test]
    fn the_disk_budget_flag_beats_the_retention_section() -> Result<(), ConfigError> {
        let file = "retention:\n  raw_days: 3\n  disk_budget_bytes: 0\n";
        let s = resolve(Mode::Serve, ServerArgs::default(), file)?;
        assert_eq!(
            (s.retention.raw_days, s.retention.disk_budget_bytes),
            (3, 0)
        );
        let args = ServerArgs {
            disk_budget_bytes: Some(1 << 30),
            ..ServerArgs::default()
        };
        let s = resolve(Mode::Serve, args, file)?;
        assert_eq!(s.retention.disk_budget_bytes, 1 << 30);
        let args = ServerArgs {
            disk_budget_bytes: Some(1000),
            ..ServerArgs::default()
        };
        let e = resolve(Mode::Serve, args, file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("disk_budget_bytes"), "{e}");
        let e = resolve(
            Mode::Serve,
            ServerArgs::default(),
            "retention:\n  usage_days: 0\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("retention.usage_days"), "{e}");
        Ok(())
    }

    #[test]
    fn tls_halves_and_client_ca_without_tls_are_refused() {
        let half = ServerArgs {
            tls_cert: Some("c.pem".into()),
            ..ServerArgs::default()
        };
        assert!(matches!(
            resolve(Mode::Serve, half, ""),
            Err(ConfigError::HalfTls { .. })
        ));
        assert!(matches!(
            resolve(Mode::Serve, ServerArgs::default(), "client_ca: ca.pem\n"),
            Err(ConfigError::ClientCaWithoutTls)
        ));
    }

    #[test]
    fn standalone_store_follows_xdg_then_home() -> Result<(), ConfigError> {
        assert_eq!(
            default_standalone_store(Some("/x"), Some("/h"))?,
            PathBuf::from("/x/upid/upid.duckdb")
        );
        assert_eq!(
            default_standalone_store(None, Some("/h"))?,
            PathBuf::from("/h/.local/share/upid/upid.duckdb")
        );
        assert!(default_standalone_store(None, None).is_err());
        Ok(())
    }
}
