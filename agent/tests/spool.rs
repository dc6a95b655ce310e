//! The agent's disk spool against real files in temporary directories: order,
//! restarts, a full spool, damage of every kind, a really full file system
//! (a tiny tmpfs, when running as root) and a model-based property test.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use upid_agent::spool::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use upid_agent::spool::{
    Damage, Repair, Spool, SpoolConfig, SpoolError, SpooledBatch, StateRecovery,
};

const HEADERS: u64 = RECORD_HEADER_BYTES + SEGMENT_HEADER_BYTES;

fn config(max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        max_bytes,
        segment_bytes,
        fsync: true,
    }
}

/// A recognisable payload: `len` bytes derived from `tag`.
fn payload(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8)
        .collect()
}

fn open(dir: &Path, cfg: SpoolConfig) -> (Spool, upid_agent::spool::RecoveryReport) {
    Spool::open(dir, cfg).expect("open spool")
}

/// Every unacknowledged batch, failing the test on any read error.
fn unacked(spool: &Spool) -> Vec<SpooledBatch> {
    spool
        .unacked()
        .collect::<Result<Vec<_>, _>>()
        .expect("replay without errors")
}

fn seqs(batches: &[SpooledBatch]) -> Vec<u64> {
    batches.iter().map(|b| b.seq).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn on_disk_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum()
}

/// Appends batches tagged by their expected seq, each `len` bytes.
fn append_n(spool: &mut Spool, n: u64, len: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let seq = spool.next_seq();
            let a = spool.append(&payload(seq, len)).expect("append");
            assert_eq!(a.seq, seq);
            a.seq
        })
        .collect()
}

fn assert_payloads_match(batches: &[SpooledBatch], len: usize) {
    for b in batches {
        assert_eq!(b.payload, payload(b.seq, len), "payload of seq {}", b.seq);
    }
}

#[test]
fn append_ack_and_replay_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, report) = open(dir.path(), SpoolConfig::default());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.state, StateRecovery::NewAgentId { problem: None });
    assert_eq!(spool.agent_id().len(), 32);
    assert!(spool.agent_id().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(spool.next_seq(), 1);

    assert_eq!(append_n(&mut spool, 5, 1000), vec![1, 2, 3, 4, 5]);
    let all = unacked(&spool);
    assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
    assert_payloads_match(&all, 1000);
    assert_eq!(spool.pending_batches(), 5);
    assert_eq!(spool.pending_bytes(), 5000);

    spool.ack(2).expect("ack 2");
    assert_eq!(seqs(&unacked(&spool)), vec![3, 4, 5]);
    assert_eq!(spool.pending_batches(), 3);
    assert_eq!(spool.pending_bytes(), 3000);
    assert_eq!(spool.acked_seq(), 2);

    // Older and repeated acks are harmless; acks are cumulative.
    spool.ack(1).expect("older ack");
    spool.ack(2).expect("repeated ack");
    spool.ack(0).expect("ack 0");
    assert_eq!(spool.acked_seq(), 2);

    // Acknowledging a seq never assigned is an error and changes nothing.
    match spool.ack(6) {
        Err(SpoolError::AckBeyondLast {
            seq: 6,
            last_assigned: 5,
        }) => {}
        other => panic!("expected AckBeyondLast, got {other:?}"),
    }
    assert_eq!(spool.pending_batches(), 3);

    // replay_from includes acknowledged batches still on disk.
    let from_two: Vec<u64> = spool
        .replay_from(2)
        .map(|b| b.expect("replay").seq)
        .collect();
    assert_eq!(from_two, vec![2, 3, 4, 5]);
    let from_four: Vec<u64> = spool
        .replay_from(4)
        .map(|b| b.expect("replay").seq)
        .collect();
    assert_eq!(from_four, vec![4, 5]);

    spool.ack(5).expect("ack all");
    assert!(unacked(&spool).is_empty());
    assert_eq!(spool.pending_batches(), 0);
    assert_eq!(spool.pending_bytes(), 0);
}

