//! Reading spooled batches back, in seq order, one record at a time.

use std::fs::File;

use super::format::{Scanned, Scanner};
use super::{Spool, SpoolError};

/// One spooled batch read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledBatch {
    /// The seq it was assigned when appended.
    pub seq: u64,
    /// The bytes that were appended.
    pub payload: Vec<u8>,
}

/// Iterator over spooled batches, oldest first, from
/// [`Spool::unacked`] or [`Spool::replay_from`].
///
/// Holds at most one segment file open and one payload in memory. Records
/// are validated again as they are read: an `Err` item reports a segment
/// that could not be read ([`SpoolError::Read`]; the iterator moves on to
/// the next segment) or bad bytes ([`SpoolError::Corrupt`]; skipped), and
/// iteration continues after it — only `None` ends it.
#[derive(Debug)]
pub struct Replay<'a> {
    spool: &'a Spool,
    from_seq: u64,
    next_segment: usize,
    /// The segment being read and its index.
    current: Option<(Scanner, usize)>,
    /// Highest seq yielded so far.
    last_seq: u64,
}

impl<'a> Replay<'a> {
    pub(super) fn new(spool: &'a Spool, from_seq: u64) -> Replay<'a> {
        Replay {
            spool,
            from_seq,
            next_segment: 0,
            current: None,
            last_seq: 0,
        }
    }
}

impl Iterator for Replay<'_> {
    type Item = Result<SpooledBatch, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let index = self.next_segment;
                let seg = self.spool.segments.get(index)?;
                self.next_segment += 1;
                if seg.records == 0 || seg.last_seq < self.from_seq {
                    continue;
                }
                // Everything before the ack cursor is acknowledged, so a
                // replay of unacknowledged batches can start there.
                let start = if self.from_seq > self.spool.state.acked_seq {
                    seg.ack_cursor
                } else {
                    seg.data_start
                };
                match File::open(&seg.path) {
                    Ok(file) => {
                        self.current = Some((Scanner::new(file, start, seg.file_bytes), index));
                    }
                    Err(source) => {
                        return Some(Err(SpoolError::Read {
                            path: seg.path.clone(),
                            source,
                        }));
                    }
                }
            }
            let (scanner, index) = self.current.as_mut()?;
            let path = || {
                self.spool
                    .segments
                    .get(*index)
                    .map(|s| s.path.clone())
                    .unwrap_or_default()
            };
            match scanner.next_item() {
                Ok(Some(Scanned::Record(r))) => {
                    if r.seq < self.from_seq || r.seq <= self.last_seq {
                        continue;
                    }
                    self.last_seq = r.seq;
                    return Some(Ok(SpooledBatch {
                        seq: r.seq,
                        payload: scanner.take_payload(),
                    }));
                }
                Ok(Some(Scanned::Damaged { offset, bytes })) => {
                    let path = path();
                    tracing::warn!(path = %path.display(), offset, bytes, "skipping bad bytes in spool segment");
                    return Some(Err(SpoolError::Corrupt {
                        path,
                        offset,
                        bytes,
                    }));
                }
                Ok(None) => self.current = None,
                Err(source) => {
                    let path = path();
                    self.current = None;
                    return Some(Err(SpoolError::Read { path, source }));
                }
            }
        }
    }
}
