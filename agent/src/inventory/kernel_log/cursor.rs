//! How far the kernel log was read, kept in the agent's state directory
//! (the spool directory) as `<boot id> <sequence number>`, so a restarted
//! agent replays the OOM kills the kernel logged while it was down (a
//! DaemonSet rollout, a crash) instead of starting at the log's end.
//!
//! Sequence numbers restart with every boot, hence the boot id: a cursor of
//! another boot is ignored. The cursor is written (to a temporary file,
//! then renamed) after every kill passed on, so a kill is never replayed
//! twice, and at most every [`SAVE_EVERY`] otherwise, so little is read
//! again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cursor's file in the state directory.
pub const CURSOR_FILE: &str = "kmsg.cursor";

/// Where the kernel says which boot this is (not namespaced).
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Longest time between two writes of the cursor while records are read.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// A position in one boot's kernel log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// The last record handled.
    pub seq: u64,
}

impl Cursor {
    /// Reads `<boot id> <seq>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Cursor> {
        let mut fields = text.split_whitespace();
        let boot_id = fields.next()?.to_string();
        let seq = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(Cursor { boot_id, seq })
    }

    /// The file's content.
    pub fn render(&self) -> String {
        format!("{} {}\n", self.boot_id, self.seq)
    }
}

/// This boot's id, or `None` when the kernel does not say.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID_PATH).ok()?;
    let id = id.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

/// The cursor file of one state directory, for this boot.
#[derive(Debug)]
pub struct CursorFile {
    path: PathBuf,
    boot_id: String,
    saved: Option<u64>,
    saved_at: Option<Instant>,
    failures: u64,
}

impl CursorFile {
    /// The cursor in `dir`, for the boot `boot_id`.
    pub fn new(dir: &Path, boot_id: String) -> CursorFile {
        CursorFile {
            path: dir.join(CURSOR_FILE),
            boot_id,
            saved: None,
            saved_at: None,
            failures: 0,
        }
    }

    /// The last record handled in this boot, when the file says so; a
    /// missing, unreadable or malformed file, or one of another boot, is
    /// `None` (the log is then followed from its end).
    pub fn load(&mut self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let Some(cursor) = Cursor::parse(&text) else {
            tracing::warn!(path = %self.path.display(), "kernel log cursor unreadable; following the log from its end");
            return None;
        };
        if cursor.boot_id != self.boot_id {
            tracing::debug!("kernel log cursor of an earlier boot; following the log from its end");
            return None;
        }
        self.saved = Some(cursor.seq);
        Some(cursor.seq)
    }

    /// Saves `seq` now (after a kill was passed on).
    pub fn save(&mut self, seq: u64) {
        if self.saved == Some(seq) {
            return;
        }
        let cursor = Cursor {
            boot_id: self.boot_id.clone(),
            seq,
        };
        let tmp = self.path.with_extension("cursor.tmp");
        let written =
            std::fs::write(&tmp, cursor.render()).and_then(|()| std::fs::rename(&tmp, &self.path));
        match written {
            Ok(()) => {
                self.saved = Some(seq);
                self.saved_at = Some(Instant::now());
            }
            Err(e) => {
                self.failures += 1;
                // Once, then every 100th: a full disk must not flood the log.
                if self.failures % 100 == 1 {
                    tracing::warn!(
                        path = %self.path.display(),
                        error = %e,
                        failures_total = self.failures,
                        "cannot save the kernel log cursor; a restart may miss the OOM kills since"
                    );
                }
            }
        }
    }

    /// Saves `seq` if the last save is older than [`SAVE_EVERY`].
    pub fn save_if_due(&mut self, seq: u64) {
        if self.saved_at.is_none_or(|at| at.elapsed() >= SAVE_EVERY) {
            self.save(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const BOOT: &str = "3f8e1b3a-55a0-4c3e-9a55-0d1e5f8a2c41";

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let c = Cursor {
            boot_id: BOOT.into(),
            seq: 4558,
        };
        assert_eq!(Cursor::parse(&c.render()), Some(c));
        for bad in [
            "",
            BOOT,
            "x y",
            &format!("{BOOT} 1 2"),
            &format!("{BOOT} -1"),
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_this_boots_cursor_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = CursorFile::new(dir.path(), BOOT.into());
        assert_eq!(file.load(), None, "none yet");
        file.save(17);
        assert_eq!(CursorFile::new(dir.path(), BOOT.into()).load(), Some(17));
        assert_eq!(
            CursorFile::new(dir.path(), "other-boot".into()).load(),
            None
        );
        std::fs::write(dir.path().join(CURSOR_FILE), "garbage").unwrap();
        assert_eq!(CursorFile::new(dir.path(), BOOT.into()).load(), None);
    }

    #[test]
    fn a_save_that_cannot_be_written_is_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = CursorFile::new(&dir.path().join("missing"), BOOT.into());
        file.save(1);
        file.save(2);
        assert_eq!(file.failures, 2);
        assert_eq!(file.load(), None);
    }

    #[test]
    fn this_machine_has_a_boot_id() {
        assert!(boot_id().is_some_and(|id| id.len() >= 32));
    }
}
