//! `upid export`: asks the collector's `Export` for the Parquet reports of
//! a range and writes each file under `--out` as the collector announced
//! it (path, size, SHA-256): into a hidden temporary file beside its
//! destination, checked, fsynced, renamed into place, the directory
//! fsynced. A file that does not match its announcement is never renamed
//! into place; files completed before it stay.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::cli::Output;
use crate::cli::args::{ExportArgs, Format};
use crate::cli::commands::Session;
use crate::cli::error::CliError;
use crate::cli::render;
use crate::cli::render::export::{ExportView, ExportedFileView, ProgressBar, time};
use crate::wire::v1::{self, export_chunk::Kind};

/// The range `upid export` asks for, checked before connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRange {
    /// Start, Unix ns.
    pub since_unix_ns: i64,
    /// End (exclusive), Unix ns; 0: the collector's now.
    pub until_unix_ns: i64,
}

/// `--since`/`--until` against `now`; an empty range is the user's to fix.
pub fn export_range(args: &ExportArgs, now_unix_ns: i64) -> Result<ExportRange, CliError> {
    let since = args.since.resolve(now_unix_ns);
    let until = args.until.map_or(0, |t| t.resolve(now_unix_ns));
    let end = if until > 0 { until } else { now_unix_ns };
    if since <= 0 || since >= end {
        return Err(CliError::BadFlag {
            flag: "--since/--until",
            reason: format!(
                "--since ({}) is not before {} ({})",
                time(since),
                if until > 0 { "--until" } else { "now" },
                time(end)
            ),
        });
    }
    Ok(ExportRange {
        since_unix_ns: since,
        until_unix_ns: until,
    })
}

fn failed(message: String) -> CliError {
    CliError::Export { message }
}

/// Checks that a path the collector sent stays inside `--out`:
/// relative, plain names only (no `..`, no hidden names), ending in
/// `.parquet`.
pub fn safe_relative(path: &str) -> Result<PathBuf, CliError> {
    let refuse = |why: &str| {
        failed(format!(
            "the collector sent the file path {path:?}, which {why}; nothing was written for it"
        ))
    };
    if path.is_empty() || path.starts_with('/') {
        return Err(refuse("is not a relative path"));
    }
    let mut relative = PathBuf::new();
    for name in path.split('/') {
        if name.is_empty() || name == "." || name == ".." {
            return Err(refuse("leaves the output directory"));
        }
        let plain = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '.'));
        if !plain || name.starts_with('.') {
            return Err(refuse("has a name upid does not write"));
        }
        relative.push(name);
    }
    if !path.ends_with(".parquet") {
        return Err(refuse("is not a Parquet file"));
    }
    Ok(relative)
}

/// The file being received.
struct Incoming {
    header: v1::ExportFile,
    dest: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    received: u64,
    digest: ring::digest::Context,
}

/// Writes what the stream carries under `out`.
pub struct ExportSink {
    out: PathBuf,
    announced: Option<v1::ExportStart>,
    current: Option<Incoming>,
    done: Vec<ExportedFileView>,
}

impl Drop for ExportSink {
    fn drop(&mut self) {
        if let Some(incoming) = self.current.take() {
            let _ = std::fs::remove_file(&incoming.tmp);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed(format!("syncing the directory {}: {e}", dir.display())))
}

impl ExportSink {
    /// A sink writing under `out` (created when missing).
    pub fn new(out: &Path) -> Result<ExportSink, CliError> {
        std::fs::create_dir_all(out)
            .map_err(|e| failed(format!("creating --out {}: {e}", out.display())))?;
        Ok(ExportSink {
            out: out.to_path_buf(),
            announced: None,
            current: None,
            done: Vec::new(),
        })
    }

    /// The collector's `start`: what is coming.
    pub fn start(&mut self, start: v1::ExportStart) -> Result<(), CliError> {
        if self.announced.is_some() {
            return Err(failed("the collector announced the files twice".into()));
        }
        self.announced = Some(start);
        Ok(())
    }

