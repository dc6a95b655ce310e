//! The spool's on-disk format: segment files made of checksummed records.
//!
//! A segment file is named `<first seq, 20 digits>.seg` and holds:
//!
//! ```text
//! segment header (SEGMENT_HEADER_BYTES = 32)
//!   0..8    magic  b"UPIDSPL\x01" (format version 1)
//!   8..24   agent id, 16 raw bytes
//!   24..28  reserved, zero
//!   28..32  CRC-32 (IEEE) of bytes 0..28, little endian
//! then records, back to back (RECORD_HEADER_BYTES = 20 + payload)
//!   0..4    magic  b"UPR\x01"
//!   4..8    payload length in bytes, u32 little endian
//!   8..16   seq, u64 little endian
//!   16..20  CRC-32 (IEEE) of bytes 4..16 followed by the payload, little endian
//!   20..    payload
//! ```
//!
//! A record is valid when its magic matches, its length fits in the file, and
//! its checksum matches; the reader also requires sequence numbers to
//! increase. After a bad record the reader looks for the next record magic
//! whose record is valid, so one damaged record costs only itself.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes of the header at the start of every segment file.
pub const SEGMENT_HEADER_BYTES: u64 = 32;

/// Bytes of the header in front of every record's payload.
pub const RECORD_HEADER_BYTES: u64 = 20;

/// Suffix of segment file names (`00000000000000000042.seg`).
pub const SEGMENT_SUFFIX: &str = ".seg";

const SEGMENT_MAGIC: [u8; 8] = *b"UPIDSPL\x01";
const RECORD_MAGIC: [u8; 4] = *b"UPR\x01";

/// How far the resynchronising reader looks at once when hunting for the
/// next record after damage.
const RESYNC_WINDOW_BYTES: usize = 64 * 1024;

/// The 32-byte header of a segment written by `agent_id`.
pub(crate) fn segment_header(agent_id: &[u8; 16]) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..24].copy_from_slice(agent_id);
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The agent id in a segment header, or `None` if the bytes are not a valid
/// header.
pub(crate) fn parse_segment_header(h: &[u8]) -> Option<[u8; 16]> {
    if h.len() < SEGMENT_HEADER_BYTES as usize || h[0..8] != SEGMENT_MAGIC {
        return None;
    }
    let stored = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32fast::hash(&h[0..28]) != stored {
        return None;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[8..24]);
    Some(id)
}

/// File name of the segment whose first record is `first_seq`.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first seq encoded in a segment file name, if `name` is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn record_crc(len: &[u8], seq: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(seq);
    h.update(payload);
    h.finalize()
}

/// Appends the encoded record (header and payload) to `out`. The caller has
/// checked that `payload` fits in a `u32` length.
pub(crate) fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let seq = seq.to_le_bytes();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&seq);
    out.extend_from_slice(&record_crc(&len, &seq, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Where a valid record lies in its segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordAt {
    /// Offset of the record header in the file.
    pub offset: u64,
    /// The record's sequence number.
    pub seq: u64,
    /// Payload length in bytes.
    pub payload_bytes: u64,
}

impl RecordAt {
    /// Header plus payload.
    pub fn total_bytes(&self) -> u64 {
        RECORD_HEADER_BYTES + self.payload_bytes
    }

    /// Offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset + self.total_bytes()
    }
}

/// One step of a [`Scanner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// A valid record (checksum matched); its payload is in
    /// [`Scanner::payload`].
    Record(RecordAt),
    /// Bytes that hold no valid record, up to the next valid record or the
    /// end of the file.
    Damaged {
        /// Where the damage starts.
        offset: u64,
        /// How many bytes were skipped.
        bytes: u64,
    },
}

