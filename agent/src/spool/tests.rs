//! Unit tests of the spool's internals: segment bookkeeping, deletion after
//! acks, and the write-failure path (which the integration tests reach only
//! on a real full disk).

use super::*;

fn cfg(max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        max_bytes,
        segment_bytes,
        fsync: false,
    }
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

fn replay_seqs(spool: &Spool) -> Vec<u64> {
    spool.unacked().map(|b| b.expect("replay").seq).collect()
}

#[test]
fn segments_roll_at_the_limit_and_bytes_add_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(dir.path(), cfg(1 << 20, 1000)).expect("open");
    for _ in 0..10 {
        spool.append(&[1u8; 280]).expect("append");
    }
    // 32 + 3 × 300 = 932 ≤ 1000 < 1232: three records per segment.
    assert_eq!(spool.segments.len(), 4);
    let per_segment: Vec<u64> = spool.segments.iter().map(|s| s.records).collect();
    assert_eq!(per_segment, vec![3, 3, 3, 1]);
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(spool.disk_bytes(), on_disk);
    assert_eq!(
        segment_files(dir.path())
            .iter()
            .map(|p| p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string())
            .collect::<Vec<_>>(),
        vec![
            "00000000000000000001.seg",
            "00000000000000000004.seg",
            "00000000000000000007.seg",
            "00000000000000000010.seg"
        ]
    );
}

#[test]
fn acks_delete_whole_segments_but_keep_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(dir.path(), cfg(1 << 20, 1000)).expect("open");
    for _ in 0..7 {
        spool.append(&[2u8; 280]).expect("append");
    }
    assert_eq!(segment_files(dir.path()).len(), 3);
    spool.ack(4).expect("ack");
    // Segment 1..=3 goes; 4..=6 is acked in part.
    assert_eq!(segment_files(dir.path()).len(), 2);
    let head = &spool.segments[0];
    assert_eq!((head.acked_records, head.pending_batches()), (1, 2));
    assert_eq!(replay_seqs(&spool), vec![5, 6, 7]);
    spool.ack(7).expect("ack all");
    // The active segment stays (it is appended to next)...
    assert_eq!(segment_files(dir.path()).len(), 1);
    spool.append(&[3u8; 280]).expect("append");
    spool.append(&[3u8; 280]).expect("append");
    spool.ack(9).expect("ack");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(spool.pending_bytes(), 0);
    // ...and goes once it is full and acknowledged: rolling deletes it.
    spool.append(&[3u8; 280]).expect("append");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(replay_seqs(&spool), vec![10]);
    assert_eq!(spool.pending_bytes(), 280);
}

#[test]
fn a_failed_write_is_undone_and_its_seq_stays_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(dir.path(), cfg(1 << 20, 1 << 16)).expect("open");
    spool.append(b"one").expect("append");
    spool.append(b"two").expect("append");
    let seg_path = spool.segments[0].path.clone();
    // Swap in a read-only handle: every write and truncate now fails.
    spool.active = Some(File::open(&seg_path).expect("open read-only"));
    let err = spool.append(b"three").expect_err("write must fail");
    assert_eq!(err.unspooled_seq(), Some(3));
    assert!(!err.is_disk_full());
    assert!(
        err.to_string().contains("00000000000000000001.seg"),
        "{err}"
    );
    // The handle could not truncate, so the segment was given up on and the
    // next append starts a new one.
    assert!(spool.active.is_none());
    let a = spool.append(b"four").expect("append after failure");
    assert_eq!(a.seq, 4);
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_eq!(replay_seqs(&spool), vec![1, 2, 4]);
    drop(spool);
    let (spool, report) = Spool::open(dir.path(), cfg(1 << 20, 1 << 16)).expect("reopen");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(replay_seqs(&spool), vec![1, 2, 4]);
    assert_eq!(spool.next_seq(), 5);
}

#[test]
fn recovery_deletes_segments_acked_before_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = cfg(1 << 20, 1000);
    let (mut spool, _) = Spool::open(dir.path(), config).expect("open");
    for _ in 0..7 {
        spool.append(&[4u8; 280]).expect("append");
    }
    // A crash right after the state recorded the ack, before any segment
    // was deleted.
    let mut st = spool.state.clone();
    st.acked_seq = 6;
    state::save(dir.path(), &st, false).expect("save");
    drop(spool);
    assert_eq!(segment_files(dir.path()).len(), 3);
    let (spool, report) = Spool::open(dir.path(), config).expect("reopen");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(replay_seqs(&spool), vec![7]);
    assert_eq!(spool.pending_batches(), 1);
}

#[test]
fn a_segment_from_another_agent_is_not_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = cfg(1 << 20, 1 << 16);
    let (mut spool, _) = Spool::open(dir.path(), config).expect("open");
    spool.append(b"mine").expect("append");
    drop(spool);
    // A segment written under another agent id (copied in by hand).
    let mut foreign = format::segment_header(&[9u8; 16]).to_vec();
    format::encode_record(50, b"theirs", &mut foreign);
    let path = dir.path().join(format::segment_file_name(50));
    fs::write(&path, &foreign).expect("write");
    let (spool, report) = Spool::open(dir.path(), config).expect("reopen");
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(
        report.damaged[0].damage,
        Damage::ForeignAgent {
            agent_id: "09".repeat(16)
        }
    );
    assert_eq!(report.damaged[0].lost_records, 1);
    assert!(!path.exists());
    assert_eq!(replay_seqs(&spool), vec![1]);
    assert_eq!(spool.next_seq(), 2);
}

#[test]
fn a_batch_larger_than_the_spool_is_counted_as_dropped_with_its_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(dir.path(), cfg(2048, 1024)).expect("open");
    spool.append(&[1u8; 100]).expect("append");
    let err = spool.append(&[0u8; 4096]).expect_err("too large");
    let SpoolError::TooLarge { payload_bytes, .. } = err else {
        panic!("expected TooLarge, got {err:?}");
    };
    spool.record_unspoolable(payload_bytes);
    assert_eq!(
        spool.next_seq(),
        3,
        "its seq is used up: the next batch is not taken for a duplicate"
    );
    assert_eq!(
        (spool.dropped_total().batches, spool.dropped_total().bytes),
        (1, 4096)
    );
    drop(spool);
    let (reopened, _) = Spool::open(dir.path(), cfg(2048, 1024)).expect("reopen");
    assert_eq!(
        reopened.dropped_total().batches,
        1,
        "the count survives a restart"
    );
    assert_eq!(reopened.next_seq(), 3, "and so does the used-up seq");
}

#[test]
fn a_spool_in_use_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = Spool::open(dir.path(), cfg(1 << 20, 1024)).expect("open");
    let err = Spool::open(dir.path(), cfg(1 << 20, 1024)).expect_err("second open");
    assert!(matches!(err, SpoolError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("--spool-dir"), "{err}");
    drop(first);
    Spool::open(dir.path(), cfg(1 << 20, 1024)).expect("free again once the first is closed");
}
