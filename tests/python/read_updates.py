"""Reads the `updates` table of upid's Parquet reports independently with
DuckDB's Python package and pyarrow (from PyPI), for tests/updates_e2e.rs.

Usage: read_updates.py EXPECTATIONS.json

The JSON holds:
  prefix     the test's container name prefix: only rows whose workload
             starts with it are compared (other tests' containers may run)
  decisions  what `upid updates -o json` printed for those containers
  dirs       [{dir, date_offset_days, not_before_unix_s}]: a reports or
             export directory; its updates partition must be the day of
             the decisions' checked_ts minus date_offset_days (0: `upid
             export` up to now puts them in today's partition; 1: the
             periodic report of yesterday gets the decisions made when it
             ran), and its rows must have been decided at or after
             not_before_unix_s.

Every updates file is read on its own by both libraries, then the table as
a Hive-partitioned dataset by both; the columns and types must be the ones
docs/export.md documents, and each row must equal the decision upid
printed: identity, containers, nodes, current image and digest,
candidate, change, decision, policy and its source, newest tag, registry
error, reason. Two values depend on when the decision was made: the
candidate's age, which must differ from the printed one by exactly the
seconds between the two checks, and the "released ... ago" words of the
reason. Any mismatch raises; the last line printed is "ok".
"""

import datetime
import json
import os
import re
import sys

import duckdb
import pyarrow
import pyarrow.dataset as ds
import pyarrow.parquet as pq

UTC = datetime.timezone.utc

# docs/export.md, "### `updates`": name -> pyarrow type.
STRING = pyarrow.string()
COLUMNS = [
    ("checked_ts", pyarrow.timestamp("us", tz="UTC")),
    ("namespace", STRING),
    ("workload_kind", STRING),
    ("workload", STRING),
    ("container", STRING),
    ("container_ids", pyarrow.list_(STRING)),
    ("nodes", pyarrow.list_(STRING)),
    ("current", STRING),
    ("running_digest", STRING),
    ("candidate", STRING),
    ("change", STRING),
    ("decision", STRING),
    ("policy", STRING),
    ("policy_source", STRING),
    ("candidate_age_s", pyarrow.int64()),
    ("candidate_age_unknown", STRING),
    ("newest", STRING),
    ("registry_error", STRING),
    ("reason", STRING),
]
NAMES = [name for name, _ in COLUMNS]

