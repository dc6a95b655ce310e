//! `upid doctor`: walks the way to the collector one step at a time
//! (address, DNS, TCP, TLS, gRPC health, auth, versions, clocks, agents)
//! and says for each failure what to do. A failed step skips the steps
//! that need it.
//!
//! The judging of what the collector reported ([`version_check`],
//! [`clock_check`], [`node_check`], [`agents_check`]) is pure and tested
//! without a server.

pub mod report;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::cli::args::ConnectArgs;
use crate::cli::connect::{Connection, Settings, Target, mismatch};
use crate::cli::error::CliError;
use crate::cli::probe::{self, Speaks};
use crate::cli::units::{age, skew};
use crate::cli::view::NodeStatus;
use crate::wire::v1;

pub use report::{Check, MAX_CLOCK_SKEW_NS, Report, Status};

/// This client's version.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Nanoseconds since the Unix epoch on this machine's clock.
pub fn now_unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `MAJOR.MINOR.PATCH` of a version string (`v` prefix, pre-release and
/// build suffixes and anything after a space ignored).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.split_whitespace().next()?.trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Whether this client and the collector agree on the API: the same major
/// version, and for 0.x the same minor version too (semver).
pub fn version_check(client: &str, collector: &str) -> Check {
    let both = format!("upid {client}, collector {collector}");
    match (parse_version(client), parse_version(collector)) {
        (_, None) => Check::warn(
            "version",
            format!("upid {client}, collector version unknown ({:?})", collector),
            "upgrade the collector: it does not report a version",
        ),
        (None, _) => Check::warn("version", both, "this upid build has no version"),
        (Some(c), Some(s)) => {
            let compatible = c.0 == s.0 && (c.0 > 0 || c.1 == s.1);
            if compatible {
                Check::pass("version", both)
            } else {
                Check::fail(
                    "version",
                    format!("{both}: these versions do not share an API"),
                    format!(
                        "install upid {}.{}.x to match the collector, or upgrade the collector to {client}",
                        s.0, s.1
                    ),
                )
            }
        }
    }
}

/// The collector's clock against this machine's: `skew_ns` is collector
/// minus local; over [`MAX_CLOCK_SKEW_NS`] ages and rates get wrong.
pub fn clock_check(skew_ns: i64) -> Check {
    let ahead = if skew_ns >= 0 { "ahead of" } else { "behind" };
    let detail = format!(
        "the collector's clock is {} {ahead} this machine's",
        skew(skew_ns.abs()).trim_start_matches('+')
    );
    if skew_ns.abs() > MAX_CLOCK_SKEW_NS {
        Check::warn(
            "clock",
            detail,
            "synchronise the clocks of this machine and the collector's host with NTP (e.g. `timedatectl set-ntp true`, or chrony)",
        )
    } else {
        Check::pass("clock", detail)
    }
}

/// One node as the collector sees it: the agent's clock skew, spool
/// losses, and whether it still reports.
pub fn node_check(n: &v1::Node, now_unix_ns: i64, server: &str) -> Check {
    let name = format!("node {}", n.node_name);
    let version = if n.agent_version.is_empty() {
        String::new()
    } else {
        format!(" {}", n.agent_version)
    };
    let status = NodeStatus::of(n.connected, n.last_seen_unix_ns, now_unix_ns);
    let state = match status {
        NodeStatus::Connected => "connected",
        NodeStatus::Reporting => "reporting",
        NodeStatus::Disconnected => "not connected",
    };
    let detail = format!(
        "agent {}{version} {state}, last seen {} ago, clock skew {}, spool drops {}",
        n.agent_id,
        age(now_unix_ns, n.last_seen_unix_ns),
        skew(n.clock_skew_ns),
        n.spool_dropped_batches_total
    );
    let quiet = status == NodeStatus::Disconnected;
    let mut fixes = Vec::new();
    if quiet {
        fixes.push(format!(
            "check that upid-agent runs on {} and reaches {server} (its log says why it cannot)",
            n.node_name
        ));
    }
    if n.clock_skew_ns.abs() > MAX_CLOCK_SKEW_NS {
        fixes.push(format!(
            "synchronise {}'s clock with NTP: sample times from it are off by {}",
            n.node_name,
            skew(n.clock_skew_ns)
        ));
    }
    if n.spool_dropped_batches_total > 0 {
        fixes.push(format!(
            "{} batches from {} were lost while the agent could not deliver: keep it connected, or give it a larger spool (upid-agent --spool-max-mib)",
            n.spool_dropped_batches_total, n.node_name
        ));
    }
    if fixes.is_empty() {
        Check::pass(name, detail)
    } else {
        Check::warn(name, detail, fixes.join("; "))
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Whether anything reports to the collector.
pub fn agents_check(agents_connected: u32, nodes: usize, server: &str) -> Check {
    let detail = format!(
        "{} connected, {} reporting",
        plural(agents_connected as usize, "agent", "agents"),
        plural(nodes, "node", "nodes")
    );
    if nodes == 0 && agents_connected == 0 {
        Check::warn(
            "agents",
            detail,
            format!(
                "run `upid-agent run --collector {server}` on each node (a standalone collector samples its own host: wait one --interval)"
            ),
        )
    } else {
        Check::pass("agents", detail)
    }
}

/// Appends "skipped" lines for the checks that could not run.
fn skip_rest(checks: &mut Vec<Check>, names: &[&str], why: &str) {
    checks.extend(names.iter().map(|n| Check::skip(*n, why)));
}

/// Runs every check against the collector named by `args`.
pub async fn run(args: &ConnectArgs, ssl_cert_file: Option<OsString>) -> Report {
    let mut checks = Vec::new();
    let mut report = Report {
        server: args.server.clone(),
        client_version: CLIENT_VERSION.into(),
        collector_version: None,
        clock_skew_ns: None,
        agents_connected: None,
        ok: false,
        checks: Vec::new(),
    };
    diagnose(args, ssl_cert_file, &mut checks, &mut report).await;
    report.ok = Report::passed(&checks);
    report.checks = checks;
    report
}

const AFTER_CONFIG: &[&str] = &[
    "dns", "tcp", "tls", "health", "auth", "version", "clock", "agents",
];

async fn diagnose(
    args: &ConnectArgs,
    ssl_cert_file: Option<OsString>,
    checks: &mut Vec<Check>,
    report: &mut Report,
) {
    // 1. The flags and the files they name.
    let target = match Target::parse(&args.server) {
        Ok(t) => t,
        Err(e) => {
            checks.push(Check::failed("config", "--server", &e));
            return skip_rest(checks, AFTER_CONFIG, "no usable --server");
        }
    };
    report.server = target.url.clone();
    let settings = match Settings::from_args(args, ssl_cert_file) {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::failed("config", "settings", &e));
            return skip_rest(checks, AFTER_CONFIG, "fix the settings first");
        }
    };
    checks.push(Check::pass("config", describe_settings(&settings)));

    // 2. DNS.
    let addrs = match tokio::time::timeout(settings.timeout, target.resolve()).await {
        Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
        outcome => {
            let cause = match outcome {
                Ok(Ok(_)) => "no addresses".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "no answer within {}",
                    humantime::format_duration(settings.timeout)
                ),
            };
            let e = CliError::Unresolvable {
                server: target.url.clone(),
                cause,
            };
            checks.push(Check::failed(
                "dns",
                &format!("cannot resolve {}", target.host),
                &e,
            ));
            return skip_rest(checks, &AFTER_CONFIG[1..], "the host does not resolve");
        }
    };
    let shown: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    checks.push(Check::pass(
        "dns",
        format!("{}:{} is {}", target.host, target.port, shown.join(", ")),
    ));

    // 3. TCP.
    let addr = match tcp_check(&addrs, settings.timeout).await {
        Ok(addr) => {
            checks.push(Check::pass("tcp", format!("connected to {addr}")));
            addr
        }
        Err(check) => {
            checks.push(check);
            return skip_rest(checks, &AFTER_CONFIG[2..], "nothing to talk to");
        }
    };

    // 4. What the port speaks, then the real handshake.
    let speaks = probe::sniff(addr, settings.timeout)
        .await
        .unwrap_or(Speaks::NoAnswer);
    if let Some(m) = mismatch(target.tls, &speaks) {
        checks.push(Check::fail(
            "tls",
            format!("{addr} speaks {}", speaks.describe()),
            m.explain(),
        ));
        return skip_rest(checks, &AFTER_CONFIG[3..], "fix the scheme first");
    }
    let conn = match settings.connect().await {
        Ok(conn) => {
            checks.push(if target.tls {
                Check::pass("tls", tls_summary(&settings))
            } else if speaks == Speaks::PlainHttp2 {
                Check::pass(
                    "tls",
                    "not used (http://); the collector speaks plain HTTP/2",
                )
            } else {
                Check::warn(
                    "tls",
                    format!(
                        "not used (http://), but the port answered {} to a plain HTTP/2 hello",
                        speaks.describe()
                    ),
                    "check that --server points at upid-collector's gRPC port (default 7070)",
                )
            });
            conn
        }
        Err(e) => {
            let what = if target.tls {
                "TLS handshake failed"
            } else {
                "HTTP/2 connection failed"
            };
            checks.push(Check::failed("tls", what, &e));
            return skip_rest(checks, &AFTER_CONFIG[3..], "no connection");
        }
    };

    // 5. gRPC health.
    if let Err(check) = health_check(&settings, &conn).await {
        checks.push(check);
        return skip_rest(checks, &AFTER_CONFIG[4..], "the collector is not serving");
    }
    checks.push(Check::pass("health", "grpc.health.v1 says SERVING"));

    // 6. Auth, and the facts GetServerInfo carries.
    let before = now_unix_ns();
    let info = conn
        .query()
        .get_server_info(v1::GetServerInfoRequest {})
        .await;
    let after = now_unix_ns();
    let info = match info {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let e = settings.status_error("GetServerInfo", &status, None);
            checks.push(Check::failed("auth", "GetServerInfo was refused", &e));
            return skip_rest(checks, &AFTER_CONFIG[5..], "the query API refused us");
        }
    };
    checks.push(Check::pass("auth", auth_summary(&settings, &info)));
    report.collector_version = Some(info.collector_version.clone());
    report.agents_connected = Some(info.agents_connected);

    // 7. Versions.
    checks.push(version_check(CLIENT_VERSION, &info.collector_version));

    // 8. Clocks: the collector's time against the middle of the call.
    if info.server_unix_ns > 0 {
        let skew_ns = info.server_unix_ns - (before + (after - before) / 2);
        report.clock_skew_ns = Some(skew_ns);
        checks.push(clock_check(skew_ns));
    } else {
        checks.push(Check::warn(
            "clock",
            "the collector did not report its time",
            "upgrade the collector",
        ));
    }

    // 9. Nodes, and 10. agents.
    match conn.query().list_nodes(v1::ListNodesRequest {}).await {
        Ok(r) => {
            let nodes = r.into_inner().nodes;
            let now = now_unix_ns();
            for n in &nodes {
                checks.push(node_check(n, now, &target.url));
            }
            checks.push(agents_check(
                info.agents_connected,
                nodes.len(),
                &target.url,
            ));
        }
        Err(status) => {
            let e = settings.status_error("ListNodes", &status, None);
            checks.push(Check::failed("agents", "ListNodes failed", &e));
        }
    }
}

