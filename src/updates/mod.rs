//! Safe image updates: what an image reference names, which newer tags
//! exist, what kind of change each one is, and whether policy takes it.
//!
//! Everything here is pure logic that needs no registry and no DuckDB, so
//! the CLI decides offline (`upid updates decide`) exactly as the collector
//! decides for everything running.

pub mod classify;
pub mod decide;
pub mod docker_apply;
pub mod event;
pub mod gate;
pub mod kube_apply;
pub mod policy;
pub mod reference;
pub mod tag;
