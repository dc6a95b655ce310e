//! Running `upid-collector` as a real process: start it on loopback (port 0
//! unless told otherwise), read its ready line, scrape `/metrics`, stop it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::metrics::Metrics;
use super::process::{Proc, Stream};

/// How long a collector may take to print its ready line (opening DuckDB).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `upid-collector` command line being put together.
#[derive(Debug, Clone)]
pub struct CollectorCmd {
    mode: String,
    store: PathBuf,
    listen: String,
    metrics_listen: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// `upid-collector serve` storing into `store`, on 127.0.0.1 with ports
/// chosen by the kernel.
pub fn serve(store: &Path) -> CollectorCmd {
    CollectorCmd::new("serve", store)
}

/// `upid-collector standalone` storing into `store`, on 127.0.0.1 with
/// ports chosen by the kernel.
pub fn standalone(store: &Path) -> CollectorCmd {
    CollectorCmd::new("standalone", store)
}

impl CollectorCmd {
    fn new(mode: &str, store: &Path) -> CollectorCmd {
        CollectorCmd {
            mode: mode.to_string(),
            store: store.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            metrics_listen: "127.0.0.1:0".into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// gRPC listen address (`HOST:PORT`), e.g. to come back on the same port.
    pub fn listen(mut self, addr: impl ToString) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Extra arguments after the mode.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// An environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The full command.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(crate::bin("upid-collector"));
        cmd.arg(&self.mode)
            .arg("--store")
            .arg(&self.store)
            .args(["--listen", &self.listen])
            .args(["--metrics-listen", &self.metrics_listen])
            .args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the collector and waits for its ready line.
    pub fn start(&self) -> Collector {
        let mut proc = Proc::spawn(
            &format!("upid-collector {}", self.mode),
            &mut self.command(),
        );
        let ready = proc.wait_for_line(Stream::Stdout, "the ready line", READY_TIMEOUT, |l| {
            Ready::parse(l)
        });
        Collector {
            proc,
            grpc: ready.grpc,
            metrics: ready.metrics,
            store: self.store.clone(),
        }
    }
}

/// What the collector's ready line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// gRPC address.
    pub grpc: SocketAddr,
    /// `/metrics` address; `None` when off.
    pub metrics: Option<SocketAddr>,
    /// The store file.
    pub store: String,
}

impl Ready {
    /// Parses `upid-collector: ready grpc=HOST:PORT metrics=HOST:PORT|off store=PATH`.
    pub fn parse(line: &str) -> Option<Ready> {
        let rest = line.strip_prefix("upid-collector: ready ")?;
        let mut grpc = None;
        let mut metrics = None;
        let mut store = None;
        for (i, word) in rest.split(' ').enumerate() {
            if let Some(v) = word.strip_prefix("grpc=") {
                grpc = v.parse().ok();
            } else if let Some(v) = word.strip_prefix("metrics=") {
                metrics = Some(if v == "off" { None } else { v.parse().ok() });
            } else if word.starts_with("store=") {
                // The path may contain spaces: it is the rest of the line.
                let at: usize = rest.split(' ').take(i).map(|w| w.len() + 1).sum();
                store = Some(rest[at + "store=".len()..].to_string());
                break;
            }
        }
        Some(Ready {
            grpc: grpc?,
            metrics: metrics?,
            store: store?,
        })
    }
}

/// A running collector.
pub struct Collector {
    /// The process.
    pub proc: Proc,
    /// Its gRPC address.
    pub grpc: SocketAddr,
    /// Its `/metrics` address, when on.
    pub metrics: Option<SocketAddr>,
    /// The store file.
    pub store: PathBuf,
}

impl Collector {
    /// `http://` URL of the gRPC port, for agents and clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `https://` URL of the gRPC port (TLS collectors).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    /// Scrapes `/metrics`.
    pub fn scrape(&self) -> Metrics {
        let addr = self.metrics.expect("this collector's /metrics is off");
        let body =
            http_get(addr, "/metrics").unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"));
        Metrics::parse(&body)
    }

    /// Polls `/metrics` until `f` is satisfied; panics with the last scrape
    /// after `timeout`.
    pub fn wait_for_metrics(&self, what: &str, timeout: Duration, f: impl Fn(&Metrics) -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let m = self.scrape();
            if f(&m) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last /metrics:\n{}",
                m.text
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub fn stop(mut self) -> ExitStatus {
        let status = self.proc.terminate(Duration::from_secs(60));
        assert!(
            status.success(),
            "the collector did not exit cleanly on SIGTERM ({status}); its output:\n{}",
            self.proc.output()
        );
        status
    }

    /// `kill -9`: a crash.
    pub fn crash(mut self) {
        self.proc.kill9();
    }
}

/// A plain HTTP/1.1 GET on loopback; returns the body of a 200.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header end in {response:?}")))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("answer: {head}")));
    }
    if head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"))
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ready_line() {
        let r = Ready::parse(
            "upid-collector: ready grpc=127.0.0.1:4242 metrics=127.0.0.1:4243 store=/tmp/a b/upid.duckdb",
        )
        .expect("parsed");
        assert_eq!(r.grpc, "127.0.0.1:4242".parse().expect("addr"));
        assert_eq!(r.metrics, Some("127.0.0.1:4243".parse().expect("addr")));
        assert_eq!(r.store, "/tmp/a b/upid.duckdb");
        let off = Ready::parse("upid-collector: ready grpc=[::1]:7070 metrics=off store=x")
            .expect("parsed");
        assert_eq!(off.metrics, None);
        assert_eq!(Ready::parse("upid-collector: starting"), None);
    }

    #[test]
    fn decodes_a_chunked_body() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
