//! The OCI registry client (`upid::registry`) against real registries:
//! Debian's `docker-registry` (distribution 2.8) on a free loopback port,
//! filled by the real Docker Engine with tiny images built here FROM
//! scratch, pushed under several tags, one of them re-pushed.
//!
//! Two servers here are written in this file, because no real one can run
//! on this machine, and each says so where it starts:
//! - a paging front: distribution 2.8 ignores `n=` on tag lists (no registry
//!   in Debian pages them), so the front serves the real registry's tags in
//!   pages with `Link` headers, relative and absolute, as distribution 3 and
//!   Docker Hub do;
//! - a scripted server for what no honest registry sends: junk JSON, huge
//!   bodies, 503s, 429s, silence, and a bearer-token challenge (no token
//!   service is packaged in Debian).
//!
//! Needs `docker-registry` and `htpasswd` (Debian packages docker-registry
//! and apache2-utils, installed by .ci/run) and a Docker Engine; skips
//! loudly without them.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use upid::registry::{
    CreatedTime, Platform, RegistryClient, RegistryConfig, RegistryError, RegistryStats,
};
use upid::updates::reference::ImageReference;

const REPO: &str = "upid-test/app";

// ---------------------------------------------------------------- helpers

fn missing_tools(need_docker: bool) -> Option<String> {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/docker-registry").exists() {
        missing.push("docker-registry (apt-get install docker-registry)".to_string());
    }
    if !Path::new("/usr/bin/htpasswd").exists() {
        missing.push("htpasswd (apt-get install apache2-utils)".to_string());
    }
    if need_docker {
        let ok = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            missing.push("a running Docker Engine".to_string());
        }
    }
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(", "))
    }
}

