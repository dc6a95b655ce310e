//! `upid export`: the progress bar (stderr, terminals only) and the
//! summary (stdout).

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::structured;
use crate::cli::units::{bytes, rfc3339};

/// Cells of the bar between the brackets.
const BAR_CELLS: usize = 24;

/// The bar is redrawn at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// One progress line: `[#######.................]  29%  3.1Mi/10Mi  2/7 files`.
pub fn bar_line(done_bytes: u64, total_bytes: u64, files_done: u32, files_total: u32) -> String {
    let ratio = if total_bytes == 0 {
        1.0
    } else {
        (done_bytes as f64 / total_bytes as f64).clamp(0.0, 1.0)
    };
    let filled = ((ratio * BAR_CELLS as f64).floor() as usize).min(BAR_CELLS);
    format!(
        "[{}{}] {:>3}%  {}/{}  {files_done}/{files_total} files",
        "#".repeat(filled),
        ".".repeat(BAR_CELLS - filled),
        (ratio * 100.0).floor() as u32,
        bytes(done_bytes),
        bytes(total_bytes),
    )
}

/// The line while the collector writes the files.
pub fn preparing_line(days_done: u32, days_total: u32) -> String {
    format!("the collector is writing the reports: day {days_done}/{days_total}")
}

/// A progress bar drawn on one terminal line (`\r`, erased at the end);
/// without a terminal it draws nothing.
pub struct ProgressBar {
    out: Option<Box<dyn Write + Send>>,
    total_bytes: u64,
    done_bytes: u64,
    files_total: u32,
    files_done: u32,
    drawn_at: Option<Instant>,
}

impl ProgressBar {
    /// A bar drawing on `out`; `None`: no bar.
    pub fn new(out: Option<Box<dyn Write + Send>>) -> ProgressBar {
        ProgressBar {
            out,
            total_bytes: 0,
            done_bytes: 0,
            files_total: 0,
            files_done: 0,
            drawn_at: None,
        }
    }

    /// A bar on stderr when stderr is a terminal, else none.
    pub fn on_stderr_if_terminal() -> ProgressBar {
        use std::io::IsTerminal as _;
        let stderr = std::io::stderr();
        let out: Option<Box<dyn Write + Send>> = if stderr.is_terminal() {
            Some(Box::new(stderr))
        } else {
            None
        };
        ProgressBar::new(out)
    }

    fn draw(&mut self, line: &str, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .drawn_at
                .is_some_and(|t| now.duration_since(t) < REDRAW_EVERY)
        {
            return;
        }
        if let Some(out) = &mut self.out {
            // A failed write to the terminal is not worth failing for.
            let _ = write!(out, "\r\x1b[2K{line}").and_then(|()| out.flush());
            self.drawn_at = Some(now);
        }
    }

    /// The collector has written `done` of `total` days.
    pub fn preparing(&mut self, done: u32, total: u32) {
        self.draw(&preparing_line(done, total), done == total);
    }

    /// The files are coming: `files` of `total_bytes` in all.
    pub fn start(&mut self, files: u32, total_bytes: u64) {
        self.files_total = files;
        self.total_bytes = total_bytes;
        self.redraw(true);
    }

    /// `n` more bytes arrived.
    pub fn advance(&mut self, n: u64) {
        self.done_bytes += n;
        self.redraw(false);
    }

    /// A file was completed.
    pub fn file_done(&mut self) {
        self.files_done += 1;
        self.redraw(self.files_done == self.files_total);
    }

    fn redraw(&mut self, force: bool) {
        let line = bar_line(
            self.done_bytes,
            self.total_bytes,
            self.files_done,
            self.files_total,
        );
        self.draw(&line, force);
    }

    /// Erases the bar (the summary follows on stdout).
    pub fn finish(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = write!(out, "\r\x1b[2K").and_then(|()| out.flush());
        }
    }
}

/// One file `upid export` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedFileView {
    /// Path under `--out`.
    pub path: String,
    /// Its table.
    pub table: String,
    /// Its day, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Rows in it.
    pub rows: u64,
    /// Size.
    pub size_bytes: u64,
    /// SHA-256, checked after download.
    pub sha256: String,
}

/// What `upid export` did (`-o json`/`yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportView {
    /// The directory written into.
    pub out: String,
    /// The range, RFC 3339 (until exclusive).
    pub since: String,
    /// See `since`.
    pub until: String,
    /// Files written.
    pub files: Vec<ExportedFileView>,
    /// Their total size.
    pub total_bytes: u64,
    /// What the collector wanted said (e.g. why there is no updates table).
    pub notes: Vec<String>,
}

