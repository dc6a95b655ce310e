//! Ctrl-C and SIGTERM become a flag that long-running steps poll, so a
//! benchmark stops by returning an error and every cleanup guard still runs
//! (a signal's default action would leave cgroups and children behind).
//!
//! A second signal exits at once; the next run cleans up what was left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Exit code for a run stopped by a signal (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The error message of a run stopped by a signal.
const INTERRUPTED: &str = "interrupted";

/// Shared "stop now" flag, set by SIGINT/SIGTERM.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs SIGINT and SIGTERM handlers on a small background thread and
    /// returns the flag they set.
    pub fn install() -> anyhow::Result<Self> {
        let interrupt = Interrupt::default();
        let flag = Arc::clone(&interrupt.flag);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the signal-handling runtime")?;
        // Register the handlers before returning, so no early signal is lost.
        let (mut sigint, mut sigterm) = runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = sigint.recv() => {}
                            _ = sigterm.recv() => {}
                        }
                        if flag.swap(true, Ordering::SeqCst) {
                            eprintln!("upid-bench: second signal, exiting without cleanup (the next run cleans up)");
                            std::process::exit(i32::from(EXIT_INTERRUPTED));
                        }
                        eprintln!("upid-bench: interrupted, cleaning up (signal again to exit at once)");
                    }
                })
            })
            .context("starting the signal thread")?;
        Ok(interrupt)
    }

    /// True once a signal arrived.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// `Err(interrupted)` once a signal arrived.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.is_set() {
            bail!(INTERRUPTED);
        }
        Ok(())
    }

    /// Sleeps until `deadline`, waking every 100 ms to return early with
    /// `Err(interrupted)` when a signal arrives.
    pub fn sleep_until(&self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    /// True when `err` is the error [`Interrupt::check`] returns.
    pub fn is_interruption(err: &anyhow::Error) -> bool {
        err.chain().any(|cause| cause.to_string() == INTERRUPTED)
    }
}