#[test]
fn restart_replays_exactly_the_unacked_batches_with_same_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small segments so the batches span several files.
    let cfg = config(1 << 20, 4096);
    let (mut spool, _) = open(dir.path(), cfg);
    let agent_id = spool.agent_id().to_string();
    append_n(&mut spool, 10, 1500);
    spool.ack(4).expect("ack");
    assert!(segment_files(dir.path()).len() > 2);
    drop(spool);

    let (mut spool, report) = open(dir.path(), cfg);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.state, StateRecovery::Loaded);
    assert_eq!(report.pending_batches, 6);
    assert_eq!(report.pending_bytes, 6 * 1500);
    assert_eq!(spool.agent_id(), agent_id);
    assert_eq!(spool.next_seq(), 11);
    assert_eq!(spool.acked_seq(), 4);
    let replay = unacked(&spool);
    assert_eq!(seqs(&replay), vec![5, 6, 7, 8, 9, 10]);
    assert_payloads_match(&replay, 1500);
    assert_eq!(spool.disk_bytes(), on_disk_bytes(dir.path()));

    // New batches continue the sequence, after the replayed ones.
    assert_eq!(append_n(&mut spool, 2, 1500), vec![11, 12]);
    assert_eq!(seqs(&unacked(&spool)), vec![5, 6, 7, 8, 9, 10, 11, 12]);
}

#[test]
fn seq_continues_after_everything_was_acked_and_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, 4096);
    let (mut spool, _) = open(dir.path(), cfg);
    let agent_id = spool.agent_id().to_string();
    append_n(&mut spool, 20, 1500);
    spool.ack(20).expect("ack all");
    // Only the active segment may remain, holding acknowledged batches.
    assert!(segment_files(dir.path()).len() <= 1);
    assert_eq!(spool.disk_bytes(), on_disk_bytes(dir.path()));
    drop(spool);

    let (mut spool, report) = open(dir.path(), cfg);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.pending_batches, 0);
    assert_eq!(spool.agent_id(), agent_id);
    assert_eq!(spool.next_seq(), 21);
    assert!(unacked(&spool).is_empty());
    assert_eq!(append_n(&mut spool, 1, 10), vec![21]);
    spool.ack(21).expect("ack");
    drop(spool);

    // Even with every segment gone, the state file remembers the seq.
    for f in segment_files(dir.path()) {
        fs::remove_file(f).expect("rm segment");
    }
    let (spool, report) = open(dir.path(), cfg);
    assert_eq!(report.state, StateRecovery::Loaded);
    assert_eq!(spool.agent_id(), agent_id);
    assert_eq!(spool.next_seq(), 22);
}

#[test]
fn lost_state_file_is_rebuilt_from_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, 4096);
    let (mut spool, _) = open(dir.path(), cfg);
    let agent_id = spool.agent_id().to_string();
    append_n(&mut spool, 8, 1500);
    spool.ack(3).expect("ack");
    drop(spool);
    fs::remove_file(dir.path().join("state")).expect("rm state");
    fs::remove_file(dir.path().join("state.tmp")).expect("rm backup");

    let (mut spool, report) = open(dir.path(), cfg);
    assert!(
        matches!(report.state, StateRecovery::FromSegments { .. }),
        "{:?}",
        report.state
    );
    assert!(report.damaged.is_empty());
    assert_eq!(
        spool.agent_id(),
        agent_id,
        "identity kept in segment headers"
    );
    assert_eq!(spool.next_seq(), 9);
    // The acked seq is lost, so acknowledged batches still on disk come
    // back too (the collector ignores them); nothing unacked is missing.
    let replay = seqs(&unacked(&spool));
    assert!(replay.ends_with(&[4, 5, 6, 7, 8]), "{replay:?}");
    assert_eq!(append_n(&mut spool, 1, 10), vec![9]);
}

