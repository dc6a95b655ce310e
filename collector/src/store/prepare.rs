//! Batches made ready for the writer on the thread that received them.
//!
//! The one writer thread is the ingest's bottleneck, so everything about a
//! batch that does not need the store happens before it is queued, on the
//! gRPC runtime's threads ([`WriterHandle::submit`](super::WriterHandle::submit)):
//! validation, and the container samples turned into Arrow columns (every
//! column of `container_samples` except `container_sk`, which only the
//! writer can assign). What the writer still needs per sample to fold it
//! into the `containers` row (identity, timestamp, limits, OOM counter) is
//! moved out of the decoded message, not copied.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Int64Builder, StringBuilder, UInt64Builder};
use upid::wire::v1::{Batch, CgroupIdentity, ContainerSample};

use super::ingest::{HEAD_U64, RejectReason, TAIL_U64, validate};
use super::schema::names;

/// A batch as the writer takes it: checked, its container samples already
/// in columns. Make one with [`PreparedBatch::new`].
#[derive(Debug)]
pub struct PreparedBatch {
    /// The batch; its `snapshot.containers` moved into the fields below.
    pub(crate) batch: Batch,
    /// Why it cannot be stored, if so.
    pub(crate) verdict: Result<(), RejectReason>,
    /// What folding each container sample into `containers` needs, in order.
    pub(crate) samples: Vec<SampleFold>,
    /// Every `container_samples` column after `container_sk`, one row per
    /// entry of `samples` (empty when there are none).
    pub(crate) columns: Vec<ArrayRef>,
}

/// The parts of one container sample the `containers` row is folded from.
#[derive(Debug)]
pub(crate) struct SampleFold {
    pub identity: CgroupIdentity,
    pub timestamp_unix_ns: i64,
    pub cpu_limit_millicores: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// `None` when the sample had no memory stats.
    pub oom_kills: Option<u64>,
}

impl PreparedBatch {
    /// Checks `batch` and turns its container samples into columns.
    pub fn new(mut batch: Batch) -> PreparedBatch {
        let verdict = validate(&batch).map(|_| ());
        let containers = match (&verdict, batch.snapshot.as_mut()) {
            (Ok(()), Some(snapshot)) => std::mem::take(&mut snapshot.containers),
            _ => Vec::new(),
        };
        let mut columns = ValueColumns::with_capacity(containers.len());
        let mut samples = Vec::with_capacity(containers.len());
        for c in containers {
            columns.push(&c);
            let memory = c.memory.as_ref();
            samples.push(SampleFold {
                timestamp_unix_ns: c.timestamp_unix_ns,
                cpu_limit_millicores: c.cpu.as_ref().and_then(|x| x.limit_millicores),
                memory_limit_bytes: memory.and_then(|x| x.limit_bytes),
                oom_kills: memory.map(|x| x.oom_kills),
                // validate() checked that every sample has one.
                identity: c.identity.unwrap_or_default(),
            });
        }
        PreparedBatch {
            batch,
            verdict,
            columns: if samples.is_empty() {
                Vec::new()
            } else {
                columns.finish()
            },
            samples,
        }
    }

    /// The batch's agent.
    pub fn agent_id(&self) -> &str {
        &self.batch.agent_id
    }

    /// The batch's sequence number.
    pub fn seq(&self) -> u64 {
        self.batch.seq
    }
}

/// The `container_samples` columns after `container_sk` of one batch.
struct ValueColumns {
    ts: Int64Builder,
    head: [UInt64Builder; HEAD_U64],
    peak_source: StringBuilder,
    tail: [UInt64Builder; TAIL_U64],
}

impl ValueColumns {
    fn with_capacity(rows: usize) -> ValueColumns {
        ValueColumns {
            ts: Int64Builder::with_capacity(rows),
            head: std::array::from_fn(|_| UInt64Builder::with_capacity(rows)),
            peak_source: StringBuilder::with_capacity(rows, rows * 12),
            tail: std::array::from_fn(|_| UInt64Builder::with_capacity(rows)),
        }
    }

