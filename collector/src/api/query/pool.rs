//! A small pool of store readers that runs each query on tokio's blocking
//! threads.
//!
//! DuckDB connections are synchronous: a query holds its thread until it
//! finishes. So every query runs in [`tokio::task::spawn_blocking`], never
//! on the async runtime, each on a reader (its own DuckDB connection) of its
//! own, so concurrent queries run in parallel instead of queueing behind one
//! connection. A semaphore bounds the queries running at once to the number
//! of readers; further callers wait for one to come free.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::status::query_status;
use crate::store::{QueryError, Reader};

/// Readers shared by the query service's handlers.
#[derive(Debug)]
pub(super) struct ReaderPool {
    readers: Vec<Arc<Reader>>,
    free: Arc<Mutex<Vec<usize>>>,
    permits: Arc<Semaphore>,
}

/// A reader taken from the pool; given back when dropped (also when the
/// query panicked).
struct Lease {
    index: usize,
    free: Arc<Mutex<Vec<usize>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.index);
    }
}

impl ReaderPool {
    /// `first` plus `size - 1` clones of it (at least one reader in all).
    pub(super) fn new(first: Reader, size: usize) -> Result<ReaderPool, QueryError> {
        let size = size.max(1);
        let mut readers = Vec::with_capacity(size);
        for _ in 1..size {
            readers.push(Arc::new(first.try_clone()?));
        }
        readers.push(Arc::new(first));
        Ok(ReaderPool {
            free: Arc::new(Mutex::new((0..size).collect())),
            permits: Arc::new(Semaphore::new(size)),
            readers,
        })
    }

    /// Any reader, for what does not use its connection (file sizes).
    pub(super) fn any(&self) -> Option<Arc<Reader>> {
        self.readers.first().cloned()
    }

    /// Runs `query` on a free reader in a blocking thread and maps its error
    /// to a gRPC status (see [`query_status`]); `method` names the RPC in
    /// statuses and logs.
    pub(super) async fn run<T, F>(&self, method: &'static str, query: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> Result<T, QueryError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the query service is shutting down"))?;
        // Holding a permit guarantees a free index; 0 is a harmless fallback
        // (a reader serializes its own queries behind its mutex).
        let index = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or(0);
        let lease = Lease {
            index,
            free: Arc::clone(&self.free),
            _permit: permit,
        };
        let reader = self
            .readers
            .get(index)
            .or_else(|| self.readers.first())
            .cloned()
            .ok_or_else(|| Status::internal(format!("{method}: no store reader")))?;
        // The lease moves into the blocking task: if the caller goes away
        // mid-query, the reader stays taken until DuckDB is done with it.
        let joined = tokio::task::spawn_blocking(move || {
            let _lease = lease;
            query(&reader)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|e| query_status(method, e)),
            Err(e) => {
                tracing::error!(method, error = %e, "query task failed");
                Err(Status::internal(format!(
                    "{method}: the query task failed ({e}); see the collector's log"
                )))
            }
        }
    }
}