fn describe_settings(s: &Settings) -> String {
    let mut parts = vec![format!("server {}", s.target.url)];
    match &s.trust {
        Some(trust) => parts.push(format!("TLS verified against {trust}")),
        None => parts.push("no TLS".into()),
    }
    if s.client_cert {
        parts.push("client certificate".into());
    }
    match &s.token_file {
        Some(f) => parts.push(format!("token from {}", f.display())),
        None => parts.push("no token".into()),
    }
    parts.push(format!("timeout {}", humantime::format_duration(s.timeout)));
    parts.join(", ")
}

fn tls_summary(s: &Settings) -> String {
    let trust = s
        .trust
        .as_ref()
        .map_or_else(String::new, |t| format!(" against {t}"));
    let cert = if s.client_cert {
        ", client certificate sent"
    } else {
        ""
    };
    format!("handshake done, certificate verified{trust}{cert}")
}

fn auth_summary(s: &Settings, info: &v1::ServerInfo) -> String {
    match (&s.token_file, info.auth_required) {
        (Some(f), true) => format!("token from {} accepted", f.display()),
        (Some(f), false) => format!(
            "no token needed (the collector has no --tokens-file; {} was sent anyway)",
            f.display()
        ),
        (None, _) => "no token needed".into(),
    }
}