#[test]
fn losing_state_and_all_segments_starts_a_new_agent_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, 4096);
    let (mut spool, _) = open(dir.path(), cfg);
    let old_id = spool.agent_id().to_string();
    append_n(&mut spool, 3, 100);
    drop(spool);
    for e in fs::read_dir(dir.path()).expect("read dir") {
        fs::remove_file(e.expect("entry").path()).expect("rm");
    }
    let (spool, report) = open(dir.path(), cfg);
    assert_ne!(spool.agent_id(), old_id);
    assert_eq!(spool.next_seq(), 1);
    assert!(matches!(report.state, StateRecovery::NewAgentId { .. }));
}

#[test]
fn corrupt_state_file_is_survived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, 4096);
    let (mut spool, _) = open(dir.path(), cfg);
    let agent_id = spool.agent_id().to_string();
    append_n(&mut spool, 6, 700);
    spool.ack(2).expect("ack");
    drop(spool);

    // A garbage state file: its backup copy takes over, nothing is lost.
    fs::write(dir.path().join("state"), b"\x00\xffnot a state file").expect("corrupt");
    let (spool, report) = open(dir.path(), cfg);
    assert!(
        matches!(report.state, StateRecovery::FromBackup { .. }),
        "{:?}",
        report.state
    );
    assert_eq!(spool.agent_id(), agent_id);
    assert_eq!(spool.acked_seq(), 2);
    assert_eq!(spool.next_seq(), 7);
    assert_eq!(seqs(&unacked(&spool)), vec![3, 4, 5, 6]);
    drop(spool);

    // Both copies damaged (one byte flipped in each): rebuilt from the
    // segments, with the same identity.
    for name in ["state", "state.tmp"] {
        let path = dir.path().join(name);
        let mut bytes = fs::read(&path).expect("read state");
        let at = bytes
            .windows(9)
            .position(|w| w == b"next_seq=")
            .expect("next_seq line");
        bytes[at + 9] ^= 0x01;
        fs::write(&path, bytes).expect("write state");
    }
    let (spool, report) = open(dir.path(), cfg);
    match &report.state {
        StateRecovery::FromSegments { problem } => {
            assert!(problem.contains("checksum"), "{problem}")
        }
        other => panic!("expected FromSegments, got {other:?}"),
    }
    assert_eq!(spool.agent_id(), agent_id);
    assert_eq!(spool.next_seq(), 7);
    assert!(seqs(&unacked(&spool)).ends_with(&[3, 4, 5, 6]));
}

#[test]
fn full_spool_drops_oldest_first_and_counts_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 8 KiB spool; segments are capped at an eighth of it (1 KiB), so each
    // holds 4 records of 200 bytes (32 + 4 × 220 = 912 bytes).
    let cfg = config(8192, 1 << 20);
    let (mut spool, _) = open(dir.path(), cfg);
    let len = 200usize;
    let mut total_batches = 0;
    let mut total_bytes = 0;
    let mut first_drop_at = None;
    for _ in 0..100 {
        let a = spool
            .append(&payload(spool.next_seq(), len))
            .expect("append");
        assert!(spool.disk_bytes() <= cfg.max_bytes);
        assert_eq!(spool.disk_bytes(), on_disk_bytes(dir.path()));
        if !a.dropped.is_empty() {
            first_drop_at.get_or_insert(a.seq);
            // Whole segments go: four batches at a time.
            assert_eq!(a.dropped.batches, 4, "at seq {}", a.seq);
            assert_eq!(a.dropped.bytes, 4 * len as u64);
        }
        total_batches += a.dropped.batches;
        total_bytes += a.dropped.bytes;
    }
    assert!(first_drop_at.is_some(), "the spool never filled up");
    assert_eq!(spool.dropped_total().batches, total_batches);
    assert_eq!(spool.dropped_total().bytes, total_bytes);
    // Oldest first: what is left is exactly the newest batches.
    let left = unacked(&spool);
    let expected: Vec<u64> = (total_batches + 1..=100).collect();
    assert_eq!(seqs(&left), expected);
    assert_payloads_match(&left, len);
    assert_eq!(spool.pending_batches() + total_batches, 100);

    // The count survives a restart.
    drop(spool);
    let (mut spool, report) = open(dir.path(), cfg);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(spool.dropped_total().batches, total_batches);
    assert_eq!(spool.dropped_total().bytes, total_bytes);
    assert_eq!(seqs(&unacked(&spool)), expected);

    // Acknowledged batches in a dropped segment are not counted as lost.
    let oldest = expected[0];
    spool
        .ack(oldest + 1)
        .expect("ack two of the oldest segment");
    let before = spool.dropped_total();
    let mut dropped = Default::default();
    while spool.dropped_total() == before {
        dropped = spool.append(&payload(0, len)).expect("append").dropped;
    }
    assert_eq!(dropped.batches, 2, "only the unacked part of that segment");
    assert_eq!(dropped.bytes, 2 * len as u64);
}

