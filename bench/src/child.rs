//! A measured child process (the agent, the exporter): its stderr goes to a
//! temporary log shown when it dies early, and dropping the guard kills and
//! reaps it.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// How much of a dead child's log to show.
const LOG_TAIL_BYTES: u64 = 4096;

/// A running child process, killed on drop.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log: std::fs::File,
}

impl ChildGuard {
    /// Spawns `command` with stdin and stdout from/to `/dev/null` and stderr
    /// into a temporary log. `name` is used in messages.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        let log = tempfile::tempfile().context("creating a temporary log file")?;
        let stderr = log.try_clone().context("duplicating the log file")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Own process group: a terminal's Ctrl-C reaches only the
            // benchmark, which then measures nothing more and stops this.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error, with the end of its log, if the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))?;
        if let Some(status) = status {
            let tail = self.log_tail();
            bail!(
                "{} exited early ({status}); its stderr ends with:\n{tail}",
                self.name
            );
        }
        Ok(())
    }

    /// The last few KiB of the child's stderr (best effort).
    pub fn log_tail(&mut self) -> String {
        let mut text = String::new();
        let len = self.log.seek(SeekFrom::End(0)).unwrap_or(0);
        if self
            .log
            .seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
            .is_ok()
        {
            let mut bytes = Vec::new();
            if self.log.read_to_end(&mut bytes).is_ok() {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        if text.trim().is_empty() {
            "(nothing)".to_owned()
        } else {
            text
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already exited is fine; what matters is that it is reaped.
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            eprintln!("upid-bench: warning: reaping {}: {e}", self.name);
        }
    }
}