/// The summary: one line for people, the whole view for scripts.
pub fn export(view: &ExportView, format: Format) -> Result<String, CliError> {
    if let Some(text) = structured(view, format) {
        return text;
    }
    let mut days: Vec<&str> = view.files.iter().map(|f| f.date.as_str()).collect();
    days.sort_unstable();
    days.dedup();
    let rows: u64 = view
        .files
        .iter()
        .filter(|f| f.table == "samples")
        .map(|f| f.rows)
        .sum();
    let mut out = format!(
        "wrote {} files ({}) for {} day{}, {rows} sample rows ({} .. {}) to {}\n",
        view.files.len(),
        bytes(view.total_bytes),
        days.len(),
        if days.len() == 1 { "" } else { "s" },
        view.since,
        view.until,
        view.out
    );
    if format == Format::Wide {
        for f in &view.files {
            out.push_str(&format!(
                "  {}  {} rows  {}  sha256:{}\n",
                f.path,
                f.rows,
                bytes(f.size_bytes),
                f.sha256
            ));
        }
    }
    Ok(out)
}

/// RFC 3339 of a Unix ns time, or the number when it has none.
pub fn time(unix_ns: i64) -> String {
    rfc3339(unix_ns).unwrap_or_else(|| unix_ns.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_fills_with_bytes_and_counts_files() {
        assert_eq!(
            bar_line(0, 10 * 1024 * 1024, 0, 7),
            "[........................]   0%  0B/10Mi  0/7 files"
        );
        assert_eq!(
            bar_line(5 * 1024 * 1024, 10 * 1024 * 1024, 3, 7),
            "[############............]  50%  5Mi/10Mi  3/7 files"
        );
        assert_eq!(
            bar_line(10, 10, 7, 7),
            "[########################] 100%  10B/10B  7/7 files"
        );
        assert_eq!(
            bar_line(0, 0, 0, 0).split(']').nth(1),
            Some(" 100%  0B/0B  0/0 files")
        );
    }

    #[test]
    fn a_bar_draws_on_one_line_and_erases_itself_and_none_draws_nothing() {
        let screen = Screen::default();
        let mut bar = ProgressBar::new(Some(Box::new(screen.clone())));
        bar.preparing(1, 1);
        bar.start(1, 100);
        bar.advance(100);
        bar.file_done();
        bar.finish();
        let text = String::from_utf8(screen.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert!(!text.contains('\n'), "{text:?}");
        assert!(text.contains("day 1/1"), "{text:?}");
        assert!(text.contains("100%  100B/100B  1/1 files"), "{text:?}");
        assert!(text.ends_with("\r\x1b[2K"), "{text:?}");
        let mut none = ProgressBar::new(None);
        none.start(1, 1);
        none.finish();
    }

    #[test]
    fn the_summary_is_one_line_or_the_whole_view() -> Result<(), CliError> {
        let view = ExportView {
            out: "/tmp/r".into(),
            since: "2024-05-01T00:00:00Z".into(),
            until: "2024-05-03T00:00:00Z".into(),
            files: vec![
                ExportedFileView {
                    path: "samples/date=2024-05-01/part-0.parquet".into(),
                    table: "samples".into(),
                    date: "2024-05-01".into(),
                    rows: 1440,
                    size_bytes: 2048,
                    sha256: "ab".repeat(32),
                },
                ExportedFileView {
                    path: "cost/date=2024-05-01/part-0.parquet".into(),
                    table: "cost".into(),
                    date: "2024-05-01".into(),
                    rows: 2,
                    size_bytes: 1024,
                    sha256: "cd".repeat(32),
                },
            ],
            total_bytes: 3072,
            notes: vec![],
        };
        assert_eq!(
            export(&view, Format::Table)?,
            "wrote 2 files (3Ki) for 1 day, 1440 sample rows (2024-05-01T00:00:00Z .. 2024-05-03T00:00:00Z) to /tmp/r\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&export(&view, Format::Json)?).map_err(|e| CliError::Encode {
                format: "json",
                cause: e.to_string(),
            })?;
        assert_eq!(json["files"][0]["rows"], 1440);
        assert_eq!(json["total_bytes"], 3072);
        Ok(())
    }
}