#[test]
fn too_large_batches_are_an_error_not_a_silent_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(4096, 1024);
    let (mut spool, _) = open(dir.path(), cfg);
    append_n(&mut spool, 3, 100);
    match spool.append(&vec![0u8; 4096]) {
        Err(e @ SpoolError::TooLarge { .. }) => {
            assert!(e.to_string().contains("4096"), "{e}");
            assert_eq!(e.unspooled_seq(), None);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let just_too_big = (cfg.max_bytes - HEADERS + 1) as usize;
    assert!(matches!(
        spool.append(&vec![0u8; just_too_big]),
        Err(SpoolError::TooLarge { .. })
    ));
    // No seq was used, nothing was dropped.
    assert_eq!(spool.next_seq(), 4);
    assert_eq!(spool.dropped_total().batches, 0);
    assert_eq!(seqs(&unacked(&spool)), vec![1, 2, 3]);

    // The largest batch that fits takes the whole spool.
    let biggest = (cfg.max_bytes - HEADERS) as usize;
    let a = spool.append(&vec![7u8; biggest]).expect("largest batch");
    assert_eq!(a.seq, 4);
    assert_eq!(a.dropped.batches, 3);
    assert_eq!(spool.disk_bytes(), cfg.max_bytes);
    assert_eq!(seqs(&unacked(&spool)), vec![4]);
}

#[test]
fn torn_last_record_is_truncated_and_only_it_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, 1 << 16);
    let (mut spool, _) = open(dir.path(), cfg);
    append_n(&mut spool, 5, 300);
    drop(spool);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let seg = &files[0];
    let len = fs::metadata(seg).expect("stat").len();
    // A crash mid-write: the last record lacks its last few bytes.
    fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .expect("open")
        .set_len(len - 3)
        .expect("truncate");

    let (mut spool, report) = open(dir.path(), cfg);
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    let d = &report.damaged[0];
    assert_eq!(&d.path, seg);
    assert_eq!(d.damage, Damage::TornTail);
    assert_eq!(d.repair, Repair::Truncated);
    assert_eq!(d.lost_records, 1);
    assert_eq!(d.lost_bytes, RECORD_HEADER_BYTES + 300 - 3);
    assert_eq!(report.lost_records(), 1);
    let replay = unacked(&spool);
    assert_eq!(seqs(&replay), vec![1, 2, 3, 4]);
    assert_payloads_match(&replay, 300);
    // The file was cut back to its last valid record.
    assert_eq!(
        fs::metadata(seg).expect("stat").len(),
        SEGMENT_HEADER_BYTES + 4 * (RECORD_HEADER_BYTES + 300)
    );
    // The torn record's seq is never handed out again.
    let a = spool.append(&payload(6, 300)).expect("append");
    assert_eq!(a.seq, 6);
    drop(spool);
    let (spool, report) = open(dir.path(), cfg);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(seqs(&unacked(&spool)), vec![1, 2, 3, 4, 6]);
}

