//! upid-agent: samples what every container on a node really uses, from
//! cgroups (v1, v2, hybrid) and `/proc`, cheaply enough to run everywhere.
//!
//! The data path, one module per step:
//! [`host`] (where the host's files are) → [`cgroup::mountinfo`] (layout) →
//! [`cgroup::discover`] + [`cgroup::identity`] (which cgroups are containers) →
//! [`cgroup::reader`] (v1/v2 counters, parsed by [`cgroup::parse`]) and
//! [`node`] / [`netns`] (`/proc`) → [`sampler`] (one [`upid::model::Snapshot`]
//! per tick) → [`rate`] and [`render`] (what `sample` and `top` print).

#![forbid(unsafe_code)]

pub mod cgroup;
pub mod cli;
pub mod host;
pub mod inventory;
pub mod netns;
pub mod node;
pub mod rate;
pub mod render;
pub mod sampler;
pub mod ship;
pub mod skips;
pub mod spool;
