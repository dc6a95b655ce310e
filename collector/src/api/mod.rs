//! The collector's gRPC services and what they share.
//!
//! - [`agent`]: `upid.v1.AgentService`, the agents' ingest streams.
//! - [`query`]: `upid.v1.QueryService` over the store's [`Reader`](crate::store::Reader).
//! - [`unzstd`]: decompresses the agents' zstd messages with one context
//!   per stream, in front of `AgentService`.
//!
//! [`ServerFacts`] and [`ConnectedAgents`] are what the ingest side knows
//! that the query side reports (who is connected, TLS, auth).

pub mod agent;
pub mod query;
pub mod unzstd;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Facts about the running server that `GetServerInfo` and `ListNodes`
/// report.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// When the collector started (collector clock).
    pub started_unix_ns: i64,
    /// Path of the DuckDB file (empty for an in-memory store).
    pub store_path: String,
    /// Whether the gRPC listener uses TLS.
    pub tls: bool,
    /// Whether callers must present a bearer token.
    pub auth_required: bool,
    /// Agents with an open ingest stream.
    pub connected: Arc<ConnectedAgents>,
}

/// The agents with an open ingest stream right now, by agent id (an agent
/// may briefly hold two streams while reconnecting).
#[derive(Debug, Default)]
pub struct ConnectedAgents {
    streams: Mutex<HashMap<String, usize>>,
}

impl ConnectedAgents {
    /// Records that `agent_id` opened a stream until the returned guard
    /// is dropped.
    pub fn hold(self: &Arc<Self>, agent_id: &str) -> ConnectedGuard {
        self.connect(agent_id);
        ConnectedGuard {
            connected: self.clone(),
            agent_id: agent_id.to_owned(),
        }
    }

    /// Records that `agent_id` opened a stream.
    pub fn connect(&self, agent_id: &str) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        *streams.entry(agent_id.to_owned()).or_default() += 1;
    }

    /// Records that one of `agent_id`'s streams ended.
    pub fn disconnect(&self, agent_id: &str) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = streams.get_mut(agent_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                streams.remove(agent_id);
            }
        }
    }

    /// Whether `agent_id` has an open stream.
    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(agent_id)
    }

    /// How many distinct agents have an open stream.
    pub fn count(&self) -> usize {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Keeps an agent counted as connected while it lives (see
/// [`ConnectedAgents::hold`]).
#[derive(Debug)]
pub struct ConnectedGuard {
    connected: Arc<ConnectedAgents>,
    agent_id: String,
}

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.connected.disconnect(&self.agent_id);
    }
}