/// Reads records from a segment file between two offsets, validating each
/// one and skipping over damage. Reads with `pread`, so it never moves a
/// shared file cursor.
pub(crate) struct Scanner {
    file: File,
    pos: u64,
    end: u64,
    payload: Vec<u8>,
    window: Vec<u8>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scanner over `file` from offset `start` up to `end` (exclusive).
    pub fn new(file: File, start: u64, end: u64) -> Scanner {
        Scanner {
            file,
            pos: start,
            end,
            payload: Vec::new(),
            window: Vec::new(),
        }
    }

    /// The payload of the last [`Scanned::Record`] returned.
    #[cfg(test)]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Moves the payload of the last [`Scanned::Record`] out of the scanner.
    pub fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }

    /// The next valid record or damaged stretch; `None` at the end.
    pub fn next_item(&mut self) -> io::Result<Option<Scanned>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        if let Some(rec) = self.record_at(self.pos)? {
            self.pos = rec.end();
            return Ok(Some(Scanned::Record(rec)));
        }
        let start = self.pos;
        let resume = self.resync(start + 1)?.unwrap_or(self.end);
        self.pos = resume;
        Ok(Some(Scanned::Damaged {
            offset: start,
            bytes: resume - start,
        }))
    }

    /// The valid record starting exactly at `offset`, if there is one; its
    /// payload is left in `self.payload`.
    fn record_at(&mut self, offset: u64) -> io::Result<Option<RecordAt>> {
        let Some(room) = self.end.checked_sub(offset) else {
            return Ok(None);
        };
        if room < RECORD_HEADER_BYTES {
            return Ok(None);
        }
        let mut h = [0u8; RECORD_HEADER_BYTES as usize];
        self.file.read_exact_at(&mut h, offset)?;
        if h[0..4] != RECORD_MAGIC {
            return Ok(None);
        }
        let payload_bytes = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        if payload_bytes > room - RECORD_HEADER_BYTES {
            return Ok(None);
        }
        let Ok(len) = usize::try_from(payload_bytes) else {
            return Ok(None);
        };
        self.payload.clear();
        self.payload.resize(len, 0);
        self.file
            .read_exact_at(&mut self.payload, offset + RECORD_HEADER_BYTES)?;
        let stored = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
        if record_crc(&h[4..8], &h[8..16], &self.payload) != stored {
            return Ok(None);
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&h[8..16]);
        Ok(Some(RecordAt {
            offset,
            seq: u64::from_le_bytes(seq),
            payload_bytes,
        }))
    }

    /// The offset of the next valid record at or after `from`, if any.
    fn resync(&mut self, from: u64) -> io::Result<Option<u64>> {
        let magic_len = RECORD_MAGIC.len() as u64;
        let mut at = from;
        while at + RECORD_HEADER_BYTES <= self.end {
            let want = (self.end - at).min(RESYNC_WINDOW_BYTES as u64);
            let Ok(want) = usize::try_from(want) else {
                return Ok(None);
            };
            let mut window = std::mem::take(&mut self.window);
            window.clear();
            window.resize(want, 0);
            let read = self.file.read_exact_at(&mut window, at);
            let found = match read {
                Ok(()) => {
                    let mut found = None;
                    for (i, w) in window.windows(RECORD_MAGIC.len()).enumerate() {
                        if w == RECORD_MAGIC {
                            let candidate = at + i as u64;
                            if self.record_at(candidate)?.is_some() {
                                found = Some(candidate);
                                break;
                            }
                        }
                    }
                    Ok(found)
                }
                Err(e) => Err(e),
            };
            self.window = window;
            if let Some(offset) = found? {
                return Ok(Some(offset));
            }
            // Overlap by the magic's length so a magic split across two
            // windows is still seen.
            at += (want as u64).saturating_sub(magic_len - 1).max(1);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg");
        let mut f = File::create(&path).expect("create");
        f.write_all(bytes).expect("write");
        drop(f);
        let f = File::open(&path).expect("open");
        (dir, f, bytes.len() as u64)
    }

    fn scan_all(bytes: &[u8]) -> Vec<(Scanned, Vec<u8>)> {
        let (_dir, f, len) = file_with(bytes);
        let mut s = Scanner::new(f, 0, len);
        let mut out = Vec::new();
        while let Some(item) = s.next_item().expect("scan") {
            let payload = match item {
                Scanned::Record(_) => s.payload().to_vec(),
                Scanned::Damaged { .. } => Vec::new(),
            };
            out.push((item, payload));
        }
        out
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let id = [7u8; 16];
        let mut h = segment_header(&id);
        assert_eq!(parse_segment_header(&h), Some(id));
        h[10] ^= 1;
        assert_eq!(parse_segment_header(&h), None);
        assert_eq!(parse_segment_header(&h[..10]), None);
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg.tmp"),
            None
        );
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
    }

    #[test]
    fn reads_records_back() {
        let mut b = Vec::new();
        encode_record(1, b"one", &mut b);
        encode_record(2, b"", &mut b);
        encode_record(3, b"three", &mut b);
        let got = scan_all(&b);
        let seqs: Vec<_> = got
            .iter()
            .map(|(s, p)| match s {
                Scanned::Record(r) => (r.seq, p.clone()),
                Scanned::Damaged { .. } => (0, Vec::new()),
            })
            .collect();
        assert_eq!(
            seqs,
            vec![
                (1, b"one".to_vec()),
                (2, Vec::new()),
                (3, b"three".to_vec())
            ]
        );
    }

    #[test]
    fn skips_a_damaged_record_and_resyncs() {
        let mut b = Vec::new();
        encode_record(1, b"one", &mut b);
        let second = b.len();
        encode_record(2, &[0xAB; 300], &mut b);
        let third = b.len();
        encode_record(3, b"three", &mut b);
        b[second + 25] ^= 0xFF;
        let got = scan_all(&b);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1].0,
            Scanned::Damaged {
                offset: second as u64,
                bytes: (third - second) as u64
            }
        );
        assert!(matches!(got[2].0, Scanned::Record(RecordAt { seq: 3, .. })));
    }

    #[test]
    fn damaged_length_field_still_resyncs() {
        let mut b = Vec::new();
        encode_record(1, b"one", &mut b);
        let second = b.len();
        encode_record(2, b"two", &mut b);
        encode_record(3, b"three", &mut b);
        // Claim a huge payload for record 2.
        b[second + 7] = 0x7F;
        let got = scan_all(&b);
        let seqs: Vec<u64> = got
            .iter()
            .filter_map(|(s, _)| match s {
                Scanned::Record(r) => Some(r.seq),
                Scanned::Damaged { .. } => None,
            })
            .collect();
        assert_eq!(seqs, vec![1, 3]);
    }

    #[test]
    fn torn_tail_is_one_damaged_stretch_to_the_end() {
        let mut b = Vec::new();
        encode_record(1, b"one", &mut b);
        let second = b.len();
        encode_record(2, &[1u8; 100], &mut b);
        b.truncate(b.len() - 3);
        let got = scan_all(&b);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].0,
            Scanned::Damaged {
                offset: second as u64,
                bytes: (b.len() - second) as u64
            }
        );
    }

    #[test]
    fn finds_records_beyond_one_resync_window() {
        let mut b = vec![0x55u8; RESYNC_WINDOW_BYTES * 2 + 7];
        // A lone magic split across the window boundary must not confuse it.
        let split = RESYNC_WINDOW_BYTES - 2;
        b[split..split + 4].copy_from_slice(&RECORD_MAGIC);
        let good = b.len();
        encode_record(9, b"nine", &mut b);
        let got = scan_all(&b);
        assert_eq!(
            got[0].0,
            Scanned::Damaged {
                offset: 0,
                bytes: good as u64
            }
        );
        assert!(matches!(got[1].0, Scanned::Record(RecordAt { seq: 9, .. })));
    }
}
