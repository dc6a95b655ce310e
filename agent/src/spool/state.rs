//! The spool's small state file: agent id, acked and next seq, drop totals.
//!
//! Text, one `key=value` a line, closed by a CRC-32 of everything before the
//! checksum line, padded to [`STATE_FILE_BYTES`]:
//!
//! ```text
//! # upid agent spool state; written by upid-agent, do not edit
//! version=1
//! agent_id=3f9c0e...(32 hex digits)
//! acked_seq=41
//! next_seq=57
//! dropped_batches=0
//! dropped_bytes=0
//! crc32=1a2b3c4d
//! ```
//!
//! Saving writes `state.tmp` in place, fsyncs it, renames it over `state`
//! and fsyncs the directory. Afterwards `state.tmp` is written again with the
//! same content: it is a backup copy, and because it already owns its disk
//! blocks the next save overwrites them instead of allocating, so the state
//! can still be saved when the disk is full.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the state file in the spool directory.
pub const STATE_FILE: &str = "state";
/// Name of the state file's write-ahead copy and backup.
pub const STATE_TMP_FILE: &str = "state.tmp";
/// Every state file is padded to this size so it can be rewritten in place.
pub const STATE_FILE_BYTES: usize = 512;

const HEADER_LINE: &str = "# upid agent spool state; written by upid-agent, do not edit\n";

/// A 128-bit random agent id.
pub(crate) type AgentId = [u8; 16];

/// What the state file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub agent_id: AgentId,
    pub acked_seq: u64,
    pub next_seq: u64,
    pub dropped_batches: u64,
    pub dropped_bytes: u64,
}

/// Lower-case hex of an agent id.
pub(crate) fn agent_id_hex(id: &AgentId) -> String {
    let mut s = String::with_capacity(32);
    for b in id {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn parse_agent_id(hex: &str) -> Option<AgentId> {
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// A new random agent id from `/dev/urandom`; if that cannot be read, from
/// std's randomly keyed hasher (itself seeded by the OS), mixed with the
/// time and process id.
pub(crate) fn new_agent_id() -> AgentId {
    let mut id = [0u8; 16];
    let urandom = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id));
    if urandom.is_ok() && id != [0u8; 16] {
        return id;
    }
    tracing::warn!("cannot read /dev/urandom; deriving the agent id from std's hasher keys");
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, half) in id.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

impl State {
    /// A fresh state for a new agent id.
    pub fn fresh(agent_id: AgentId) -> State {
        State {
            agent_id,
            acked_seq: 0,
            next_seq: 1,
            dropped_batches: 0,
            dropped_bytes: 0,
        }
    }

    /// The file content, padded to [`STATE_FILE_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        let body = format!(
            "{HEADER_LINE}version=1\nagent_id={}\nacked_seq={}\nnext_seq={}\ndropped_batches={}\ndropped_bytes={}\n",
            agent_id_hex(&self.agent_id),
            self.acked_seq,
            self.next_seq,
            self.dropped_batches,
            self.dropped_bytes,
        );
        let crc = crc32fast::hash(body.as_bytes());
        let mut out = format!("{body}crc32={crc:08x}\n").into_bytes();
        // The longest possible content (five u64 at 20 digits) is ~260
        // bytes, well within the padded size.
        if out.len() < STATE_FILE_BYTES {
            out.resize(STATE_FILE_BYTES, b' ');
        }
        out
    }

    /// Parses file content; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<State, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let crc_at = text
            .find("\ncrc32=")
            .ok_or_else(|| "no crc32 line (truncated?)".to_string())?
            + 1;
        let body = &text[..crc_at];
        let rest = &text[crc_at + "crc32=".len()..];
        let (crc_hex, padding) = rest.split_once('\n').unwrap_or((rest, ""));
        if !padding.trim().is_empty() {
            return Err("unexpected text after the crc32 line".to_string());
        }
        let stored = u32::from_str_radix(crc_hex.trim(), 16)
            .map_err(|_| format!("bad crc32 value {crc_hex:?}"))?;
        let actual = crc32fast::hash(body.as_bytes());
        if stored != actual {
            return Err(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
            ));
        }
        let mut version = None;
        let mut agent_id = None;
        let mut acked_seq = None;
        let mut next_seq = None;
        let mut dropped_batches = None;
        let mut dropped_bytes = None;
        for line in body.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line without `=`: {line:?}"))?;
            let num = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key} is not a number: {value:?}"))
            };
            match key {
                "version" => version = Some(num()?),
                "agent_id" => {
                    agent_id = Some(
                        parse_agent_id(value)
                            .ok_or_else(|| format!("agent_id is not 32 hex digits: {value:?}"))?,
                    )
                }
                "acked_seq" => acked_seq = Some(num()?),
                "next_seq" => next_seq = Some(num()?),
                "dropped_batches" => dropped_batches = Some(num()?),
                "dropped_bytes" => dropped_bytes = Some(num()?),
                // Unknown keys from a newer agent are ignored.
                _ => {}
            }
        }
        if version != Some(1) {
            return Err(format!("unsupported version {version:?}"));
        }
        let missing = |k: &str| format!("missing {k}");
        Ok(State {
            agent_id: agent_id.ok_or_else(|| missing("agent_id"))?,
            acked_seq: acked_seq.ok_or_else(|| missing("acked_seq"))?,
            next_seq: next_seq.ok_or_else(|| missing("next_seq"))?,
            dropped_batches: dropped_batches.ok_or_else(|| missing("dropped_batches"))?,
            dropped_bytes: dropped_bytes.ok_or_else(|| missing("dropped_bytes"))?,
        })
    }

    /// Field-wise maximum: every field only ever grows.
    fn merge(self, other: &State) -> State {
        State {
            agent_id: self.agent_id,
            acked_seq: self.acked_seq.max(other.acked_seq),
            next_seq: self.next_seq.max(other.next_seq),
            dropped_batches: self.dropped_batches.max(other.dropped_batches),
            dropped_bytes: self.dropped_bytes.max(other.dropped_bytes),
        }
    }
}

