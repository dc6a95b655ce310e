//! `Export`: the Parquet reports of a range, written by the same code as
//! the periodic reports (`crate::report::write_day`) into a scratch
//! directory, then streamed: progress while the days are written, then
//! `start` (file count, total bytes, notes), then each file's header (path,
//! rows, size, SHA-256) and its bytes in chunks of at most 1 MiB.
//!
//! The scratch directory (`.upid-export-*` beside the store) is removed
//! when the stream ends, whether it finished, failed or the client went
//! away.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use upid::wire::v1::{self, export_chunk::Kind};

use super::QueryObserver;
use super::pool::ReaderPool;
use crate::analysis::Analyzer;
use crate::import::format_ts;
use crate::report::schedule::{current_decisions, roll_up};
use crate::report::tables::Table;
use crate::report::{DAY_NS, WrittenFile, days_of, takes_updates, write_day};
use crate::store::Rollup;
use crate::updates::UpdateChecker;

/// Most days one export may span.
pub const MAX_EXPORT_DAYS: i64 = 366;

/// Largest data chunk.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// Prefix of an export's scratch directory.
pub const SCRATCH_PREFIX: &str = ".upid-export-";

/// The stream `Export` answers with.
pub type ExportStream = ReceiverStream<Result<v1::ExportChunk, Status>>;

/// What an export task needs from the query service.
pub(super) struct ExportParts {
    pub(super) pool: Arc<ReaderPool>,
    pub(super) analyzer: Arc<Analyzer>,
    pub(super) updates: Option<Arc<UpdateChecker>>,
    pub(super) rollup: Option<Arc<Mutex<Rollup>>>,
    pub(super) observer: Option<QueryObserver>,
    pub(super) scratch_dir: PathBuf,
    pub(super) chunk_bytes: usize,
}

/// A checked request: the range and the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Checked {
    since_unix_ns: i64,
    until_unix_ns: i64,
    tables: Vec<Table>,
}

/// Checks `r` against `now`; the error says what to give instead.
pub(super) fn check(r: &v1::ExportRequest, now_unix_ns: i64) -> Result<Checked, Status> {
    if r.since_unix_ns <= 0 {
        return Err(Status::invalid_argument(
            "since_unix_ns is required: the start of the range in Unix ns (> 0)",
        ));
    }
    if r.until_unix_ns < 0 {
        return Err(Status::invalid_argument(
            "until_unix_ns must be >= 0 (0: now)",
        ));
    }
    let until = if r.until_unix_ns == 0 {
        now_unix_ns
    } else {
        r.until_unix_ns
    };
    if r.since_unix_ns >= until {
        return Err(Status::invalid_argument(format!(
            "the range is empty: since ({}) is not before {} ({})",
            format_ts(r.since_unix_ns),
            if r.until_unix_ns == 0 { "now" } else { "until" },
            format_ts(until)
        )));
    }
    let days = (until - 1).div_euclid(DAY_NS) - r.since_unix_ns.div_euclid(DAY_NS) + 1;
    if days > MAX_EXPORT_DAYS {
        return Err(Status::invalid_argument(format!(
            "the range spans {days} days; export at most {MAX_EXPORT_DAYS} at a time"
        )));
    }
    let tables = Table::parse_list(&r.tables)
        .map_err(|e| Status::invalid_argument(format!("tables: {e}")))?;
    Ok(Checked {
        since_unix_ns: r.since_unix_ns,
        until_unix_ns: until,
        tables,
    })
}

fn chunk(kind: Kind) -> v1::ExportChunk {
    v1::ExportChunk { kind: Some(kind) }
}