#[test]
fn flipped_byte_in_a_middle_record_costs_only_that_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, 1 << 16);
    let (mut spool, _) = open(dir.path(), cfg);
    append_n(&mut spool, 5, 400);
    drop(spool);
    let seg = segment_files(dir.path()).remove(0);
    let mut bytes = fs::read(&seg).expect("read");
    // A byte in the payload of the third record.
    let third = (SEGMENT_HEADER_BYTES + 2 * (RECORD_HEADER_BYTES + 400)) as usize;
    bytes[third + RECORD_HEADER_BYTES as usize + 123] ^= 0x40;
    fs::write(&seg, &bytes).expect("write");

    let (spool, report) = open(dir.path(), cfg);
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    let d = &report.damaged[0];
    assert_eq!(d.path, seg);
    assert_eq!(d.damage, Damage::CorruptRecords);
    assert_eq!(d.repair, Repair::Rewritten);
    assert_eq!(d.lost_records, 1);
    assert_eq!(d.lost_bytes, RECORD_HEADER_BYTES + 400);
    let replay = unacked(&spool);
    assert_eq!(seqs(&replay), vec![1, 2, 4, 5]);
    assert_payloads_match(&replay, 400);
    assert_eq!(spool.next_seq(), 6);
    drop(spool);

    // The repair sticks: the loss is reported once, not on every open.
    let (spool, report) = open(dir.path(), cfg);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(seqs(&unacked(&spool)), vec![1, 2, 4, 5]);
}

#[test]
fn damaged_record_header_is_skipped_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, 1 << 16);
    let (mut spool, _) = open(dir.path(), cfg);
    append_n(&mut spool, 4, 50);
    drop(spool);
    let seg = segment_files(dir.path()).remove(0);
    let mut bytes = fs::read(&seg).expect("read");
    // Make record 2 claim a huge length.
    let second = (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 50) as usize;
    bytes[second + 7] = 0x40;
    fs::write(&seg, &bytes).expect("write");
    let (spool, report) = open(dir.path(), cfg);
    assert_eq!(report.lost_records(), 1, "{report:?}");
    assert_eq!(seqs(&unacked(&spool)), vec![1, 3, 4]);
}

#[test]
fn garbage_segment_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 4 records of 200 bytes per segment (segments capped at 1 KiB).
    let cfg = config(64 * 1024, 1024);
    let (mut spool, _) = open(dir.path(), cfg);
    append_n(&mut spool, 12, 200);
    drop(spool);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);

    // The middle segment's content replaced by garbage of the same size.
    let middle = &files[1];
    let size = fs::metadata(middle).expect("stat").len() as usize;
    let garbage: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
    fs::write(middle, &garbage).expect("garbage");
    // And a garbage file with a segment's name after all the others.
    let stray = dir.path().join("00000000000000000100.seg");
    fs::write(
        &stray,
        b"this is not a spool segment at all, just some junk",
    )
    .expect("stray");

    let (mut spool, report) = open(dir.path(), cfg);
    assert_eq!(report.damaged.len(), 2, "{report:?}");
    let d = &report.damaged[0];
    assert_eq!(&d.path, middle);
    assert_eq!(d.damage, Damage::BadHeader);
    assert_eq!(d.repair, Repair::Removed);
    assert_eq!(d.lost_records, 4, "seqs 5..=8, from the gap around it");
    assert_eq!(d.lost_bytes, size as u64);
    let s = &report.damaged[1];
    assert_eq!(s.path, stray);
    assert_eq!(s.damage, Damage::BadHeader);
    assert_eq!(s.repair, Repair::Removed);
    assert!(!middle.exists() && !stray.exists());

    let replay = unacked(&spool);
    assert_eq!(seqs(&replay), vec![1, 2, 3, 4, 9, 10, 11, 12]);
    assert_payloads_match(&replay, 200);
    // A file named for seq 100 means seq 100 may have been used.
    assert!(spool.next_seq() > 100);
    let a = spool.append(b"after").expect("append");
    assert!(a.seq > 100);
    drop(spool);
    let (_, report) = open(dir.path(), cfg);
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn unknown_files_in_the_directory_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("README"), b"hello").expect("write");
    let (mut spool, report) = open(dir.path(), SpoolConfig::default());
    assert!(report.damaged.is_empty());
    spool.append(b"x").expect("append");
    drop(spool);
    assert_eq!(fs::read(dir.path().join("README")).expect("read"), b"hello");
}

