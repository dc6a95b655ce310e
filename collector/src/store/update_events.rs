//! What applied image updates did: the events `upid updates apply` records
//! (started, recreated, gate verdict, rolled back...), kept in
//! `update_events` and listed newest first.

use upid::wire::v1;

use super::query::{QueryError, Reader, sql};

/// `update_events`: one row per recorded step of an applied update.
pub(crate) const UPDATE_EVENTS_DDL: &str = "CREATE TABLE IF NOT EXISTS update_events (
    ts_unix_ns     BIGINT  NOT NULL,
    target         VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    from_image     VARCHAR NOT NULL,
    to_image       VARCHAR NOT NULL,
    message        VARCHAR NOT NULL,
    node           VARCHAR NOT NULL,
    container_ids  VARCHAR[] NOT NULL,
    recorded_unix_ns BIGINT NOT NULL
)";

/// Most events one `RecordUpdateEvents` call may carry.
pub const MAX_RECORDED_EVENTS: usize = 1_000;

/// Events `ListUpdateEvents` returns when no limit is asked.
pub const DEFAULT_UPDATE_EVENT_LIMIT: u32 = 100;

/// Longest text field stored (message, images, target): longer text is cut.
const MAX_FIELD_BYTES: usize = 8_192;

fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Reader {
    /// Stores `events` in one transaction; returns how many were stored.
    /// An event without a target or kind is refused (nothing is stored).
    pub fn record_update_events(
        &self,
        events: &[v1::UpdateEvent],
        now_unix_ns: i64,
    ) -> Result<u32, QueryError> {
        if events.len() > MAX_RECORDED_EVENTS {
            return Err(QueryError::InvalidArgument {
                message: format!(
                    "{} events in one call; at most {MAX_RECORDED_EVENTS}",
                    events.len()
                ),
            });
        }
        if let Some(bad) = events
            .iter()
            .position(|e| e.target.trim().is_empty() || e.kind.trim().is_empty())
        {
            return Err(QueryError::InvalidArgument {
                message: format!("event {bad} has no target or no kind; both are required"),
            });
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin update events"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO update_events VALUES ($1, $2, $3, $4, $5, $6, $7,
                        CASE WHEN $8 = '' THEN []::VARCHAR[] ELSE string_split($8, ',') END, $9)",
                )
                .map_err(sql("record update events"))?;
            for e in events {
                // DuckDB's Rust binding has no list parameter: the ids
                // (hex, never a comma) go as one comma-separated text.
                let ids = e
                    .container_ids
                    .iter()
                    .filter(|id| !id.is_empty())
                    .map(|id| id.replace(',', ""))
                    .collect::<Vec<_>>()
                    .join(",");
                stmt.execute(duckdb::params![
                    e.timestamp_unix_ns,
                    clip(&e.target),
                    clip(&e.kind),
                    clip(&e.from_image),
                    clip(&e.to_image),
                    clip(&e.message),
                    clip(&e.node),
                    ids,
                    now_unix_ns,
                ])
                .map_err(sql("record update events"))?;
            }
        }
        tx.commit().map_err(sql("commit update events"))?;
        Ok(u32::try_from(events.len()).unwrap_or(u32::MAX))
    }

    /// Recorded update events, newest first: only `target`'s when given,
    /// only from `since_unix_ns` on, at most `limit` (0: the default).
    pub fn update_events(
        &self,
        target: Option<&str>,
        since_unix_ns: i64,
        limit: u32,
    ) -> Result<Vec<v1::UpdateEvent>, QueryError> {
        let limit = if limit == 0 {
            DEFAULT_UPDATE_EVENT_LIMIT
        } else {
            limit.min(10 * DEFAULT_UPDATE_EVENT_LIMIT)
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT ts_unix_ns, target, kind, from_image, to_image, message, node,
                    array_to_string(container_ids, ',')
                 FROM update_events
                 WHERE ($1::VARCHAR IS NULL OR target = $1::VARCHAR) AND ts_unix_ns >= $2
                 ORDER BY ts_unix_ns DESC, recorded_unix_ns DESC
                 LIMIT $3",
            )
            .map_err(sql("list update events"))?;
        let rows = stmt
            .query_map(
                duckdb::params![target, since_unix_ns, i64::from(limit)],
                |r| {
                    let ids: String = r.get(7)?;
                    Ok(v1::UpdateEvent {
                        timestamp_unix_ns: r.get(0)?,
                        target: r.get(1)?,
                        kind: r.get(2)?,
                        from_image: r.get(3)?,
                        to_image: r.get(4)?,
                        message: r.get(5)?,
                        node: r.get(6)?,
                        container_ids: ids
                            .split(',')
                            .filter(|id| !id.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    })
                },
            )
            .map_err(sql("list update events"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list update events"))
    }
}