# The reason's only time-dependent words (src/updates/decide.rs).
RELEASED = re.compile(r"released \S+ ago")


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def all_files(root):
    out = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def unix_s(ts):
    """Whole Unix seconds of an aware datetime (what the decision used)."""
    check(ts.tzinfo is not None, f"{ts}: a timestamp without time zone")
    return int(ts.timestamp() // 1)


def parse_rfc3339(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# DuckDB's Python package needs pytz for TIMESTAMP WITH TIME ZONE values:
# it hands checked_ts over as Unix microseconds instead.
AS_MICROS = "REPLACE (epoch_us(checked_ts) AS checked_ts)"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)


def normalized(row):
    """A row as plain Python values, the same whichever library read it."""
    out = {}
    for name in NAMES:
        v = row[name]
        if name == "checked_ts" and isinstance(v, int):
            v = EPOCH + datetime.timedelta(microseconds=v)
        elif isinstance(v, datetime.datetime):
            v = v.astimezone(UTC)
        elif isinstance(v, tuple):
            v = list(v)
        out[name] = v
    return out


def key(row):
    return (row["namespace"], row["workload"], row["container"], row["current"])


def read_file(path):
    """Rows of one file as read by DuckDB and by pyarrow, which must agree."""
    con = duckdb.connect()
    one = f"read_parquet('{path}', hive_partitioning = false)"
    duck_types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {one}").fetchall()}
    check(list(duck_types) == NAMES, f"{path}: duckdb columns {list(duck_types)} != {NAMES}")
    check(duck_types["checked_ts"] == "TIMESTAMP WITH TIME ZONE", f"{path}: {duck_types}")
    check(duck_types["container_ids"] == "VARCHAR[]", f"{path}: {duck_types}")
    cursor = con.execute(f"SELECT * {AS_MICROS} FROM {one}")
    cols = [d[0] for d in cursor.description]
    duck = [normalized(dict(zip(cols, r))) for r in cursor.fetchall()]

    table = pq.read_table(path)
    schema = [(f.name, f.type) for f in table.schema]
    check(schema == COLUMNS, f"{path}: pyarrow schema {schema} != {COLUMNS}")
    arrow = [normalized(r) for r in table.to_pylist()]
    check(
        sorted(duck, key=key) == sorted(arrow, key=key),
        f"{path}: duckdb and pyarrow read different rows:\n{duck}\n{arrow}",
    )
    return arrow


def read_dataset(root):
    """The updates table as a Hive-partitioned dataset, by both libraries:
    rows with their `date` (from the path), which must agree."""
    con = duckdb.connect()
    glob = os.path.join(root, "updates", "*", "*.parquet")
    cursor = con.execute(f"SELECT * {AS_MICROS} FROM read_parquet('{glob}', hive_partitioning = true)")
    cols = [d[0] for d in cursor.description]
    duck = []
    for r in cursor.fetchall():
        r = dict(zip(cols, r))
        duck.append((str(r["date"])[:10], normalized(r)))
    table = ds.dataset(os.path.join(root, "updates"), format="parquet", partitioning="hive").to_table()
    arrow = [(str(r["date"])[:10], normalized(r)) for r in table.to_pylist()]
    order = lambda dr: (dr[0], key(dr[1]))  # noqa: E731
    check(
        sorted(duck, key=order) == sorted(arrow, key=order),
        f"{root}: the duckdb and pyarrow datasets differ:\n{duck}\n{arrow}",
    )
    return arrow


def compare(where, row, printed):
    """One file row against the decision `upid updates -o json` printed."""
    same = {
        "namespace": printed["namespace"],
        "workload_kind": printed["workload_kind"],
        "workload": printed["workload"],
        "container": printed["container"],
        "container_ids": printed["container_ids"],
        "nodes": printed["nodes"],
        "current": printed["current"],
        # The CLI prints null for what the file has as "" (not nullable).
        "running_digest": printed["running_digest"] or "",
        "candidate": printed["candidate"],
        "change": printed["change"],
        "decision": printed["decision"],
        "policy": printed["policy"],
        "policy_source": printed["policy_source"],
        "candidate_age_unknown": printed["candidate_age_unknown"] or "",
        "newest": printed["newest"],
        "registry_error": printed["registry_error"] or "",
    }
    for name, want in same.items():
        check(row[name] == want, f"{where}: {name} is {row[name]!r}, upid printed {want!r}\n{row}\n{printed}")
    check(
        RELEASED.sub("released _ ago", row["reason"]) == RELEASED.sub("released _ ago", printed["reason"]),
        f"{where}: reason {row['reason']!r}, upid printed {printed['reason']!r}",
    )
    # Both ages are (check time - the candidate's creation) in whole seconds.
    printed_s = unix_s(parse_rfc3339(printed["checked_at"]))
    row_s = unix_s(row["checked_ts"])
    if printed["candidate_age_s"] is None:
        check(row["candidate_age_s"] is None, f"{where}: candidate_age_s {row['candidate_age_s']}, upid printed null")
    else:
        check(
            row["candidate_age_s"] == printed["candidate_age_s"] + (row_s - printed_s),
            f"{where}: candidate_age_s {row['candidate_age_s']} checked at {row_s}, "
            f"upid printed {printed['candidate_age_s']} checked at {printed_s}",
        )


def check_dir(d, prefix, decisions):
    root = d["dir"]
    files = all_files(root)
    check(files, f"{root}: no file at all")
    for rel in files:
        parts = rel.split(os.sep)
        check(
            len(parts) == 3 and parts[1].startswith("date=") and parts[2] == "part-0.parquet",
            f"{root}: {rel} is not <table>/date=D/part-0.parquet (a temporary file left visible?)",
        )
    updates = [rel for rel in files if rel.startswith("updates" + os.sep)]
    check(updates, f"{root}: no updates file among {files}")
    by_file = {rel: read_file(os.path.join(root, rel)) for rel in updates}
    rows = read_dataset(root)
    check(
        len(rows) == sum(len(r) for r in by_file.values()),
        f"{root}: the dataset has {len(rows)} rows, the files {[len(r) for r in by_file.values()]}",
    )

    ours = [(date, r) for date, r in rows if r["workload"].startswith(prefix) and unix_s(r["checked_ts"]) >= d["not_before_unix_s"]]
    check(ours, f"{root}: no row for {prefix}* decided at or after {d['not_before_unix_s']}: {rows}")
    dates = {date for date, _ in ours}
    check(len(dates) == 1, f"{root}: the decisions are in several partitions: {dates}")
    date = dates.pop()
    checked = {r["checked_ts"] for _, r in ours}
    check(len(checked) == 1, f"{root}: one decision run has one checked_ts, found {checked}")
    checked = checked.pop()
    want_date = (checked - datetime.timedelta(days=d["date_offset_days"])).strftime("%Y-%m-%d")
    check(date == want_date, f"{root}: decisions made {checked} are in date={date}, expected date={want_date}")
    check(checked <= datetime.datetime.now(UTC), f"{root}: checked_ts {checked} is in the future")

    got = {key(r): r for _, r in ours}
    check(len(got) == len(ours), f"{root}: two rows for one workload container and image: {ours}")
    want = {key(p): p for p in decisions}
    check(
        sorted(got) == sorted(want),
        f"{root}: rows for {sorted(got)}, upid printed decisions for {sorted(want)}",
    )
    for k, printed in want.items():
        compare(f"{root} date={date} {k}", got[k], printed)
    return date, len(ours)


def main():
    with open(sys.argv[1]) as f:
        expectations = json.load(f)
    prefix = expectations["prefix"]
    decisions = expectations["decisions"]
    check(decisions, "no decisions to compare with")
    for d in expectations["dirs"]:
        date, n = check_dir(d, prefix, decisions)
        print(f"{d['dir']}: updates/date={date}: {n} rows equal upid's decisions, read by duckdb "
              f"{duckdb.__version__} and pyarrow {pyarrow.__version__}")
    print("ok")


if __name__ == "__main__":
    main()
