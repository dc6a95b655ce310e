//! Child processes that tests start: output collected line by line, and
//! killed (SIGKILL) and reaped when dropped, so a failing test leaves
//! nothing running.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error (logs).
    Stderr,
}

type Lines = Arc<Mutex<Vec<(Stream, String)>>>;

/// A running program started by a test.
pub struct Proc {
    name: String,
    child: Child,
    lines: Lines,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr captured; `name` labels it in
    /// messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        let lines: Lines = Arc::default();
        if let Some(out) = child.stdout.take() {
            collect(out, Stream::Stdout, lines.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect(err, Stream::Stderr, lines.clone());
        }
        Proc {
            name: name.to_string(),
            child,
            lines,
            exited: None,
        }
    }

    /// The label given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far on `stream`.
    pub fn lines(&self, stream: Stream) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Everything printed so far, both streams, in arrival order.
    pub fn output(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        for (_, l) in lines.iter() {
            text.push_str(l);
            text.push('\n');
        }
        text
    }

    /// How many lines printed so far (either stream) contain `needle`.
    pub fn count_lines_with(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .count()
    }

    /// Polls the output until `f` finds something in a line of `stream`;
    /// panics (showing the output) after `timeout` or if the process exits
    /// first.
    pub fn wait_for_line<T>(
        &mut self,
        stream: Stream,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            let new: Vec<String> = {
                let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                let fresh = lines[seen..]
                    .iter()
                    .filter(|(s, _)| *s == stream)
                    .map(|(_, l)| l.clone())
                    .collect();
                seen = lines.len();
                fresh
            };
            if let Some(v) = new.iter().find_map(|l| f(l)) {
                return v;
            }
            if let Some(status) = self.try_exit() {
                // Read what the pipes still hold before giving up.
                std::thread::sleep(Duration::from_millis(200));
                let late = self.lines.lock().unwrap_or_else(|p| p.into_inner())[seen..]
                    .iter()
                    .filter(|(s, _)| *s == stream)
                    .find_map(|(_, l)| f(l));
                if let Some(v) = late {
                    return v;
                }
                panic!(
                    "{} exited ({status}) before {what}; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} from {}; its output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` (a name for kill(1): `TERM`, `INT`, `KILL`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill: {e}"));
        assert!(status.success(), "kill -s {signal} {} failed", self.name);
    }

    /// `kill -9`, then reaps it.
    pub fn kill9(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exited = Some(status);
            }
        }
    }

    /// The exit status if it has exited (reaping it), without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits up to `timeout` for the process to exit; panics (showing its
    /// output) if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        let status = crate::wait_for(timeout, &what, || self.try_exit());
        // Let the reader threads drain the pipes.
        std::thread::sleep(Duration::from_millis(100));
        status
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if self.is_running() {
            self.signal("TERM");
        }
        self.wait_exit(timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} -----\n{}----- end of {} -----",
                self.name,
                self.output(),
                self.name
            );
        }
    }
}

/// Copies `from` into `lines`, one line at a time, on a thread of its own.
fn collect(from: impl Read + Send + 'static, stream: Stream, lines: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((stream, line));
        }
    });
}
