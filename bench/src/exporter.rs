//! The comparison peer: Debian's `prometheus-node-exporter` with its
//! default collectors, on a free loopback port, scraped with plain HTTP/1.1
//! over `std::net::TcpStream` (127.0.0.1 only).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cgroups::BenchCgroups;
use crate::child::ChildGuard;
use crate::interrupt::Interrupt;
use crate::procstat::{self, ProcessMemory};
use crate::stats::Summary;

/// How long the exporter may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Socket timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What scraping the exporter cost.
#[derive(Debug, Clone)]
pub struct ExporterReport {
    /// Scrapes measured (after one unmeasured warm-up scrape).
    pub scrapes: usize,
    /// Exporter CPU per scrape (ns), from its threads' `schedstat`
    /// (or `stat` when threads exited), measured around each scrape.
    pub cpu_per_scrape_ns: Summary,
    /// Wall time per scrape as the client saw it (ns).
    pub wall_per_scrape_ns: Summary,
    /// Body bytes of the last scrape (uncompressed text format).
    pub scrape_bytes: usize,
    /// Memory after the scrapes (`VmRSS`, and `VmHWM` for the peak).
    pub memory: ProcessMemory,
}

/// A running exporter, stopped on drop.
#[derive(Debug)]
pub struct Exporter {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Exporter {
    /// Starts `binary --web.listen-address=127.0.0.1:<free port>` and waits
    /// until it answers.
    pub fn start(
        binary: &Path,
        cgroups: &BenchCgroups,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Self> {
        let addr = free_loopback_port()?;
        let mut command = Command::new(binary);
        command.arg(format!("--web.listen-address={addr}"));
        let mut child = ChildGuard::spawn("prometheus-node-exporter", command).with_context(|| {
            format!(
                "is it installed? (`apt-get install prometheus-node-exporter`, or pass --exporter-bin); tried {}",
                binary.display()
            )
        })?;
        cgroups.adopt_runner(child.pid())?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            interrupt.check()?;
            child.check_alive()?;
            match http_get(addr, "/") {
                Ok((200, _)) => break,
                Ok((status, _)) if Instant::now() > deadline => {
                    bail!("prometheus-node-exporter on {addr} answers `GET /` with status {status}")
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!(
                        "prometheus-node-exporter did not answer on {addr} within {START_TIMEOUT:?}; its stderr ends with:\n{}",
                        child.log_tail()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Ok(Exporter { child, addr })
    }

    /// The exporter's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Scrapes `/metrics` once unmeasured, then `scrapes` times measuring
    /// the exporter's CPU around each scrape.
    pub fn measure(
        &mut self,
        scrapes: usize,
        interrupt: &Interrupt,
    ) -> anyhow::Result<ExporterReport> {
        if scrapes == 0 {
            bail!("--scrapes must be at least 1");
        }
        let pid = self.pid();
        self.scrape().context("warm-up scrape")?;
        let mut cpu = Vec::with_capacity(scrapes);
        let mut wall = Vec::with_capacity(scrapes);
        let mut scrape_bytes = 0;
        for i in 0..scrapes {
            interrupt.check()?;
            self.child.check_alive()?;
            let before = procstat::process_cpu(pid)?;
            let started = Instant::now();
            let body = self.scrape().with_context(|| format!("scrape {i}"))?;
            let wall_ns = started.elapsed().as_nanos();
            // The response is complete once the connection closed, but the
            // exporter's handler may still be finishing: let it settle.
            std::thread::sleep(Duration::from_millis(20));
            let after = procstat::process_cpu(pid)?;
            cpu.push(after.since(&before) as f64);
            wall.push(wall_ns as f64);
            scrape_bytes = body.len();
        }
        let memory = procstat::process_memory(pid)?;
        Ok(ExporterReport {
            scrapes,
            cpu_per_scrape_ns: Summary::of(&cpu),
            wall_per_scrape_ns: Summary::of(&wall),
            scrape_bytes,
            memory,
        })
    }

    /// One `GET /metrics`; the body.
    fn scrape(&self) -> anyhow::Result<Vec<u8>> {
        match http_get(self.addr, "/metrics")? {
            (200, body) => Ok(body),
            (status, _) => bail!("GET http://{}/metrics returned status {status}", self.addr),
        }
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    listener.local_addr().context("reading the free port")
}

/// `GET path` over HTTP/1.1 on a fresh connection to `addr` (loopback);
/// returns the status and the (de-chunked) body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    if !addr.ip().is_loopback() {
        bail!("refusing to connect to {addr}: the benchmark talks to 127.0.0.1 only");
    }
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .context("setting the read timeout")?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .context("setting the write timeout")?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: upid-bench\r\nAccept: text/plain\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("sending GET {path} to {addr}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the response to GET {path} from {addr}"))?;
    parse_response(&response)
        .with_context(|| format!("parsing the response to GET {path} from {addr}"))
}

/// Splits a complete HTTP/1.1 response into status and body, decoding
/// `Transfer-Encoding: chunked`.
pub fn parse_response(response: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let header_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&response[..header_end]).context("headers are not UTF-8")?;
    let body = &response[header_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// Decodes a chunked body.
fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text =
            std::str::from_utf8(&body[..line_end]).context("chunk size is not UTF-8")?;
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!(
                "truncated chunk: {size} bytes announced, {} left",
                body.len()
            );
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() -> anyhow::Result<()> {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain)?, (200, b"hello".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked)?, (200, b"hello, world".to_vec()));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhi")
                .is_err()
        );
        assert_eq!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n")?.0, 404);
        Ok(())
    }

    #[test]
    fn gets_from_a_loopback_server() -> anyhow::Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || -> std::io::Result<String> {
            let (mut conn, _) = listener.accept()?;
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nup \r\n1\r\n1\r\n0\r\n\r\n")?;
            Ok(String::from_utf8_lossy(&request).into_owned())
        });
        assert_eq!(http_get(addr, "/metrics")?, (200, b"up 1".to_vec()));
        let request = server
            .join()
            .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
        assert!(request.starts_with("GET /metrics HTTP/1.1\r\n"));
        Ok(())
    }

    #[test]
    fn refuses_non_loopback() {
        let addr: SocketAddr = ([192, 0, 2, 1], 80).into();
        assert!(http_get(addr, "/").is_err());
    }
}