    /// A file's header: finishes the previous file, opens this one's
    /// temporary file.
    pub fn begin(&mut self, header: v1::ExportFile) -> Result<(), CliError> {
        self.complete()?;
        if self.announced.is_none() {
            return Err(failed(
                "the collector sent a file before announcing them".into(),
            ));
        }
        let relative = safe_relative(&header.path)?;
        let dest = self.out.join(&relative);
        let dir = dest.parent().unwrap_or(&self.out).to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| failed(format!("creating {}: {e}", dir.display())))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp)
            .map_err(|e| failed(format!("creating {}: {e}", tmp.display())))?;
        self.current = Some(Incoming {
            header,
            dest,
            tmp,
            file,
            received: 0,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
        });
        Ok(())
    }

    /// The next bytes of the current file.
    pub fn data(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        let Some(incoming) = self.current.as_mut() else {
            return Err(failed(
                "the collector sent data before a file header".into(),
            ));
        };
        let received = incoming.received + bytes.len() as u64;
        if received > incoming.header.size_bytes {
            return Err(failed(format!(
                "{}: more bytes arrived ({received}) than announced ({})",
                incoming.header.path, incoming.header.size_bytes
            )));
        }
        incoming
            .file
            .write_all(bytes)
            .map_err(|e| failed(format!("writing {}: {e}", incoming.tmp.display())))?;
        incoming.digest.update(bytes);
        incoming.received = received;
        Ok(())
    }

    /// Checks and publishes the current file, if any.
    fn complete(&mut self) -> Result<(), CliError> {
        let Some(incoming) = self.current.take() else {
            return Ok(());
        };
        let Incoming {
            header,
            dest,
            tmp,
            file,
            received,
            digest,
        } = incoming;
        let checked = (|| {
            if received != header.size_bytes {
                return Err(failed(format!(
                    "{}: {received} bytes arrived, {} were announced (the stream ended early)",
                    header.path, header.size_bytes
                )));
            }
            let sha256: String = digest
                .finish()
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if !sha256.eq_ignore_ascii_case(&header.sha256) {
                return Err(failed(format!(
                    "{}: SHA-256 {sha256} does not match the announced {} (corrupted in transit); it was not written",
                    header.path, header.sha256
                )));
            }
            file.sync_all()
                .map_err(|e| failed(format!("syncing {}: {e}", tmp.display())))?;
            drop(file);
            std::fs::rename(&tmp, &dest)
                .map_err(|e| failed(format!("renaming into {}: {e}", dest.display())))?;
            Ok(())
        })();
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
        self.done.push(ExportedFileView {
            path: header.path,
            table: header.table,
            date: header.date,
            rows: header.rows,
            size_bytes: header.size_bytes,
            sha256: header.sha256,
        });
        Ok(())
    }

    /// The stream ended: completes the last file and checks that every
    /// announced file arrived.
    pub fn finish(mut self) -> Result<(v1::ExportStart, Vec<ExportedFileView>), CliError> {
        self.complete()?;
        let Some(start) = self.announced.take() else {
            return Err(failed(
                "the collector ended the export without announcing any file".into(),
            ));
        };
        if self.done.len() != start.files as usize {
            return Err(failed(format!(
                "{} of the {} announced files arrived (the stream ended early)",
                self.done.len(),
                start.files
            )));
        }
        Ok((start, std::mem::take(&mut self.done)))
    }
}

impl Session {
    /// Reads the stream into `sink` until it ends.
    async fn receive(
        &self,
        stream: &mut tonic::Streaming<v1::ExportChunk>,
        sink: &mut ExportSink,
        bar: &mut ProgressBar,
    ) -> Result<(), CliError> {
        loop {
            let message = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(status) => {
                    return Err(self
                        .settings
                        .explain(self.settings.status_error("Export", &status, None))
                        .await);
                }
            };
            match message.kind {
                Some(Kind::Progress(p)) => bar.preparing(p.days_done, p.days_total),
                Some(Kind::Start(s)) => {
                    bar.start(s.files, s.total_bytes);
                    sink.start(s)?;
                }
                Some(Kind::File(f)) => {
                    let had_file = sink.current.is_some();
                    sink.begin(f)?;
                    if had_file {
                        bar.file_done();
                    }
                }
                Some(Kind::Data(d)) => {
                    sink.data(&d)?;
                    bar.advance(d.len() as u64);
                }
                None => {}
            }
        }
        if sink.current.is_some() {
            sink.complete()?;
            bar.file_done();
        }
        Ok(())
    }

    /// `upid export`.
    pub async fn export(
        &self,
        args: &ExportArgs,
        range: ExportRange,
        format: Format,
    ) -> Result<Output, CliError> {
        let request = v1::ExportRequest {
            since_unix_ns: range.since_unix_ns,
            until_unix_ns: range.until_unix_ns,
            tables: args.tables.iter().map(|t| t.name().to_owned()).collect(),
        };
        let r = self.conn.query().export(request).await;
        let mut stream = self.answer("Export", r, None).await?;
        let mut sink = ExportSink::new(&args.out)?;
        let mut bar = ProgressBar::on_stderr_if_terminal();
        let received = self.receive(&mut stream, &mut sink, &mut bar).await;
        bar.finish();
        received?;
        let (start, files) = sink.finish()?;
        let view = ExportView {
            out: args.out.display().to_string(),
            since: time(start.since_unix_ns),
            until: time(start.until_unix_ns),
            total_bytes: files.iter().map(|f| f.size_bytes).sum(),
            files,
            notes: start.notes,
        };
        let stdout = render::export::export(&view, format)?;
        let stderr = if matches!(format, Format::Table | Format::Wide) {
            view.notes.iter().map(|n| format!("note: {n}\n")).collect()
        } else {
            String::new()
        };
        Ok(Output {
            stdout,
            stderr,
            success: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_collector_must_stay_inside_out() {
        assert_eq!(
            safe_relative("samples/date=2024-05-01/part-0.parquet").ok(),
            Some(PathBuf::from("samples/date=2024-05-01/part-0.parquet"))
        );
        for bad in [
            "",
            "/etc/passwd.parquet",
            "../up.parquet",
            "samples/../../x.parquet",
            "samples/./x.parquet",
            "samples/.hidden.parquet",
            "samples/date=2024-05-01/part-0.csv",
            "samples/a b.parquet",
        ] {
            let e = safe_relative(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.starts_with("upid export: the collector sent the file path"),
                "{bad}: {e}"
            );
        }
    }
}
