//! Reading a collector's DuckDB file after the collector exited, with plain
//! SQL, to check what was stored independently of the collector's queries.

use std::collections::BTreeMap;
use std::path::Path;

use duckdb::{AccessMode, Config, Connection};

/// Opens the store read-only (the collector must have exited).
pub fn open(path: &Path) -> Connection {
    let config = Config::default()
        .access_mode(AccessMode::ReadOnly)
        .expect("read-only config");
    Connection::open_with_flags(path, config)
        .unwrap_or_else(|e| panic!("opening the store {}: {e}", path.display()))
}

/// Runs a query that returns one integer.
pub fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs a query that returns one row of two integers.
pub fn count_pair(conn: &Connection, sql: &str) -> (i64, i64) {
    conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The stored batches' seqs per agent id, ascending, with the agent's node.
pub fn seqs_by_agent(conn: &Connection) -> BTreeMap<String, (String, Vec<u64>)> {
    let mut stmt = conn
        .prepare("SELECT agent_id, node_name, seq FROM batches ORDER BY agent_id, seq")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u64>(2)?,
            ))
        })
        .expect("query batches");
    let mut out: BTreeMap<String, (String, Vec<u64>)> = BTreeMap::new();
    for row in rows {
        let (agent, node, seq) = row.expect("row");
        out.entry(agent)
            .or_insert_with(|| (node, Vec::new()))
            .1
            .push(seq);
    }
    out
}