async fn tcp_check(addrs: &[SocketAddr], timeout: Duration) -> Result<SocketAddr, Check> {
    let mut failures = Vec::new();
    let mut refused = false;
    for addr in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(*addr),
            Ok(Err(e)) => {
                refused |= e.kind() == std::io::ErrorKind::ConnectionRefused;
                failures.push(format!("{addr}: {e}"));
            }
            Err(_) => failures.push(format!(
                "{addr}: no answer within {}",
                humantime::format_duration(timeout)
            )),
        }
    }
    let detail = format!("cannot connect ({})", failures.join("; "));
    Err(if refused {
        Check::fail(
            "tcp",
            detail,
            "nothing listens there: start the collector (`upid-collector standalone`, or `serve` for a cluster), or point --server / UPID_SERVER at it (default port 7070)",
        )
    } else {
        Check::fail(
            "tcp",
            detail,
            "check that the host is up and that no firewall drops the port; raise --timeout on a slow link",
        )
    })
}

async fn health_check(settings: &Settings, conn: &Connection) -> Result<(), Check> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    match conn.health().check(request).await {
        Ok(r) => match r.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(Check::fail(
                "health",
                format!("grpc.health.v1 says {}", other.as_str_name()),
                "the collector is starting or stopping: wait a moment and retry, and read its log",
            )),
        },
        Err(status) if status.code() == tonic::Code::Unimplemented => Err(Check::fail(
            "health",
            "no grpc.health.v1 service on this port: it is not a upid collector",
            "point --server at upid-collector's gRPC port (default 7070; 7071 is /metrics)",
        )),
        Err(status) => {
            let e = settings
                .explain(settings.status_error("Health/Check", &status, None))
                .await;
            let what = if matches!(e, CliError::Tls { .. } | CliError::SchemeMismatch { .. }) {
                "TLS failed on the first call"
            } else {
                "the health check failed"
            };
            Err(Check::failed("health", what, &e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn versions_parse_loosely() {
        assert_eq!(parse_version("0.1.0"), Some((0, 1, 0)));
        assert_eq!(parse_version("v1.2.3-rc.1+abc"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.4 (git abc)"), Some((1, 4, 0)));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("dev"), None);
    }

    #[test]
    fn versions_are_compatible_within_a_semver_series() {
        assert_eq!(version_check("0.1.0", "0.1.7").status, Status::Pass);
        assert_eq!(version_check("1.2.0", "1.9.1").status, Status::Pass);
        let c = version_check("0.1.0", "0.2.0");
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("upid 0.1.0, collector 0.2.0"),
            "{}",
            c.detail
        );
        assert!(
            c.fix
                .as_deref()
                .unwrap_or("")
                .contains("install upid 0.2.x")
        );
        assert_eq!(version_check("1.0.0", "2.0.0").status, Status::Fail);
        assert_eq!(version_check("0.1.0", "").status, Status::Warn);
    }

    #[test]
    fn clock_skew_over_two_seconds_warns() {
        let c = clock_check(120_000_000);
        assert_eq!(c.status, Status::Pass);
        assert_eq!(
            c.detail,
            "the collector's clock is 0.120s ahead of this machine's"
        );
        let c = clock_check(-3_500_000_000);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("3.500s behind"), "{}", c.detail);
        assert!(c.fix.as_deref().unwrap_or("").contains("NTP"));
    }

    fn node() -> v1::Node {
        v1::Node {
            node_name: "node-a".into(),
            agent_id: "agent-a".into(),
            agent_version: "0.1.0".into(),
            last_seen_unix_ns: NOW - 1_000_000_000,
            connected: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_healthy_node_passes() {
        let c = node_check(&node(), NOW, "http://c:7070");
        assert_eq!(c.status, Status::Pass);
        assert_eq!(c.name, "node node-a");
        assert_eq!(
            c.detail,
            "agent agent-a 0.1.0 connected, last seen 1s ago, clock skew +0.000s, spool drops 0"
        );
    }

    #[test]
    fn node_skew_drops_and_silence_warn_with_a_fix() {
        let skewed = v1::Node {
            clock_skew_ns: 5_000_000_000,
            ..node()
        };
        let c = node_check(&skewed, NOW, "http://c:7070");
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.as_deref().unwrap_or("").contains("NTP"));
        let dropping = v1::Node {
            spool_dropped_batches_total: 7,
            ..node()
        };
        let c = node_check(&dropping, NOW, "http://c:7070");
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.as_deref().unwrap_or("").contains("7 batches"));
        let both = v1::Node {
            clock_skew_ns: -5_000_000_000,
            ..dropping
        };
        let fix = node_check(&both, NOW, "http://c:7070")
            .fix
            .unwrap_or_default();
        assert!(fix.contains("NTP") && fix.contains("7 batches"), "{fix}");
        let quiet = v1::Node {
            connected: false,
            last_seen_unix_ns: NOW - 600_000_000_000,
            ..node()
        };
        let c = node_check(&quiet, NOW, "http://c:7070");
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.fix
                .as_deref()
                .unwrap_or("")
                .contains("reaches http://c:7070")
        );
        // A standalone collector's own node has no stream but reports.
        let local = v1::Node {
            connected: false,
            ..node()
        };
        assert_eq!(
            node_check(&local, NOW, "http://c:7070").status,
            Status::Pass
        );
    }

    #[test]
    fn no_agents_at_all_warns() {
        assert_eq!(agents_check(0, 0, "http://c:7070").status, Status::Warn);
        assert_eq!(agents_check(0, 1, "http://c:7070").status, Status::Pass);
        assert_eq!(
            agents_check(3, 3, "http://c:7070").detail,
            "3 agents connected, 3 nodes reporting"
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_at_tcp_with_a_fix_and_skips_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let args = ConnectArgs {
            server: format!("http://127.0.0.1:{port}"),
            ca: None,
            client_cert: None,
            client_key: None,
            tls_domain: None,
            token_file: None,
            timeout: Duration::from_secs(5),
        };
        let r = run(&args, None).await;
        assert!(!r.ok);
        let statuses: Vec<(&str, Status)> = r
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("config", Status::Pass),
                ("dns", Status::Pass),
                ("tcp", Status::Fail),
                ("tls", Status::Skip),
                ("health", Status::Skip),
                ("auth", Status::Skip),
                ("version", Status::Skip),
                ("clock", Status::Skip),
                ("agents", Status::Skip),
            ]
        );
        assert!(
            r.checks[2]
                .fix
                .as_deref()
                .unwrap_or("")
                .contains("upid-collector standalone")
        );
    }
}
