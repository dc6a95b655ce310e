//! `upid events`, and the events section of `upid describe container`.

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::{Table, structured};
use crate::cli::units::{NONE, age, rfc3339};
use crate::cli::view::EventView;

fn or_none(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => NONE.into(),
    }
}

/// `5m ago`, or `-` when the time is unset.
fn ago(now_unix_ns: i64, then_unix_ns: i64) -> String {
    match age(now_unix_ns, then_unix_ns) {
        a if a == NONE => a,
        a => format!("{a} ago"),
    }
}

/// The events table. `table`: TIME (age, `5m ago`), TYPE, NAMESPACE,
/// WORKLOAD, CONTAINER, DETAIL; `wide`: TIME as RFC 3339 UTC, and NODE, ID
/// (full container id) and IMAGE before DETAIL. DETAIL is last: it may hold
/// spaces.
pub fn events_table(events: &[EventView], wide: bool, now_unix_ns: i64) -> Table {
    let mut headers = vec!["TIME", "TYPE", "NAMESPACE", "WORKLOAD", "CONTAINER"];
    if wide {
        headers.extend(["NODE", "ID", "IMAGE"]);
    }
    headers.push("DETAIL");
    let mut t = Table::new(&headers);
    for e in events {
        let time = if wide {
            rfc3339(e.time_unix_ns).unwrap_or_else(|| NONE.into())
        } else {
            ago(now_unix_ns, e.time_unix_ns)
        };
        let mut row = vec![
            time,
            e.event_type.clone(),
            or_none(e.namespace.as_deref()),
            or_none(e.workload.as_deref()),
            or_none(Some(&e.container)),
        ];
        if wide {
            row.extend([
                or_none(Some(&e.node_name)),
                or_none(Some(&e.container_id)),
                or_none(e.image.as_deref()),
            ]);
        }
        row.push(or_none(e.detail.as_deref()));
        t.row(row);
    }
    t
}

/// `upid events`: the table, or the records as JSON/YAML.
pub fn events(events: &[EventView], format: Format, now_unix_ns: i64) -> Result<String, CliError> {
    if let Some(s) = structured(events, format) {
        return s;
    }
    Ok(events_table(events, format == Format::Wide, now_unix_ns).render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::fixtures::{self, NOW_NS};

    fn views() -> Vec<EventView> {
        fixtures::events().iter().map(EventView::from).collect()
    }

    #[test]
    fn the_events_table_reads_like_kubectl_events() {
        let out = events(&views(), Format::Table, NOW_NS).expect("renders");
        let expected = "\
TIME       TYPE            NAMESPACE   WORKLOAD              CONTAINER      DETAIL
5m ago     oom             shop        deployment/checkout   checkout       -
5m ago     die             shop        deployment/checkout   checkout       exit 137 (OOMKilled)
42m ago    health-change   shop        compose/web           shop-web-1     healthy → unhealthy
125m ago   image-change    shop        compose/web           shop-web-1     shop/web:1.0 → shop/web:1.1
3d ago     start           -           -                     4f2a9c1e7b3d   -
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn wide_events_have_absolute_times_nodes_ids_and_images() {
        let out = events(&views(), Format::Wide, NOW_NS).expect("renders");
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(
            header,
            [
                "TIME",
                "TYPE",
                "NAMESPACE",
                "WORKLOAD",
                "CONTAINER",
                "NODE",
                "ID",
                "IMAGE",
                "DETAIL"
            ]
        );
        let oom: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(oom[0], "2023-11-14T22:08:20Z");
        assert_eq!(oom[5], "node-b");
        assert_eq!(oom[6].len(), 64);
        assert_eq!(oom[7], "shop/checkout:2.3.1");
    }

    #[test]
    fn event_json_names_types_and_times() {
        let out = events(&views(), Format::Json, NOW_NS).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        let die = &v[1];
        assert_eq!(die["type"], "die");
        assert_eq!(die["time_unix_ns"], NOW_NS - 300 * 1_000_000_000);
        assert_eq!(die["time"], "2023-11-14T22:08:20Z");
        assert_eq!(die["exit_code"], 137);
        assert_eq!(die["namespace"], "shop");
        assert_eq!(die["workload"], "deployment/checkout");
        assert_eq!(die["workload_ref"]["kind"], "deployment");
        assert_eq!(die["container"], "checkout");
        assert_eq!(die["container_name"], "checkout");
        assert_eq!(die["node_name"], "node-b");
        assert_eq!(die["detail"], "exit 137 (OOMKilled)");
        assert_eq!(die["event_detail"], "exit 137 (OOMKilled)");
        let health = &v[2];
        assert_eq!(health["type"], "health-change");
        assert_eq!(health["from"], "healthy");
        assert_eq!(health["to"], "unhealthy");
        assert_eq!(v[3]["type"], "image-change");
        let bare = &v[4];
        assert_eq!(bare["container_name"], serde_json::Value::Null);
        assert_eq!(bare["workload"], serde_json::Value::Null);
        assert_eq!(bare["exit_code"], serde_json::Value::Null);
        let yaml = events(&views(), Format::Yaml, NOW_NS).expect("renders");
        let from_yaml: serde_json::Value = serde_norway::from_str(&yaml).expect("valid YAML");
        assert_eq!(from_yaml, v);
    }

    #[test]
    fn an_event_kind_this_build_does_not_know_is_shown_as_unknown() {
        let mut e = fixtures::events().remove(0);
        if let Some(ev) = e.event.as_mut() {
            ev.kind = 99;
        }
        let view = EventView::from(&e);
        assert_eq!(view.event_type, "unknown");
    }
}