#[test]
fn bad_config_and_uncreatable_dir_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        Spool::open(dir.path(), config(10, 10)),
        Err(SpoolError::InvalidConfig(_))
    ));
    let file = dir.path().join("a-file");
    fs::write(&file, b"").expect("write");
    match Spool::open(file.join("spool"), SpoolConfig::default()) {
        Err(e @ SpoolError::CreateDir { .. }) => {
            assert!(e.to_string().contains("a-file"), "{e}")
        }
        other => panic!("expected CreateDir, got {other:?}"),
    }
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct TinyFs {
    mount_point: PathBuf,
    // Dropped after the unmount in `Drop`.
    _dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> Option<TinyFs> {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
        if euid.as_deref() != Some("0") {
            eprintln!("SKIP: disk-full spool test needs root to mount a tmpfs");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mount_point = dir.path().join("mnt");
        fs::create_dir(&mount_point).expect("mkdir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(TinyFs {
                mount_point,
                _dir: dir,
            }),
            Ok(o) => {
                eprintln!(
                    "SKIP: disk-full spool test cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIP: disk-full spool test cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

/// Writes to `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = fs::File::create(path).expect("create filler");
    let chunk = vec![0xEEu8; 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    // Whatever is buffered is already in the tmpfs; check it is full.
    let err = f.write_all(&chunk).and_then(|()| f.sync_all());
    assert!(err.is_err(), "the tmpfs did not fill up");
}

#[test]
fn disk_full_is_a_typed_error_and_the_spool_stays_consistent() {
    let Some(tiny) = TinyFs::mount("256k") else {
        return;
    };
    let dir = tiny.mount_point.join("spool");
    let cfg = config(1 << 20, 64 * 1024);
    let (mut spool, _) = open(&dir, cfg);
    append_n(&mut spool, 5, 10 * 1024);
    spool.ack(1).expect("ack");

    fill(&tiny.mount_point.join("filler"));
    for expected_seq in 6..=8 {
        let err = spool
            .append(&payload(expected_seq, 10 * 1024))
            .expect_err("append on a full disk");
        assert!(err.is_disk_full(), "{err:?}");
        assert_eq!(err.unspooled_seq(), Some(expected_seq));
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "error names the file: {err}"
        );
    }
    // Still consistent in memory and on disk.
    assert_eq!(spool.next_seq(), 9);
    assert_eq!(spool.pending_batches(), 4);
    assert_eq!(spool.disk_bytes(), on_disk_bytes(&dir));
    let replay = unacked(&spool);
    assert_eq!(seqs(&replay), vec![2, 3, 4, 5]);
    assert_payloads_match(&replay, 10 * 1024);
    // Acks still work on a full disk.
    spool.ack(2).expect("ack on a full disk");
    drop(spool);

    // Reopening on the full disk works, finds no damage, and does not hand
    // out the used-up seqs again.
    let (mut spool, report) = open(&dir, cfg);
    assert!(report.damaged.is_empty(), "{report:?}");
    assert_eq!(spool.acked_seq(), 2);
    assert_eq!(spool.next_seq(), 9);
    let replay = unacked(&spool);
    assert_eq!(seqs(&replay), vec![3, 4, 5]);
    assert_payloads_match(&replay, 10 * 1024);

    // Once there is room again, appends carry on.
    fs::remove_file(tiny.mount_point.join("filler")).expect("rm filler");
    let a = spool
        .append(&payload(9, 10 * 1024))
        .expect("append after space freed");
    assert_eq!(a.seq, 9);
    drop(spool);
    let (spool, report) = open(&dir, cfg);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(seqs(&unacked(&spool)), vec![3, 4, 5, 9]);
    drop(spool);
    drop(tiny);
}

#[test]
fn disk_full_while_starting_a_segment() {
    let Some(tiny) = TinyFs::mount("128k") else {
        return;
    };
    let dir = tiny.mount_point.join("spool");
    // One record per segment, so every append creates a file.
    let cfg = config(1 << 20, 64);
    let (mut spool, _) = open(&dir, cfg);
    append_n(&mut spool, 3, 2000);
    fill(&tiny.mount_point.join("filler"));
    let err = spool
        .append(&payload(4, 2000))
        .expect_err("append on a full disk");
    assert!(err.is_disk_full(), "{err:?}");
    assert_eq!(seqs(&unacked(&spool)), vec![1, 2, 3]);
    drop(spool);
    let (spool, report) = open(&dir, cfg);
    assert!(report.damaged.is_empty(), "{report:?}");
    assert_eq!(seqs(&unacked(&spool)), vec![1, 2, 3]);
    assert!(spool.next_seq() >= 5);
    drop(spool);
    drop(tiny);
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    /// Ack the model's acked seq plus this much (may go beyond the last).
    Ack(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..700).prop_map(Op::Append),
        3 => (0u64..8).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any sequence of appends, acks and restarts: the spool replays
    /// exactly what an in-memory model says is unacknowledged and not
    /// reported dropped, in order, with the payloads appended.
    #[test]
    fn replay_matches_a_model(
        ops in proptest::collection::vec(op(), 1..60),
        max_bytes in prop_oneof![Just(2048u64), Just(6000), Just(1 << 20)],
        segment_bytes in prop_oneof![Just(300u64), Just(1200), Just(1 << 16)],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = SpoolConfig { max_bytes, segment_bytes, fsync: false };
        let (mut spool, _) = Spool::open(dir.path(), cfg).expect("open");
        let agent_id = spool.agent_id().to_string();
        let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut next_seq = 1u64;
        let mut acked = 0u64;
        let mut dropped = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Append(len) => {
                    let p = payload(next_seq, len);
                    match spool.append(&p) {
                        Ok(a) => {
                            prop_assert!(HEADERS + len as u64 <= max_bytes);
                            prop_assert_eq!(a.seq, next_seq);
                            next_seq += 1;
                            let mut bytes = 0;
                            for _ in 0..a.dropped.batches {
                                let (_, p) = model.pop_front().expect("dropped more than pending");
                                bytes += p.len() as u64;
                            }
                            prop_assert_eq!(a.dropped.bytes, bytes);
                            dropped.0 += a.dropped.batches;
                            dropped.1 += a.dropped.bytes;
                            model.push_back((a.seq, p));
                        }
                        Err(SpoolError::TooLarge { .. }) => {
                            prop_assert!(HEADERS + len as u64 > max_bytes);
                        }
                        Err(e) => prop_assert!(false, "append failed: {e}"),
                    }
                }
                Op::Ack(delta) => {
                    let seq = acked + delta;
                    match spool.ack(seq) {
                        Ok(()) => {
                            prop_assert!(seq < next_seq);
                            acked = acked.max(seq);
                            while model.front().is_some_and(|(s, _)| *s <= acked) {
                                model.pop_front();
                            }
                        }
                        Err(SpoolError::AckBeyondLast { .. }) => prop_assert!(seq >= next_seq),
                        Err(e) => prop_assert!(false, "ack failed: {e}"),
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    let (s, report) = Spool::open(dir.path(), cfg).expect("reopen");
                    spool = s;
                    prop_assert!(report.is_clean(), "{:?}", report);
                    prop_assert_eq!(spool.agent_id(), agent_id.as_str());
                    prop_assert_eq!(spool.next_seq(), next_seq);
                    prop_assert_eq!(spool.acked_seq(), acked);
                }
            }
            let replay: Vec<(u64, Vec<u8>)> = spool
                .unacked()
                .map(|b| b.map(|b| (b.seq, b.payload)))
                .collect::<Result<_, _>>()
                .expect("replay");
            prop_assert_eq!(&replay, &model.iter().cloned().collect::<Vec<_>>());
            prop_assert_eq!(spool.pending_batches(), model.len() as u64);
            prop_assert_eq!(
                spool.pending_bytes(),
                model.iter().map(|(_, p)| p.len() as u64).sum::<u64>()
            );
            prop_assert_eq!(spool.dropped_total().batches, dropped.0);
            prop_assert_eq!(spool.dropped_total().bytes, dropped.1);
            prop_assert!(spool.disk_bytes() <= max_bytes);
            prop_assert_eq!(spool.disk_bytes(), on_disk_bytes(dir.path()));
        }
    }
}

#[derive(Debug, Clone)]
enum Harm {
    /// Flip one byte: (which segment file, which byte), both taken modulo.
    Flip(usize, u64),
    /// Cut this many bytes (modulo the last record's size, at least 1) off
    /// the newest segment: a torn last write.
    Tear(u64),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// One damaged byte or torn write anywhere: opening never fails, the
    /// replay is the model minus exactly what the report counts as lost,
    /// in order and with intact payloads, and no seq is handed out again.
    #[test]
    fn any_single_damage_is_survived_and_counted(
        lens in proptest::collection::vec(0usize..400, 1..25),
        ack_fraction in 0u64..4,
        segment_bytes in prop_oneof![Just(300u64), Just(1500), Just(1 << 16)],
        harm in prop_oneof![
            (any::<usize>(), any::<u64>()).prop_map(|(f, b)| Harm::Flip(f, b)),
            any::<u64>().prop_map(Harm::Tear),
        ],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = SpoolConfig { max_bytes: 1 << 20, segment_bytes, fsync: false };
        let (mut spool, _) = Spool::open(dir.path(), cfg).expect("open");
        let mut model = Vec::new();
        for len in &lens {
            let seq = spool.next_seq();
            let p = payload(seq, *len);
            spool.append(&p).expect("append");
            model.push((seq, p));
        }
        let acked = lens.len() as u64 * ack_fraction / 4;
        spool.ack(acked).expect("ack");
        let next_seq = spool.next_seq();
        drop(spool);

        let files = segment_files(dir.path());
        match harm {
            Harm::Flip(f, b) => {
                let path = &files[f % files.len()];
                let mut bytes = fs::read(path).expect("read");
                let at = (b % bytes.len() as u64) as usize;
                bytes[at] ^= 0x5A;
                fs::write(path, bytes).expect("write");
            }
            Harm::Tear(k) => {
                let last = model.last().map_or(0, |(_, p)| p.len() as u64) + RECORD_HEADER_BYTES;
                let cut = 1 + k % (last - 1);
                let path = files.last().expect("a segment");
                let len = fs::metadata(path).expect("stat").len();
                fs::OpenOptions::new().write(true).open(path).expect("open")
                    .set_len(len - cut).expect("truncate");
            }
        }

        let (spool, report) = Spool::open(dir.path(), cfg).expect("reopen after damage");
        let replay: Vec<(u64, Vec<u8>)> = spool
            .unacked()
            .map(|b| b.map(|b| (b.seq, b.payload)))
            .collect::<Result<_, _>>()
            .expect("replay");
        let unacked: Vec<(u64, Vec<u8>)> =
            model.iter().filter(|(s, _)| *s > acked).cloned().collect();
        // In order, intact, and a subsequence of the model.
        let mut it = unacked.iter();
        for r in &replay {
            prop_assert!(it.any(|m| m == r), "replayed {} not in the model", r.0);
        }
        prop_assert_eq!(
            unacked.len() as u64 - replay.len() as u64,
            report.lost_records(),
            "{:?}", report
        );
        prop_assert!(report.lost_records() <= 1);
        prop_assert!(spool.next_seq() >= next_seq);
        drop(spool);
        // Repaired: the next open is clean and replays the same.
        let (spool, report) = Spool::open(dir.path(), cfg).expect("third open");
        prop_assert!(report.damaged.is_empty(), "{:?}", report);
        let again: Vec<u64> = spool.unacked().map(|b| b.expect("replay").seq).collect();
        prop_assert_eq!(again, replay.iter().map(|r| r.0).collect::<Vec<_>>());
    }
}