/// What loading the state found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// `state` was valid (and merged with a valid `state.tmp` of the same
    /// agent, which can be newer after a crash between write and rename).
    Ok(State),
    /// `state` was missing or invalid (`problem`), `state.tmp` was valid.
    FromBackup { state: State, problem: String },
    /// Neither file was usable; `problem` describes `state`, or is `None`
    /// when neither file existed.
    Unusable { problem: Option<String> },
}

fn read_state(path: &Path) -> Result<Option<State>, String> {
    match fs::read(path) {
        Ok(bytes) => State::decode(&bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Loads the state from `dir`, falling back to the backup copy.
pub(crate) fn load(dir: &Path) -> Loaded {
    let main_path = dir.join(STATE_FILE);
    let main = read_state(&main_path);
    let backup = read_state(&dir.join(STATE_TMP_FILE));
    match (main, backup) {
        (Ok(Some(m)), Ok(Some(b))) if b.agent_id == m.agent_id => Loaded::Ok(m.merge(&b)),
        (Ok(Some(m)), _) => Loaded::Ok(m),
        (Ok(None), Ok(Some(b))) => Loaded::FromBackup {
            state: b,
            problem: format!("{} is missing", main_path.display()),
        },
        (Err(problem), Ok(Some(b))) => Loaded::FromBackup {
            state: b,
            problem: format!("{}: {problem}", main_path.display()),
        },
        (Ok(None), Ok(None)) => Loaded::Unusable { problem: None },
        (Ok(None), Err(backup_problem)) => Loaded::Unusable {
            problem: Some(format!(
                "{} is missing and its backup {STATE_TMP_FILE}: {backup_problem}",
                main_path.display()
            )),
        },
        (Err(problem), _) => Loaded::Unusable {
            problem: Some(format!("{}: {problem}", main_path.display())),
        },
    }
}

/// Fsyncs a directory so renames, creations and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Saves `state` atomically into `dir` (see the module docs). Returns the
/// path that failed with the error.
pub(crate) fn save(dir: &Path, state: &State, fsync: bool) -> Result<(), (PathBuf, io::Error)> {
    let bytes = state.encode();
    let tmp = dir.join(STATE_TMP_FILE);
    let main = dir.join(STATE_FILE);
    write_in_place(&tmp, &bytes, fsync).map_err(|e| (tmp.clone(), e))?;
    fs::rename(&tmp, &main).map_err(|e| (main.clone(), e))?;
    if fsync {
        sync_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    }
    // The backup copy and next save's preallocated space. Best effort: the
    // state itself is already saved.
    if let Err(e) = write_in_place(&tmp, &bytes, false) {
        tracing::debug!(path = %tmp.display(), error = %e, "could not refresh the spool state backup");
    }
    Ok(())
}

fn write_in_place(path: &Path, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all_at(bytes, 0)?;
    if f.metadata()?.len() != bytes.len() as u64 {
        f.set_len(bytes.len() as u64)?;
    }
    if fsync {
        f.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            agent_id: [0xAB; 16],
            acked_seq: 41,
            next_seq: 57,
            dropped_batches: 3,
            dropped_bytes: 12_345,
        }
    }

    #[test]
    fn encodes_padded_and_round_trips() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(bytes.len(), STATE_FILE_BYTES);
        assert_eq!(State::decode(&bytes), Ok(s));
        let max = State {
            agent_id: [0xFF; 16],
            acked_seq: u64::MAX,
            next_seq: u64::MAX,
            dropped_batches: u64::MAX,
            dropped_bytes: u64::MAX,
        };
        assert_eq!(max.encode().len(), STATE_FILE_BYTES);
        assert_eq!(State::decode(&max.encode()), Ok(max));
    }

    #[test]
    fn rejects_damage() {
        let bytes = sample().encode();
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        let edited = text.replace("acked_seq=41", "acked_seq=42");
        assert!(State::decode(edited.as_bytes()).is_err());
        assert!(State::decode(&bytes[..100]).is_err());
        assert!(State::decode(b"").is_err());
        assert!(State::decode(&[0xFF, 0xFE, 0x00]).is_err());
    }

    #[test]
    fn agent_ids_are_hex_and_random() {
        let a = new_agent_id();
        let b = new_agent_id();
        assert_ne!(a, b);
        let hex = agent_id_hex(&a);
        assert_eq!(hex.len(), 32);
        assert_eq!(parse_agent_id(&hex), Some(a));
        assert_eq!(parse_agent_id("xyz"), None);
    }

    #[test]
    fn save_then_load_and_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load(dir.path()), Loaded::Unusable { .. }));
        save(dir.path(), &sample(), true).expect("save");
        match load(dir.path()) {
            Loaded::Ok(s) => assert_eq!(s, sample()),
            other => panic!("unexpected {other:?}"),
        }
        fs::write(dir.path().join(STATE_FILE), b"garbage").expect("corrupt");
        match load(dir.path()) {
            Loaded::FromBackup { state, problem } => {
                assert_eq!(state, sample());
                assert!(problem.contains("crc32"), "{problem}");
            }
            other => panic!("unexpected {other:?}"),
        }
        fs::remove_file(dir.path().join(STATE_TMP_FILE)).expect("rm");
        assert!(matches!(
            load(dir.path()),
            Loaded::Unusable { problem: Some(_) }
        ));
        fs::remove_file(dir.path().join(STATE_FILE)).expect("rm");
        assert!(matches!(
            load(dir.path()),
            Loaded::Unusable { problem: None }
        ));
    }
}