macro_rules! skip_without {
    ($need_docker:expr) => {
        if let Some(missing) = missing_tools($need_docker) {
            eprintln!(
                "\n!!! SKIPPED {}: missing {missing}. CI (.ci/run) installs these.\n",
                module_path!()
            );
            return;
        }
    };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status code of a plain `GET path` (std only, `Connection: close`).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A body of a plain `GET path`.
fn http_body(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Debian's docker-registry on a free loopback port, storage in a temp dir,
/// with `auth` (a top-level YAML section) and `http_extra` (more of the
/// `http:` section, e.g. `tls:`). Stopped on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start(auth: &str, http_extra: &str) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, port, dir };
        // Any HTTP answer means it is up (a TLS one answers plain HTTP with 400).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_status(port, "/v2/"), Some(200 | 400 | 401)) {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {port}: {}",
                std::fs::read_to_string(registry.dir.path().join("registry.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Images this test built, removed from the engine at the end.
#[derive(Default)]
struct Images(Mutex<Vec<String>>);

impl Drop for Images {
    fn drop(&mut self) {
        let names = self.0.lock().map(|n| n.clone()).unwrap_or_default();
        if !names.is_empty() {
            let _ = Command::new("docker")
                .args(["rmi", "-f"])
                .args(&names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// What `docker push` and `docker inspect` say about a pushed image.
#[derive(Debug, Clone)]
struct Pushed {
    digest: String,
    created_unix_s: i64,
}

/// Builds `FROM scratch` + a file holding `content`, tags it `name`.
fn build(images: &Images, name: &str, content: &str) {
    let ctx = tempfile::tempdir().expect("build context");
    std::fs::write(ctx.path().join("f"), content).expect("write file");
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n")
        .expect("write Dockerfile");
    run(Command::new("docker")
        .args(["build", "-q", "-t", name])
        .arg(ctx.path()));
    images.0.lock().expect("images").push(name.to_string());
}

/// Pushes `name` (logged in through `docker_config` when given): the digest
/// `docker push` printed, checked against `docker inspect`'s RepoDigests,
/// and the created time from `docker inspect`, converted by `date`.
fn push(name: &str, docker_config: Option<&Path>) -> Pushed {
    let mut cmd = Command::new("docker");
    if let Some(dir) = docker_config {
        cmd.arg("--config").arg(dir);
    }
    let out = run(cmd.args(["push", name]));
    let digest = out
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in docker push output: {out}"))
        .to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let repo_digests =
        run(Command::new("docker").args(["inspect", "-f", "{{join .RepoDigests \" \"}}", name]));
    let repo = name.rsplit_once(':').map_or(name, |(r, _)| r);
    assert!(
        repo_digests.contains(&format!("{repo}@{digest}")),
        "docker inspect RepoDigests {repo_digests} has {repo}@{digest}"
    );
    let created = run(Command::new("docker").args(["inspect", "-f", "{{.Created}}", name]));
    let seconds = run(Command::new("date").args(["-u", "-d", created.trim(), "+%s"]));
    Pushed {
        digest,
        created_unix_s: seconds.trim().parse().expect("date +%s"),
    }
}

fn image(host: &str, tag: &str) -> ImageReference {
    ImageReference::parse(&format!("{host}/{REPO}:{tag}")).expect("image reference")
}

/// A client whose credentials come from `docker_config` (a directory with
/// a `config.json`, so the machine's own is never read).
fn client(docker_config: &Path, adjust: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
    let mut config = RegistryConfig {
        docker_config: Some(docker_config.to_path_buf()),
        request_timeout: Duration::from_secs(20),
        retry_backoff: Duration::from_millis(50),
        ..RegistryConfig::default()
    };
    adjust(&mut config);
    RegistryClient::new(config).expect("registry client")
}

fn empty_docker_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), r#"{"auths":{}}"#).expect("config.json");
    dir
}

fn delta(before: RegistryStats, after: RegistryStats) -> RegistryStats {
    RegistryStats {
        requests_sent: after.requests_sent - before.requests_sent,
        cache_hits: after.cache_hits - before.cache_hits,
        cache_misses: after.cache_misses - before.cache_misses,
        rate_limit_waits: after.rate_limit_waits - before.rate_limit_waits,
        token_fetches: after.token_fetches - before.token_fetches,
        retries: after.retries - before.retries,
    }
}

// --------------------------------------------- a small scripted HTTP server

/// One request as the scripted servers see it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: HashMap<String, String>,
}

enum Reply {
    Raw(Vec<u8>),
    /// Never answer (for timeouts).
    Hang,
}

fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Reply::Raw(bytes)
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// Serves `handler` on a free loopback port, one request per connection,
/// recording every request. Runs until the runtime ends.
async fn scripted_server(handler: Handler) -> (u16, Arc<Mutex<Vec<Req>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let mut lines = text.split("\r\n");
                let mut first = lines.next().unwrap_or("").split_whitespace();
                let method = first.next().unwrap_or("").to_string();
                let target = first.next().unwrap_or("").to_string();
                let headers = lines
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let req = Req {
                    method,
                    target,
                    headers,
                };
                log.lock().expect("log").push(req.clone());
                match handler(&req) {
                    Reply::Raw(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    Reply::Hang => {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// The paging front (see the top of the file): `GET /v2/NAME/tags/list`
/// served from the real registry's full list, sorted, `n` per page from
/// `last`, with `Link` headers alternately relative and absolute.
async fn paging_front(registry_port: u16) -> (u16, Arc<Mutex<Vec<Req>>>) {
    let front_port = Arc::new(AtomicUsize::new(0));
    let page = Arc::new(AtomicUsize::new(0));
    let port_for_links = front_port.clone();
    let handler: Handler = Arc::new(move |req: &Req| {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let Some(name) = path
            .strip_prefix("/v2/")
            .and_then(|p| p.strip_suffix("/tags/list"))
        else {
            return reply("404 Not Found", &[], b"");
        };
        let params: HashMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let n: usize = params.get("n").and_then(|n| n.parse().ok()).unwrap_or(100);
        let full: serde_json::Value =
            serde_json::from_str(&http_body(registry_port, path)).unwrap_or_default();
        let mut tags: Vec<String> = full["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        let start = match params.get("last") {
            Some(last) => tags.iter().position(|t| t > last).unwrap_or(tags.len()),
            None => 0,
        };
        let chunk: Vec<String> = tags.iter().skip(start).take(n).cloned().collect();
        let body = serde_json::json!({"name": name, "tags": chunk}).to_string();
        let more = start + chunk.len() < tags.len();
        let last = chunk.last().cloned().unwrap_or_default();
        let link = if page.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"")
        } else {
            format!(
                "<http://127.0.0.1:{}/v2/{name}/tags/list?last={last}&n={n}>; rel=\"next\"",
                port_for_links.load(Ordering::SeqCst)
            )
        };
        let mut headers = vec![("Content-Type", "application/json")];
        if more {
            headers.push(("Link", link.as_str()));
        }
        reply("200 OK", &headers, body.as_bytes())
    });
    let (port, seen) = scripted_server(handler).await;
    front_port.store(usize::from(port), Ordering::SeqCst);
    (port, seen)
}

// ------------------------------------------------------------------ tests

const TAGS: [&str; 7] = [
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "1.0.1-alpine",
    "1.1.0-rc.1",
    "latest",
];

/// Tags, digests, created times, caching, pages, indexes, rate limits and
/// not-found answers against one real registry.
#[test]
fn real_registry_tags_digests_created_and_cache() {
    skip_without!(true);
    let registry = Registry::start("", "");
    let host = registry.host();
    let images = Images::default();
    let nonce = format!("{}-{}", std::process::id(), registry.port);
    let mut pushed: HashMap<&str, Pushed> = HashMap::new();
    for tag in TAGS {
        let name = format!("{host}/{REPO}:{tag}");
        build(&images, &name, &format!("{tag} {nonce}"));
        pushed.insert(tag, push(&name, None));
    }
    // Every tag is its own image: different digests.
    let distinct: std::collections::HashSet<&String> = pushed.values().map(|p| &p.digest).collect();
    assert_eq!(distinct.len(), TAGS.len());
    // The re-push of `latest` is built now, pushed later.
    let latest_name = format!("{host}/{REPO}:latest");
    build(&images, &latest_name, &format!("latest again {nonce}"));

    let config_dir = empty_docker_config();
    let rt = runtime();
    rt.block_on(async {
        // Tag listing. distribution 2.8 ignores n=3 and sends one page.
        let c = client(config_dir.path(), |c| c.tag_page_size = 3);
        let mut tags = c
            .list_tags(&image(&host, "1.0.0"))
            .await
            .expect("list tags");
        tags.sort();
        let mut want: Vec<String> = TAGS.iter().map(|t| t.to_string()).collect();
        want.sort();
        assert_eq!(tags, want);

        // Pages: through the paging front, 3 tags a page, Link headers
        // alternately relative and absolute: every tag, once, in 3 pages.
        let (front, seen) = paging_front(registry.port).await;
        let front_host = format!("127.0.0.1:{front}");
        let paged = c
            .list_tags(&image(&front_host, "x"))
            .await
            .expect("paged tags");
        assert_eq!(paged, want, "pages in order, nothing lost or doubled");
        let page_requests: Vec<String> = seen
            .lock()
            .expect("seen")
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(page_requests.len(), 3, "{page_requests:?}");
        assert_eq!(page_requests[0], format!("/v2/{REPO}/tags/list?n=3"));
        assert!(
            page_requests[1].contains("last=1.0.1-alpine"),
            "{page_requests:?}"
        );
        assert!(page_requests[2].contains("last=2.0.0"), "{page_requests:?}");

        // Digests: HEAD gives what docker push printed.
        for tag in TAGS {
            let digest = c.digest(&image(&host, tag)).await.expect("digest");
            assert_eq!(digest, pushed[tag].digest, "digest of {tag}");
        }
        // Created: what docker inspect says (legacy builder: build time).
        for tag in ["1.0.0", "2.0.0", "1.1.0-rc.1"] {
            let created = c.created(&image(&host, tag)).await.expect("created");
            assert_eq!(
                created,
                Some(pushed[tag].created_unix_s),
                "created of {tag}"
            );
        }
        // A digest-only reference needs no request for its digest.
        let pinned = ImageReference::parse(&format!("{host}/{REPO}@{}", pushed["2.0.0"].digest))
            .expect("pinned reference");
        let before = c.stats();
        assert_eq!(
            c.digest(&pinned).await.expect("pinned"),
            pushed["2.0.0"].digest
        );
        assert_eq!(delta(before, c.stats()).requests_sent, 0);

        // tag_info: several tags, bounded concurrency, in order.
        let infos = c
            .tag_info(&image(&host, "1.0.0"), &["1.0.0", "1.0.1", "nope"])
            .await;
        assert_eq!(infos.len(), 3);
        for (tag, info) in &infos[..2] {
            let info = info.as_ref().expect("tag info");
            assert_eq!(&info.tag, tag);
            assert_eq!(info.digest, pushed[tag.as_str()].digest);
            assert_eq!(
                info.created_unix_s,
                Some(pushed[tag.as_str()].created_unix_s)
            );
            assert_eq!(info.created_unknown, None);
        }
        assert!(
            matches!(infos[2].1, Err(RegistryError::NotFound { .. })),
            "{:?}",
            infos[2]
        );

        // Not found: a missing tag and a missing repository, named.
        for reference in [
            image(&host, "9.9.9"),
            ImageReference::parse(&format!("{host}/no/such:1")).expect("ref"),
        ] {
            match c.digest(&reference).await {
                Err(e @ RegistryError::NotFound { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("HTTP 404"), "{text}");
                    assert!(text.contains(&host), "{text}");
                    assert!(text.contains("/manifests/"), "{text}");
                    assert_eq!(e.http_status(), Some(404));
                }
                other => panic!("{reference}: expected not found, got {other:?}"),
            }
        }
        match c
            .list_tags(&ImageReference::parse(&format!("{host}/no/such")).expect("ref"))
            .await
        {
            Err(e @ RegistryError::NotFound { .. }) => {
                assert!(e.to_string().contains("NAME_UNKNOWN"), "{e}");
            }
            other => panic!("expected not found, got {other:?}"),
        }

        // Cache: a second ask within the TTL sends nothing.
        let cached = client(config_dir.path(), |c| {
            c.cache_ttl = Duration::from_secs(3600)
        });
        let latest = image(&host, "latest");
        assert_eq!(
            cached.digest(&latest).await.expect("digest"),
            pushed["latest"].digest
        );
        let before = cached.stats();
        assert_eq!(
            cached.digest(&latest).await.expect("digest"),
            pushed["latest"].digest
        );
        let d = delta(before, cached.stats());
        assert_eq!(
            (d.requests_sent, d.cache_hits, d.cache_misses),
            (0, 1, 0),
            "{d:?}"
        );

        // Concurrent callers of one key share one request.
        let fresh = client(config_dir.path(), |_| {});
        let one = image(&host, "1.1.0");
        let answers = futures_util::future::join_all((0..16).map(|_| fresh.digest(&one))).await;
        for a in answers {
            assert_eq!(a.expect("digest"), pushed["1.1.0"].digest);
        }
        let s = fresh.stats();
        assert_eq!(
            (s.requests_sent, s.cache_misses, s.cache_hits),
            (1, 1, 15),
            "{s:?}"
        );

        // The re-pushed tag: a short-TTL client sees the new digest once its
        // TTL has passed; the long-TTL one keeps the old one without asking.
        let ttl = Duration::from_secs(1);
        let short = client(config_dir.path(), |c| c.cache_ttl = ttl);
        // Taken before the fetch, so the TTL (counted from the answer) has
        // surely run out when the new digest shows.
        let first_fetch = Instant::now();
        assert_eq!(
            short.digest(&latest).await.expect("digest"),
            pushed["latest"].digest
        );
        let repushed = push(&latest_name, None);
        assert_ne!(
            repushed.digest, pushed["latest"].digest,
            "new content, new digest"
        );
        let before = cached.stats();
        assert_eq!(
            cached.digest(&latest).await.expect("digest"),
            pushed["latest"].digest
        );
        assert_eq!(delta(before, cached.stats()).requests_sent, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = short.digest(&latest).await.expect("digest");
            if now == repushed.digest {
                assert!(
                    first_fetch.elapsed() >= ttl,
                    "new digest seen before the TTL ran out"
                );
                break;
            }
            assert_eq!(now, pushed["latest"].digest);
            assert!(Instant::now() < deadline, "the new digest never showed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            short.created(&latest).await.expect("created"),
            Some(repushed.created_unix_s)
        );

        // Rate limit: 1 request/s to the host; 4 tags at once wait 3 times.
        let slow = client(config_dir.path(), |c| {
            c.requests_per_second = 1;
            c.created_times = false;
        });
        let infos = slow
            .tag_info(&image(&host, "x"), &["1.0.0", "1.0.1", "1.1.0", "2.0.0"])
            .await;
        for (tag, info) in infos {
            assert_eq!(info.expect("tag info").digest, pushed[tag.as_str()].digest);
        }
        let s = slow.stats();
        assert_eq!((s.requests_sent, s.rate_limit_waits), (4, 3), "{s:?}");
    });

    // A multi-platform tag: a Docker manifest list made by `docker manifest`
    // of 1.0.0 (linux/amd64) and 2.0.0 annotated as linux/arm64/v8.
    let cli_config = empty_docker_config();
    let list = format!("{host}/{REPO}:multi");
    let docker = |args: &[&str]| {
        run(Command::new("docker")
            .arg("--config")
            .arg(cli_config.path())
            .args(args))
    };
    let amd = format!("{host}/{REPO}@{}", pushed["1.0.0"].digest);
    let arm = format!("{host}/{REPO}@{}", pushed["2.0.0"].digest);
    docker(&["manifest", "create", "--insecure", &list, &amd, &arm]);
    docker(&[
        "manifest",
        "annotate",
        "--arch",
        "arm64",
        "--variant",
        "v8",
        &list,
        &arm,
    ]);
    let out = docker(&["manifest", "push", "--insecure", &list]);
    let list_digest = out
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in docker manifest push output: {out}"))
        .to_string();
    rt.block_on(async {
        let multi = image(&host, "multi");
        let c = client(config_dir.path(), |_| {});
        assert_eq!(c.digest(&multi).await.expect("list digest"), list_digest);
        assert_eq!(
            c.created(&multi).await.expect("created"),
            Some(pushed["1.0.0"].created_unix_s),
            "linux/amd64 by default"
        );
        for platform in ["linux/arm64", "linux/arm64/v8"] {
            let arm_client = client(config_dir.path(), |c| {
                c.platform = platform.parse::<Platform>().expect("platform");
            });
            assert_eq!(
                arm_client.created(&multi).await.expect("created"),
                Some(pushed["2.0.0"].created_unix_s),
                "{platform}"
            );
        }
        let s390 = client(config_dir.path(), |c| {
            c.platform = "linux/s390x".parse().expect("platform");
        });
        match s390.created_time(&multi).await.expect("created") {
            CreatedTime::Unknown(why) => {
                assert!(why.contains("no linux/s390x image"), "{why}");
                assert!(
                    why.contains("linux/amd64") && why.contains("linux/arm64/v8"),
                    "{why}"
                );
            }
            other => panic!("expected unknown, got {other:?}"),
        }
        let infos = s390.tag_info(&multi, &["multi"]).await;
        let info = infos[0].1.as_ref().expect("tag info");
        assert_eq!(info.created_unix_s, None);
        assert!(
            info.created_unknown
                .as_deref()
                .is_some_and(|w| w.contains("s390x")),
            "{info:?}"
        );
    });
    drop(registry);
}

/// `docker login` into a fresh Docker config directory (which then holds
/// the config.json the client reads).
fn docker_login(host: &str, user: &str, password: &str) -> tempfile::TempDir {
    let login = tempfile::tempdir().expect("temp dir");
    let out = Command::new("docker")
        .arg("--config")
        .arg(login.path())
        .args(["login", "-u", user, "--password-stdin", host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(password.as_bytes())?;
            }
            child.wait_with_output()
        })
        .expect("docker login");
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    login
}

/// Basic auth: a registry with an htpasswd (bcrypt) user; `docker login`
/// writes the config.json the client reads. Without it, or with a wrong
/// password, or with only a credential helper: a clear 401.
#[test]
fn real_registry_basic_auth_from_docker_config() {
    skip_without!(true);
    let line = run(Command::new("/usr/bin/htpasswd").args(["-Bbn", "alice", "s3cret:pw"]));
    let auth_dir = tempfile::tempdir().expect("temp dir");
    let htpasswd = auth_dir.path().join("htpasswd");
    std::fs::write(&htpasswd, line).expect("write htpasswd");
    let registry = Registry::start(
        &format!(
            "auth:\n  htpasswd:\n    realm: upid-test\n    path: {}\n",
            htpasswd.display()
        ),
        "",
    );
    let host = registry.host();
    let images = Images::default();
    let login = docker_login(&host, "alice", "s3cret:pw");
    let name = format!("{host}/{REPO}:1.0.0");
    build(&images, &name, &format!("auth {}", registry.port));
    let pushed = push(&name, Some(login.path()));
    let config_json = login.path().join("config.json");

    let rt = runtime();
    rt.block_on(async {
        let reference = image(&host, "1.0.0");
        // With the credentials docker login wrote (the file itself given).
        let c = client(&config_json, |_| {});
        assert_eq!(
            c.list_tags(&reference).await.expect("tags"),
            vec!["1.0.0".to_string()]
        );
        assert_eq!(c.digest(&reference).await.expect("digest"), pushed.digest);
        assert_eq!(
            c.created(&reference).await.expect("created"),
            Some(pushed.created_unix_s)
        );
        // Learnt: later requests send the credentials up front (no 401 first).
        let before = c.stats();
        c.clear_cache();
        c.digest(&reference).await.expect("digest");
        assert_eq!(delta(before, c.stats()).requests_sent, 1);

        // No credentials.
        let none = empty_docker_config();
        let c = client(none.path(), |_| {});
        match c.list_tags(&reference).await {
            Err(e @ RegistryError::Unauthorized { .. }) => {
                let text = e.to_string();
                assert!(text.contains("HTTP 401"), "{text}");
                assert!(text.contains(&host), "{text}");
                assert!(text.contains("no credentials"), "{text}");
                assert!(text.contains("docker login"), "{text}");
                assert!(
                    text.contains(&none.path().join("config.json").display().to_string()),
                    "{text}"
                );
            }
            other => panic!("expected 401, got {other:?}"),
        }

        // A wrong password.
        let wrong = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            wrong.path().join("config.json"),
            format!(r#"{{"auths":{{"{host}":{{"username":"alice","password":"nope"}}}}}}"#),
        )
        .expect("config.json");
        match client(wrong.path(), |_| {}).digest(&reference).await {
            Err(e @ RegistryError::Unauthorized { .. }) => {
                assert!(e.to_string().contains("refused the credentials"), "{e}");
            }
            other => panic!("expected 401, got {other:?}"),
        }

        // Only a credential helper: named, not run, no crash.
        let helper = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            helper.path().join("config.json"),
            format!(r#"{{"auths":{{"{host}":{{}}}},"credsStore":"secretservice"}}"#),
        )
        .expect("config.json");
        match client(helper.path(), |_| {}).digest(&reference).await {
            Err(e @ RegistryError::Unauthorized { .. }) => {
                assert!(e.to_string().contains("credential"), "{e}");
            }
            other => panic!("expected 401, got {other:?}"),
        }
    });

    // A config.json that is not JSON is refused when the client is made.
    let broken = tempfile::tempdir().expect("temp dir");
    std::fs::write(broken.path().join("config.json"), "{ not json").expect("write");
    match RegistryClient::new(RegistryConfig {
        docker_config: Some(broken.path().to_path_buf()),
        ..RegistryConfig::default()
    }) {
        Err(e @ RegistryError::DockerConfig { .. }) => {
            assert!(e.to_string().contains("config.json"), "{e}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    drop(registry);
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`:
/// ca.crt, server.crt, server.key.
fn make_tls_files(dir: &Path) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=upid test CA",
        ],
    );
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "server.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// HTTPS with rustls: a registry serving TLS on loopback (where the client
/// tries plain HTTP first, as for any loopback registry, and moves to HTTPS
/// when the registry says so) is trusted with its CA in `ca_files`, and
/// refused with a certificate error without it.
#[test]
fn real_registry_over_https() {
    skip_without!(true);
    let tls = tempfile::tempdir().expect("temp dir");
    make_tls_files(tls.path());
    let registry = Registry::start(
        "",
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            tls.path().join("server.crt").display(),
            tls.path().join("server.key").display()
        ),
    );
    let host = registry.host();
    let images = Images::default();
    // Docker talks HTTPS to it without checking the certificate (127.0.0.0/8
    // is an insecure registry for Docker).
    let name = format!("{host}/{REPO}:1.0.0");
    build(&images, &name, &format!("tls {}", registry.port));
    let pushed = push(&name, None);
    let config_dir = empty_docker_config();
    let rt = runtime();
    rt.block_on(async {
        let reference = image(&host, "1.0.0");
        let c = client(config_dir.path(), |c| {
            c.ca_files = vec![tls.path().join("ca.crt")];
        });
        assert_eq!(c.list_tags(&reference).await, Ok(vec!["1.0.0".to_string()]));
        assert_eq!(c.digest(&reference).await.expect("digest"), pushed.digest);
        assert_eq!(
            c.created(&reference).await.expect("created"),
            Some(pushed.created_unix_s)
        );
        // The scheme is learnt: one plain-HTTP try in all, then HTTPS only.
        let before = c.stats();
        c.clear_cache();
        c.digest(&reference).await.expect("digest");
        assert_eq!(delta(before, c.stats()).requests_sent, 1);

        let untrusting = client(config_dir.path(), |_| {});
        match untrusting.list_tags(&reference).await {
            Err(e @ RegistryError::Unreachable { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("https://{host}/v2/")), "{text}");
                assert!(text.contains("certificate"), "{text}");
                assert!(text.contains("CA files"), "{text}");
            }
            other => panic!("expected a certificate error, got {other:?}"),
        }
    });
    // A CA file that is not PEM is refused when the client is made.
    std::fs::write(tls.path().join("junk.pem"), "junk").expect("write");
    match RegistryClient::new(RegistryConfig {
        ca_files: vec![tls.path().join("junk.pem")],
        docker_config: Some(config_dir.path().to_path_buf()),
        ..RegistryConfig::default()
    }) {
        Err(e @ RegistryError::Config { .. }) => assert!(e.to_string().contains("junk.pem"), "{e}"),
        other => panic!("expected a setting error, got {other:?}"),
    }
    drop(registry);
}

/// A token service for the real registry's `auth: token` (none is packaged
/// in Debian, so it is written here): Docker's token protocol, ES256 JWTs
/// signed with a key whose certificate the registry trusts (x5c), access
/// granted to `user`/`password` for whatever scopes are asked.
fn token_service(sign_dir: &Path, issuer: &'static str, user: &str, password: &str) -> Handler {
    use base64::Engine as _;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pkcs8 = std::fs::read(sign_dir.join("sign.pk8")).expect("sign.pk8");
    let cert = std::fs::read(sign_dir.join("sign.der")).expect("sign.der");
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8,
        &rng,
    )
    .expect("signing key");
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert)],
    });
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let user = user.to_string();
    let counter = AtomicUsize::new(0);
    Arc::new(move |req: &Req| {
        if req.headers.get("authorization") != Some(&expected_auth) {
            return reply(
                "401 Unauthorized",
                &[],
                br#"{"details":"incorrect username or password"}"#,
            );
        }
        let query = req.target.split_once('?').map_or("", |(_, q)| q);
        let mut service = String::new();
        let mut access = Vec::new();
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let v = percent_decode(v);
            match k {
                "service" => service = v,
                "scope" => {
                    let mut parts = v.split(':');
                    let (Some(kind), Some(name), Some(actions)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let actions: Vec<&str> = actions.split(',').collect();
                    access
                        .push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
                }
                _ => {}
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = serde_json::json!({
            "iss": issuer,
            "sub": user,
            "aud": service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("upid-test-{}", counter.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url.encode(header.to_string()),
            b64url.encode(claims.to_string())
        );
        let Ok(signature) = key.sign(&rng, signing_input.as_bytes()) else {
            return reply("500 Internal Server Error", &[], b"signing failed");
        };
        let token = format!("{signing_input}.{}", b64url.encode(signature.as_ref()));
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300});
        reply(
            "200 OK",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bearer tokens against the real registry in `auth: token` mode: it
/// challenges, the client fetches a token from the realm with the
/// credentials `docker login` stored, the registry verifies the token's
/// signature, issuer, audience and scope; the token is kept and sent up
/// front. Without credentials: a 401 naming the config file.
#[test]
fn real_registry_bearer_tokens() {
    skip_without!(true);
    let sign = tempfile::tempdir().expect("temp dir");
    openssl(
        sign.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sign.key",
        ],
    );
    openssl(
        sign.path(),
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "sign.key", "-outform", "DER", "-out", "sign.pk8",
        ],
    );
    openssl(
        sign.path(),
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "sign.key",
            "-out",
            "sign.crt",
            "-days",
            "2",
            "-subj",
            "/CN=upid test token issuer",
        ],
    );
    openssl(
        sign.path(),
        &[
            "x509", "-in", "sign.crt", "-outform", "DER", "-out", "sign.der",
        ],
    );
    let rt = runtime();
    let (token_port, token_requests) = rt.block_on(scripted_server(token_service(
        sign.path(),
        "upid-test-issuer",
        "carol",
        "t0ken-pw",
    )));
    let registry = Registry::start(
        &format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: upid-test-registry\n    issuer: upid-test-issuer\n    rootcertbundle: {}\n",
            sign.path().join("sign.crt").display()
        ),
        "",
    );
    let host = registry.host();
    let images = Images::default();
    let login = docker_login(&host, "carol", "t0ken-pw");
    let name = format!("{host}/{REPO}:3.1.4");
    build(&images, &name, &format!("token {}", registry.port));
    let pushed = push(&name, Some(login.path()));

    rt.block_on(async {
        let reference = image(&host, "3.1.4");
        let c = client(login.path(), |_| {});
        let before_tokens = token_requests.lock().expect("seen").len();
        assert_eq!(c.list_tags(&reference).await, Ok(vec!["3.1.4".to_string()]));
        // 401 with the challenge, the token, the retry.
        let s = c.stats();
        assert_eq!((s.requests_sent, s.token_fetches), (3, 1), "{s:?}");
        let asked: Vec<String> = token_requests.lock().expect("seen")[before_tokens..]
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(asked[0].contains("service=upid-test-registry"), "{asked:?}");
        assert!(
            asked[0].contains(&format!(
                "scope=repository%3A{}%3Apull",
                REPO.replace('/', "%2F")
            )),
            "{asked:?}"
        );
        // The token goes up front from now on: HEAD, manifest, config blob.
        assert_eq!(c.digest(&reference).await.expect("digest"), pushed.digest);
        assert_eq!(
            c.created(&reference).await.expect("created"),
            Some(pushed.created_unix_s)
        );
        let s = c.stats();
        assert_eq!((s.requests_sent, s.token_fetches), (3 + 3, 1), "{s:?}");

        let none = empty_docker_config();
        match client(none.path(), |_| {}).list_tags(&reference).await {
            Err(e @ RegistryError::Unauthorized { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("127.0.0.1:{token_port}/token?")),
                    "{text}"
                );
                assert!(text.contains("no credentials"), "{text}");
            }
            other => panic!("expected 401, got {other:?}"),
        }
    });
    drop(registry);
}

fn scripted_client(
    adjust: impl FnOnce(&mut RegistryConfig),
) -> (RegistryClient, tempfile::TempDir) {
    let dir = empty_docker_config();
    let c = client(dir.path(), |c| {
        c.request_timeout = Duration::from_secs(2);
        adjust(c);
    });
    (c, dir)
}

/// The collector shares one client across tasks: it is Clone + Send + Sync,
/// and its futures can be spawned.
#[test]
fn client_is_shareable_and_its_futures_are_send() {
    fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let dir = empty_docker_config();
    let c = client(dir.path(), |_| {});
    shareable(&c);
    let image = ImageReference::parse("registry.example/app:1.0").expect("reference");
    // Made, not run: no request leaves.
    send(c.list_tags(&image));
    send(c.digest(&image));
    send(c.created(&image));
    send(c.created_time(&image));
    send(c.tag_info(&image, &["1.0"]));
    assert_eq!(c.stats(), RegistryStats::default());
    assert_eq!(c.config().platform.to_string(), "linux/amd64");
}

/// Garbage from a server is an error naming registry, URL and status, never
/// a panic: junk JSON, a junk manifest without a digest header, a junk Link,
/// an oversized body, silence, a broken connection.
#[test]
fn garbage_answers_are_errors_not_panics() {
    let rt = runtime();
    rt.block_on(async {
        let handler: Handler = Arc::new(|req: &Req| {
            let t = req.target.as_str();
            if t.starts_with("/v2/junk/tags/list") {
                reply(
                    "200 OK",
                    &[("Content-Type", "application/json")],
                    b"{\"tags\": [1, 2,",
                )
            } else if t.starts_with("/v2/html/tags/list") {
                reply("200 OK", &[], b"<html>hello</html>")
            } else if t.starts_with("/v2/badlink/tags/list") {
                reply(
                    "200 OK",
                    &[("Link", "<http://[::bad>; rel=\"next\"")],
                    br#"{"tags":["a"]}"#,
                )
            } else if t.starts_with("/v2/loop/tags/list") {
                reply(
                    "200 OK",
                    &[("Link", "</v2/loop/tags/list?n=1000>; rel=\"next\"")],
                    br#"{"tags":["a"]}"#,
                )
            } else if t.starts_with("/v2/nulltags/tags/list") {
                reply("200 OK", &[], br#"{"name":"nulltags","tags":null}"#)
            } else if t.starts_with("/v2/huge/tags/list") {
                // No Content-Length: the body ends when the connection does.
                let body = format!("{{\"tags\":[\"{}\"]}}", "a".repeat(100_000));
                let mut raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                raw.extend_from_slice(body.as_bytes());
                Reply::Raw(raw)
            } else if t.starts_with("/v2/liar/tags/list") {
                reply("200 OK", &[("Content-Length", "999999999")], b"{}")
            } else if t.starts_with("/v2/junk/manifests/") && req.method == "HEAD" {
                // A Docker-Content-Digest that is no digest: the client GETs.
                reply("200 OK", &[("Docker-Content-Digest", "not a digest")], b"")
            } else if t.starts_with("/v2/junk/manifests/") {
                // And the body is no manifest.
                reply("200 OK", &[], b"\x00\xff garbage")
            } else if t.starts_with("/v2/silent/") {
                Reply::Hang
            } else if t.starts_with("/v2/cut/") {
                Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ta".to_vec())
            } else if t.starts_with("/v2/noise/") {
                Reply::Raw(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n".to_vec())
            } else {
                reply("404 Not Found", &[], b"")
            }
        });
        let (port, _) = scripted_server(handler).await;
        let (c, _dir) = scripted_client(|c| {
            c.max_response_bytes = 64 * 1024;
            c.retries = 0;
        });
        let host = format!("127.0.0.1:{port}");
        let at = |repo: &str, tag: &str| {
            ImageReference::parse(&format!("{host}/{repo}:{tag}")).expect("reference")
        };
        let expect_invalid =
            |what: &str, r: Result<Vec<String>, RegistryError>, needle: &str| match r {
                Err(e @ RegistryError::InvalidResponse { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(&host) && text.contains("HTTP 200"),
                        "{what}: {text}"
                    );
                    assert!(text.contains(needle), "{what}: {text}");
                }
                other => panic!("{what}: expected an invalid-answer error, got {other:?}"),
            };
        expect_invalid("junk JSON", c.list_tags(&at("junk", "1")).await, "not JSON");
        expect_invalid("HTML", c.list_tags(&at("html", "1")).await, "not JSON");
        expect_invalid(
            "bad Link",
            c.list_tags(&at("badlink", "1")).await,
            "not a URL",
        );
        expect_invalid(
            "looping Link",
            c.list_tags(&at("loop", "1")).await,
            "already read",
        );
        assert_eq!(c.list_tags(&at("nulltags", "1")).await, Ok(Vec::new()));
        match c.digest(&at("junk", "1")).await {
            Err(e @ RegistryError::InvalidResponse { .. }) => {
                assert!(e.to_string().contains("manifest is not JSON"), "{e}");
            }
            other => panic!("junk manifest: {other:?}"),
        }
        for repo in ["huge", "liar"] {
            match c.list_tags(&at(repo, "1")).await {
                Err(e @ RegistryError::TooLarge { .. }) => {
                    assert!(e.to_string().contains("65536 bytes"), "{e}");
                }
                other => panic!("{repo}: expected too large, got {other:?}"),
            }
        }
        match c.list_tags(&at("silent", "1")).await {
            Err(e @ RegistryError::Timeout { .. }) => {
                assert!(e.to_string().contains("2000 ms"), "{e}");
            }
            other => panic!("silent: expected a timeout, got {other:?}"),
        }
        for repo in ["cut", "noise"] {
            match c.list_tags(&at(repo, "1")).await {
                Err(RegistryError::Unreachable { url, .. }) => assert!(url.contains(repo)),
                other => panic!("{repo}: expected a broken answer, got {other:?}"),
            }
        }
        // Nothing listens: unreachable, named.
        let closed = free_port();
        let r = ImageReference::parse(&format!("127.0.0.1:{closed}/a/b:1")).expect("reference");
        match c.digest(&r).await {
            Err(e @ RegistryError::Unreachable { .. }) => {
                assert!(
                    e.to_string().contains(&format!("127.0.0.1:{closed}")),
                    "{e}"
                );
                assert!(e.is_transient());
            }
            other => panic!("closed port: {other:?}"),
        }
    });
}

/// 5xx is retried with backoff; 429 is reported with Retry-After and the
/// host is left alone until then; 401/403 and registry error bodies are named.
#[test]
fn transient_failures_retries_and_rate_limits() {
    let rt = runtime();
    rt.block_on(async {
        let flaky_calls = Arc::new(AtomicUsize::new(0));
        let calls = flaky_calls.clone();
        let handler: Handler = Arc::new(move |req: &Req| {
            let t = req.target.as_str();
            if t.starts_with("/v2/flaky/tags/list") {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    reply("503 Service Unavailable", &[], b"busy")
                } else {
                    reply("200 OK", &[], br#"{"tags":["1.0"]}"#)
                }
            } else if t.starts_with("/v2/down/") {
                reply(
                    "502 Bad Gateway",
                    &[],
                    br#"{"errors":[{"code":"UNAVAILABLE","message":"backend down"}]}"#,
                )
            } else if t.starts_with("/v2/limited/") {
                reply("429 Too Many Requests", &[("Retry-After", "120")], b"")
            } else if t.starts_with("/v2/forbidden/") {
                reply(
                    "403 Forbidden",
                    &[],
                    br#"{"errors":[{"code":"DENIED","message":"no"}]}"#,
                )
            } else {
                reply("404 Not Found", &[], b"")
            }
        });
        let (port, seen) = scripted_server(handler).await;
        let host = format!("127.0.0.1:{port}");
        let at =
            |repo: &str| ImageReference::parse(&format!("{host}/{repo}:1")).expect("reference");
        let (c, _dir) = scripted_client(|c| c.retries = 2);

        assert_eq!(c.list_tags(&at("flaky")).await, Ok(vec!["1.0".to_string()]));
        assert_eq!(c.stats().retries, 2);

        match c.list_tags(&at("down")).await {
            Err(e @ RegistryError::Status { status: 502, .. }) => {
                let text = e.to_string();
                assert!(text.contains("UNAVAILABLE backend down"), "{text}");
                assert!(text.contains("try again later"), "{text}");
                assert!(e.is_transient());
            }
            other => panic!("down: {other:?}"),
        }
        match c.list_tags(&at("forbidden")).await {
            Err(e @ RegistryError::Status { status: 403, .. }) => {
                assert!(e.to_string().contains("DENIED no"), "{e}");
                assert!(!e.is_transient());
            }
            other => panic!("forbidden: {other:?}"),
        }

        let before = seen.lock().expect("seen").len();
        match c.list_tags(&at("limited")).await {
            Err(
                e @ RegistryError::RateLimited {
                    retry_after_s: Some(120),
                    ..
                },
            ) => {
                let text = e.to_string();
                assert!(
                    text.contains("HTTP 429") && text.contains("retry after 120 s"),
                    "{text}"
                );
            }
            other => panic!("limited: {other:?}"),
        }
        // Within Retry-After nothing more goes to that host, whatever the path.
        match c.digest(&at("flaky")).await {
            Err(RegistryError::RateLimited {
                retry_after_s: Some(s),
                ..
            }) => assert!(s <= 120),
            other => panic!("cooling down: {other:?}"),
        }
        assert_eq!(
            seen.lock().expect("seen").len(),
            before + 1,
            "one request, no retries of a 429"
        );
    });
}

/// Bearer tokens, against a scripted registry and token service (no token
/// service is packaged in Debian): the challenge is answered with a token
/// fetched with the config.json credentials, kept until it expires, sent up
/// front afterwards; a refused token service login is a 401 naming the file.
#[test]
fn bearer_token_flow_scripted() {
    let rt = runtime();
    rt.block_on(async {
        let tokens_issued = Arc::new(AtomicUsize::new(0));
        let issued = tokens_issued.clone();
        let port_cell = Arc::new(AtomicUsize::new(0));
        let port_for_handler = port_cell.clone();
        let handler: Handler = Arc::new(move |req: &Req| {
            let port = port_for_handler.load(Ordering::SeqCst);
            let t = req.target.as_str();
            if let Some(query) = t.strip_prefix("/token?") {
                // Docker's token spec: service and scope as query parameters,
                // basic credentials of the user (bob:pw) when logged in.
                let ok_auth = req.headers.get("authorization").map(String::as_str)
                    == Some("Basic Ym9iOnB3");
                if !ok_auth {
                    return reply("401 Unauthorized", &[], br#"{"details":"incorrect username or password"}"#);
                }
                assert!(query.contains("service=test-registry"), "{query}");
                assert!(query.contains("scope=repository%3Aorg%2Fapp%3Apull"), "{query}");
                let n = issued.fetch_add(1, Ordering::SeqCst);
                let body = format!(r#"{{"token":"tok{n}","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}}"#);
                return reply("200 OK", &[("Content-Type", "application/json")], body.as_bytes());
            }
            let authorized = req
                .headers
                .get("authorization")
                .is_some_and(|a| a.starts_with("Bearer tok"));
            if !authorized {
                let challenge = format!(
                    "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\",scope=\"repository:org/app:pull\""
                );
                return reply(
                    "401 Unauthorized",
                    &[("WWW-Authenticate", challenge.as_str())],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                );
            }
            if t.starts_with("/v2/org/app/tags/list") {
                reply("200 OK", &[], br#"{"tags":["1.0","1.1"]}"#)
            } else {
                reply("404 Not Found", &[], b"")
            }
        });
        let (port, seen) = scripted_server(handler).await;
        port_cell.store(usize::from(port), Ordering::SeqCst);
        let host = format!("127.0.0.1:{port}");
        let reference = ImageReference::parse(&format!("{host}/org/app:1.0")).expect("reference");

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"http://{host}/v2/":{{"auth":"Ym9iOnB3"}}}}}}"#),
        )
        .expect("config.json");
        let c = client(dir.path(), |c| c.cache_ttl = Duration::ZERO);
        assert_eq!(
            c.list_tags(&reference).await,
            Ok(vec!["1.0".to_string(), "1.1".to_string()])
        );
        // 401, token, retry with the token.
        assert_eq!(seen.lock().expect("seen").len(), 3);
        assert_eq!(c.stats().token_fetches, 1);
        // Next time the token goes up front: one request, no new token.
        assert_eq!(c.list_tags(&reference).await.map(|t| t.len()), Ok(2));
        assert_eq!(seen.lock().expect("seen").len(), 4);
        assert_eq!(tokens_issued.load(Ordering::SeqCst), 1);

        // Without credentials the token service refuses: a 401 that names
        // the config file to fix.
        let none = empty_docker_config();
        match client(none.path(), |_| {}).list_tags(&reference).await {
            Err(e @ RegistryError::Unauthorized { .. }) => {
                let text = e.to_string();
                assert!(text.contains("/token?"), "{text}");
                assert!(text.contains("no credentials"), "{text}");
            }
            other => panic!("expected 401, got {other:?}"),
        }
    });
}
