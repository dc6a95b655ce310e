//! upid collector: receives agents' batches, stores them exactly once in
//! DuckDB, and answers queries over them.
//!
//! The data path, by module: [`config`] (flags, environment, YAML file) →
//! [`server`] (assembles and runs everything) → [`api`] (the gRPC services:
//! agents' ingest streams and the query API, guarded by [`auth`]) →
//! [`store`] (DuckDB schema, exactly-once ingest, the single writer thread,
//! and the read-side queries). [`standalone`] samples the collector's own
//! host; [`metrics`] renders `/metrics`.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod export;
pub mod import;
pub mod metrics;
pub mod report;
pub mod server;
pub mod standalone;
pub mod store;
pub mod updates;