/// Starts the export task; the stream ends with it.
pub(super) fn start(parts: ExportParts, checked: Checked, now_unix_ns: i64) -> ExportStream {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let started = Instant::now();
        let observer = parts.observer.clone();
        let outcome = run(parts, checked, now_unix_ns, tx.clone()).await;
        if let Some(observer) = observer {
            observer("Export", started.elapsed());
        }
        match outcome {
            Ok(Some((files, bytes))) => tracing::info!(
                files,
                bytes,
                took_ms = started.elapsed().as_millis() as u64,
                "export streamed"
            ),
            Ok(None) => tracing::info!("export abandoned: the client went away"),
            Err(status) => {
                tracing::warn!(code = ?status.code(), detail = status.message(), "export failed");
                let _ = tx.send(Err(status)).await;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Writes and streams; `Ok(None)` when the client went away.
async fn run(
    parts: ExportParts,
    checked: Checked,
    now_unix_ns: i64,
    tx: mpsc::Sender<Result<v1::ExportChunk, Status>>,
) -> Result<Option<(usize, u64)>, Status> {
    let Checked {
        since_unix_ns,
        until_unix_ns,
        tables,
    } = checked;
    roll_up(parts.rollup.as_ref()).await;
    let scratch = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(&parts.scratch_dir)
        .map_err(|e| {
            Status::internal(format!(
                "Export: creating a scratch directory in {}: {e}",
                parts.scratch_dir.display()
            ))
        })?;
    let days = days_of(since_unix_ns, until_unix_ns);
    let mut notes = Vec::new();
    let mut decisions = None;
    if tables.contains(&Table::Updates) {
        match days.last() {
            Some(last) if takes_updates(last, now_unix_ns) => {
                let inventory = match &parts.updates {
                    Some(_) => parts
                        .pool
                        .run("Export", |reader| reader.inventory())
                        .await
                        .map_err(|s| s.message().to_owned()),
                    None => Ok(Default::default()),
                };
                match current_decisions(parts.updates.as_ref(), inventory, now_unix_ns).await {
                    Ok(d) => decisions = Some(Arc::new(d)),
                    Err(why) => notes.push(format!("no updates table: {why}")),
                }
            }
            _ => notes.push(
                "no updates table: update decisions are about what runs now, so only a range \
                 reaching yesterday or today (UTC) gets them, in its last day"
                    .to_owned(),
            ),
        }
    }
    let total_days = u32::try_from(days.len()).unwrap_or(u32::MAX);
    let last = days.len().checked_sub(1);
    let mut files: Vec<WrittenFile> = Vec::new();
    for (i, day) in days.into_iter().enumerate() {
        let updates = decisions.clone().filter(|_| Some(i) == last);
        let (analyzer, dir, tables) = (
            parts.analyzer.clone(),
            scratch.path().to_path_buf(),
            tables.clone(),
        );
        let written = parts
            .pool
            .run("Export", move |reader| {
                Ok(write_day(
                    reader,
                    &analyzer,
                    &dir,
                    &day,
                    &tables,
                    updates.as_deref(),
                ))
            })
            .await?
            .map_err(|e| {
                tracing::error!(error = %e, "export: writing a day failed");
                Status::internal(format!("Export: {e}"))
            })?;
        files.extend(written);
        let progress = Kind::Progress(v1::ExportProgress {
            days_done: u32::try_from(i + 1).unwrap_or(u32::MAX),
            days_total: total_days,
        });
        if tx.send(Ok(chunk(progress))).await.is_err() {
            return Ok(None);
        }
    }
    if files.is_empty() {
        notes.push(format!(
            "no usage rows between {} and {}: nothing to export",
            format_ts(since_unix_ns),
            format_ts(until_unix_ns)
        ));
    }
    let dir = scratch.path().to_path_buf();
    let chunk_bytes = parts.chunk_bytes;
    let streamed = tokio::task::spawn_blocking(move || {
        stream_files(
            &dir,
            &files,
            chunk_bytes,
            v1::ExportStart {
                files: 0,
                total_bytes: 0,
                since_unix_ns,
                until_unix_ns,
                notes,
            },
            &tx,
        )
    })
    .await
    .map_err(|e| Status::internal(format!("Export: the streaming task failed: {e}")))?;
    drop(scratch);
    streamed
}

/// Size and SHA-256 (lowercase hex) of `path`.
fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        context.update(&buf[..n]);
    }
    let hex = context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

/// Hashes every file, then sends `start` and each file with its data
/// (blocking); `Ok(None)` when the client went away.
fn stream_files(
    dir: &Path,
    files: &[WrittenFile],
    chunk_bytes: usize,
    mut start: v1::ExportStart,
    tx: &mpsc::Sender<Result<v1::ExportChunk, Status>>,
) -> Result<Option<(usize, u64)>, Status> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Status::internal(format!("Export: {what} {}: {e}", path.display()))
    };
    let mut headers = Vec::with_capacity(files.len());
    for f in files {
        let path = dir.join(&f.relative);
        let (size_bytes, sha256) = digest(&path).map_err(|e| io("reading", &path, e))?;
        headers.push(v1::ExportFile {
            path: f.relative.to_string_lossy().into_owned(),
            table: f.table.name().to_owned(),
            date: f.date.clone(),
            rows: f.rows,
            size_bytes,
            sha256,
        });
    }
    let total_bytes: u64 = headers.iter().map(|h| h.size_bytes).sum();
    start.files = u32::try_from(headers.len()).unwrap_or(u32::MAX);
    start.total_bytes = total_bytes;
    if tx.blocking_send(Ok(chunk(Kind::Start(start)))).is_err() {
        return Ok(None);
    }
    let mut buf = vec![0u8; chunk_bytes.clamp(1, MAX_CHUNK_BYTES)];
    for header in headers {
        let path = dir.join(&header.path);
        let mut file = std::fs::File::open(&path).map_err(|e| io("opening", &path, e))?;
        if tx.blocking_send(Ok(chunk(Kind::File(header)))).is_err() {
            return Ok(None);
        }
        loop {
            let n = read_full(&mut file, &mut buf).map_err(|e| io("reading", &path, e))?;
            if n == 0 {
                break;
            }
            if tx
                .blocking_send(Ok(chunk(Kind::Data(buf[..n].to_vec()))))
                .is_err()
            {
                return Ok(None);
            }
        }
    }
    Ok(Some((files.len(), total_bytes)))
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Removes scratch directories a crashed collector left in `dir` (an
/// export's directory lives only as long as its stream; best effort).
pub fn remove_stale_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a stale export directory")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale export directory")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const NOW: i64 = 1_714_521_600 * 1_000_000_000 + 3_600 * 1_000_000_000;

    fn request(since: i64, until: i64, tables: &[&str]) -> v1::ExportRequest {
        v1::ExportRequest {
            since_unix_ns: since,
            until_unix_ns: until,
            tables: tables.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn export_requests_are_checked_with_messages_that_say_what_to_give() {
        let bad = |r: v1::ExportRequest| {
            let status = check(&r, NOW).err().unwrap_or_else(|| Status::ok(""));
            assert_eq!(status.code(), Code::InvalidArgument, "{r:?}");
            status.message().to_owned()
        };
        assert!(bad(request(0, 0, &[])).contains("since_unix_ns is required"));
        assert!(bad(request(-5, 0, &[])).contains("since_unix_ns is required"));
        assert!(
            bad(request(NOW, 0, &[]))
                .contains("the range is empty: since (2024-05-01T01:00:00Z) is not before now")
        );
        assert!(bad(request(NOW, NOW - 1, &[])).contains("is not before until"));
        assert!(bad(request(NOW - 1, -1, &[])).contains("until_unix_ns must be >= 0"));
        assert!(bad(request(NOW - 400 * DAY_NS, 0, &[])).contains("export at most 366"));
        assert!(
            bad(request(NOW - DAY_NS, 0, &["samples", "nope"])).contains("unknown table \"nope\"")
        );
        let ok = check(&request(NOW - DAY_NS, 0, &["cost"]), NOW);
        assert_eq!(
            ok.ok(),
            Some(Checked {
                since_unix_ns: NOW - DAY_NS,
                until_unix_ns: NOW,
                tables: vec![Table::Cost],
            })
        );
    }
}
