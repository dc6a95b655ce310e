//! upid: what containers really use, what they waste, and which image
//! updates are safe to take.
//!
//! This crate is shared by every upid binary: the measurement model
//! ([`model`]), and the generated `upid.v1` wire types with their
//! conversions ([`wire`]). It never links DuckDB.

#![forbid(unsafe_code)]

pub mod cli;
pub mod model;
pub mod registry;
pub mod updates;
pub mod wire;
