//! upid collector: receives agents' batches, stores them exactly once in
//! DuckDB, and answers queries over them.
//!
//! The data path, by module: [`store`] (DuckDB schema, exactly-once ingest,
//! the single writer thread, and the read-side queries), [`api`] (the gRPC
//! services).

#![forbid(unsafe_code)]

pub mod api;
pub mod store;