    fn push(&mut self, c: &ContainerSample) {
        let cpu = c.cpu.as_ref();
        let mem = c.memory.as_ref();
        let io = c.io.as_ref();
        let pids = c.pids.as_ref();
        let psi = c.pressure.as_ref();
        let psi_cpu = psi.and_then(|p| p.cpu.as_ref());
        let psi_mem = psi.and_then(|p| p.memory.as_ref());
        let psi_io = psi.and_then(|p| p.io.as_ref());
        self.ts.append_value(c.timestamp_unix_ns);
        let head = [
            cpu.map(|x| x.usage_ns),
            cpu.and_then(|x| x.user_ns),
            cpu.and_then(|x| x.system_ns),
            cpu.map(|x| x.periods),
            cpu.map(|x| x.throttled_periods),
            cpu.map(|x| x.throttled_ns),
            cpu.and_then(|x| x.limit_millicores),
            cpu.and_then(|x| x.shares),
            mem.map(|x| x.usage_bytes),
            mem.map(|x| x.working_set_bytes),
            mem.map(|x| x.rss_bytes),
            mem.map(|x| x.cache_bytes),
            mem.and_then(|x| x.swap_bytes),
            mem.and_then(|x| x.limit_bytes),
            mem.map(|x| x.peak_bytes),
        ];
        for (column, value) in self.head.iter_mut().zip(head) {
            column.append_option(value);
        }
        self.peak_source
            .append_option(mem.and_then(|x| names::peak_source(x.peak_source)));
        let tail = [
            mem.map(|x| x.oom_kills),
            io.map(|x| x.read_bytes),
            io.map(|x| x.write_bytes),
            io.map(|x| x.read_ops),
            io.map(|x| x.write_ops),
            pids.map(|x| x.current),
            pids.and_then(|x| x.limit),
            psi_cpu.map(|s| s.some_total_us),
            psi_cpu.and_then(|s| s.full_total_us),
            psi_mem.map(|s| s.some_total_us),
            psi_mem.and_then(|s| s.full_total_us),
            psi_io.map(|s| s.some_total_us),
            psi_io.and_then(|s| s.full_total_us),
            c.netns_inode,
        ];
        for (column, value) in self.tail.iter_mut().zip(tail) {
            column.append_option(value);
        }
    }

    /// The columns in table order.
    fn finish(mut self) -> Vec<ArrayRef> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(1 + HEAD_U64 + 1 + TAIL_U64);
        columns.push(Arc::new(self.ts.finish()));
        columns.extend(
            self.head
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.peak_source.finish()));
        columns.extend(
            self.tail
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns
    }
}

#[cfg(test)]
mod tests {
    use upid::wire::v1::{MemoryStats, NodeSample, Snapshot};

    use super::*;
    use crate::store::ingest::CONTAINER_SAMPLE_COLUMNS;

    fn batch(samples: Vec<ContainerSample>) -> Batch {
        Batch {
            agent_id: "a".into(),
            node_name: "n".into(),
            seq: 1,
            snapshot: Some(Snapshot {
                node: Some(NodeSample {
                    node_name: "n".into(),
                    timestamp_unix_ns: 1,
                    ..Default::default()
                }),
                containers: samples,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sample(id: &str, oom_kills: u64) -> ContainerSample {
        ContainerSample {
            identity: Some(CgroupIdentity {
                cgroup_path: format!("/docker/{id}"),
                container_id: id.into(),
                ..Default::default()
            }),
            timestamp_unix_ns: 5,
            memory: Some(MemoryStats {
                oom_kills,
                limit_bytes: Some(64),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn samples_become_every_column_but_the_surrogate_key() {
        let p = PreparedBatch::new(batch(vec![sample("x", 2), sample("y", 0)]));
        assert_eq!(p.verdict, Ok(()));
        assert_eq!(p.columns.len(), CONTAINER_SAMPLE_COLUMNS.len() - 1);
        assert!(p.columns.iter().all(|c| c.len() == 2));
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.samples[0].identity.container_id, "x");
        assert_eq!(p.samples[0].oom_kills, Some(2));
        assert_eq!(p.samples[1].memory_limit_bytes, Some(64));
        assert_eq!(p.samples[1].cpu_limit_millicores, None);
        // The samples were moved out of the message, not copied.
        assert!(
            p.batch
                .snapshot
                .as_ref()
                .is_some_and(|s| s.containers.is_empty())
        );
    }

    #[test]
    fn a_rejected_batch_keeps_its_reason_and_no_rows() {
        let mut bad = sample("x", 0);
        bad.identity = None;
        let p = PreparedBatch::new(batch(vec![sample("y", 0), bad]));
        assert_eq!(
            p.verdict,
            Err(RejectReason::ContainerWithoutIdentity { index: 1 })
        );
        assert!(p.samples.is_empty() && p.columns.is_empty());
        let empty = PreparedBatch::new(batch(Vec::new()));
        assert_eq!(empty.verdict, Ok(()));
        assert!(empty.columns.is_empty());
    }
}
