//! A real OCI registry for update tests: Debian's `docker-registry`
//! (the CNCF distribution server) on a loopback port with its storage in a
//! temporary directory, and images built here pushed into it with the
//! machine's Docker Engine (which speaks plain HTTP to 127.0.0.0/8).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::free_port;
use super::process::Proc;
use crate::{run, wait_for};

/// Where Debian installs the registry server.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether the registry server is installed (`apt-get install docker-registry`).
pub fn registry_available() -> bool {
    Path::new(REGISTRY_BIN).exists()
}

/// A running registry, stopped (and its storage removed) when dropped.
pub struct Registry {
    _proc: Proc,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, the host part of image references.
    pub host: String,
    pushed: Vec<String>,
}

impl Registry {
    /// Starts `docker-registry serve` on a free loopback port and waits
    /// until `/v2/` answers.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let storage: PathBuf = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                storage.display()
            ),
        )
        .expect("write registry config");
        let proc = Proc::spawn(
            "docker-registry",
            Command::new(REGISTRY_BIN).arg("serve").arg(&config),
        );
        let addr = host.parse().expect("registry address");
        wait_for(
            Duration::from_secs(30),
            "the registry to answer /v2/",
            || super::collector::http_get(addr, "/v2/").ok(),
        );
        Registry {
            _proc: proc,
            _dir: dir,
            host,
            pushed: Vec::new(),
        }
    }

    /// Tags the local image `local` as `<host>/<repository>:<tag>` and
    /// pushes it; returns the pushed reference. The local tag is removed
    /// when the registry is dropped.
    pub fn push(&mut self, local: &str, repository: &str, tag: &str) -> String {
        let reference = format!("{}/{repository}:{tag}", self.host);
        run(Command::new("docker").args(["tag", local, &reference]));
        run(Command::new("docker").args(["push", "-q", &reference]));
        self.pushed.push(reference.clone());
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for reference in &self.pushed {
            let _ = Command::new("docker").args(["rmi", reference]).output();
        }
    }
}
