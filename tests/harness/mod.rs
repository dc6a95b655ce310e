//! The pieces collector end-to-end tests are made of: real `upid-collector`
//! and `upid-agent` processes on loopback, their output and `/metrics`,
//! gRPC clients, certificates, and the DuckDB file read back with SQL.

pub mod agent;
pub mod collector;
pub mod grpc;
pub mod images;
pub mod metrics;
pub mod pki;
pub mod process;
pub mod registry;
pub mod store;

pub use agent::{AgentCmd, SpoolFacts, agent, spool_facts};
pub use collector::{Collector, CollectorCmd, serve, standalone};
pub use metrics::Metrics;
pub use process::{Proc, Stream};

/// A TCP port on 127.0.0.1 that was free a moment ago (for a server that
/// must come back on the same port, or an address where nothing listens).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}
