"""Reads upid's Parquet reports independently with DuckDB, pyarrow and
polars (from PyPI), for tests/report_e2e.rs.

Usage: read_reports.py EXPECTATIONS.json

The JSON holds a list of report directories, each with every file it must
hold (relative path -> rows), the samples rows per day, and a few values
to find. Every file is read on its own by each of the three libraries, and
each table is read as a Hive-partitioned dataset by each of them. Any
mismatch raises; the last line printed is "ok" when everything matched.
"""

import datetime
import json
import os
import sys

import duckdb
import polars as pl
import pyarrow
import pyarrow.dataset as ds
import pyarrow.parquet as pq

UTC = datetime.timezone.utc


def all_files(root):
    """Every file under root (hidden ones too), relative, sorted."""
    out = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def read_each_file(root, expected_files):
    found = all_files(root)
    check(found == sorted(expected_files), f"{root}: files {found} != expected {sorted(expected_files)}")
    for rel, rows in expected_files.items():
        path = os.path.join(root, rel)
        con = duckdb.connect()
        # One file on its own: no partition column from the path.
        one = f"read_parquet('{path}', hive_partitioning = false)"
        duck_rows = con.execute(f"SELECT count(*) FROM {one}").fetchall()[0][0]
        duck_cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {one}").fetchall()]
        table = pq.read_table(path)
        frame = pl.read_parquet(path)
        check(duck_rows == rows, f"{rel}: duckdb reads {duck_rows} rows, expected {rows}")
        check(table.num_rows == rows, f"{rel}: pyarrow reads {table.num_rows} rows, expected {rows}")
        check(frame.height == rows, f"{rel}: polars reads {frame.height} rows, expected {rows}")
        check(
            duck_cols == table.column_names == frame.columns,
            f"{rel}: columns differ: duckdb {duck_cols}, pyarrow {table.column_names}, polars {frame.columns}",
        )
        check("date" not in duck_cols, f"{rel}: a file must not carry its partition column")


def per_day(pairs):
    return {str(day)[:10]: int(n) for day, n in pairs}


def read_as_datasets(root, samples_per_day, tables):
    glob = os.path.join(root, "samples", "*", "*.parquet")
    con = duckdb.connect()
    duck = per_day(
        con.execute(
            f"SELECT date, count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY date"
        ).fetchall()
    )
    check(duck == samples_per_day, f"{root}: duckdb samples per day {duck} != {samples_per_day}")

    table = ds.dataset(os.path.join(root, "samples"), format="parquet", partitioning="hive").to_table()
    counts = table.group_by("date").aggregate([("ts", "count")]).to_pylist()
    arrow = {str(r["date"])[:10]: r["ts_count"] for r in counts}
    check(arrow == samples_per_day, f"{root}: pyarrow samples per day {arrow} != {samples_per_day}")

    frame = (
        pl.scan_parquet(os.path.join(root, "samples", "**", "*.parquet"), hive_partitioning=True)
        .group_by("date")
        .agg(pl.len().alias("n"))
        .collect()
    )
    polars = per_day(zip(frame["date"].to_list(), frame["n"].to_list()))
    check(polars == samples_per_day, f"{root}: polars samples per day {polars} != {samples_per_day}")

    # Every table reads as one dataset in each library.
    for name in tables:
        path = os.path.join(root, name)
        n_duck = con.execute(
            f"SELECT count(*) FROM read_parquet('{os.path.join(path, '*', '*.parquet')}', hive_partitioning = true)"
        ).fetchall()[0][0]
        n_arrow = ds.dataset(path, format="parquet", partitioning="hive").count_rows()
        n_polars = (
            pl.scan_parquet(os.path.join(path, "**", "*.parquet"), hive_partitioning=True)
            .select(pl.len())
            .collect()
            .item()
        )
        check(n_duck == n_arrow == n_polars, f"{root}/{name}: datasets read {n_duck}, {n_arrow}, {n_polars} rows")


def check_values(root, values):
    """values: [{file, container_id, ts_unix_s, cpu_cores, memory_working_set_bytes}]
    for samples rows, and [{file, workload, cost}] for cost rows."""
    for v in values:
        path = os.path.join(root, v["file"])
        if "ts_unix_s" in v:
            ts = datetime.datetime.fromtimestamp(v["ts_unix_s"], tz=UTC)
            con = duckdb.connect()
            row = con.execute(
                f"SELECT cpu_cores, memory_working_set_bytes, epoch(ts) FROM read_parquet('{path}', hive_partitioning = false) "
                f"WHERE container_id = '{v['container_id']}' AND epoch(ts) = {v['ts_unix_s']}"
            ).fetchall()
            check(len(row) == 1, f"{v}: duckdb finds {row}")
            check(
                abs(row[0][0] - v["cpu_cores"]) < 1e-9 and row[0][1] == v["memory_working_set_bytes"],
                f"{v}: duckdb reads {row}",
            )
            rows = [
                r
                for r in pq.read_table(path).to_pylist()
                if r["container_id"] == v["container_id"] and r["ts"] == ts
            ]
            check(len(rows) == 1, f"{v}: pyarrow finds {len(rows)} rows")
            check(rows[0]["ts"].tzinfo is not None, f"{v}: pyarrow ts has no time zone")
            check(
                abs(rows[0]["cpu_cores"] - v["cpu_cores"]) < 1e-9
                and rows[0]["memory_working_set_bytes"] == v["memory_working_set_bytes"],
                f"{v}: pyarrow reads {rows[0]}",
            )
            frame = pl.read_parquet(path).filter(
                (pl.col("container_id") == v["container_id"]) & (pl.col("ts") == ts)
            )
            check(frame.height == 1, f"{v}: polars finds {frame.height} rows")
            check(
                abs(frame["cpu_cores"][0] - v["cpu_cores"]) < 1e-9
                and frame["memory_working_set_bytes"][0] == v["memory_working_set_bytes"],
                f"{v}: polars reads {frame}",
            )
        else:
            con = duckdb.connect()
            duck = con.execute(f"SELECT cost FROM read_parquet('{path}', hive_partitioning = false) WHERE workload = '{v['workload']}'").fetchall()
            arrow = [r["cost"] for r in pq.read_table(path).to_pylist() if r["workload"] == v["workload"]]
            polars = pl.read_parquet(path).filter(pl.col("workload") == v["workload"])["cost"].to_list()
            for who, got in (("duckdb", [r[0] for r in duck]), ("pyarrow", arrow), ("polars", polars)):
                check(len(got) == 1 and abs(got[0] - v["cost"]) < 1e-6, f"{v}: {who} reads {got}")


def main():
    with open(sys.argv[1]) as f:
        expectations = json.load(f)
    for d in expectations["dirs"]:
        read_each_file(d["dir"], d["files"])
        read_as_datasets(d["dir"], d["samples_per_day"], d["tables"])
        check_values(d["dir"], d["values"])
        print(f"{d['dir']}: {len(d['files'])} files read by duckdb {duckdb.__version__}, "
              f"pyarrow {pyarrow.__version__}, polars {pl.__version__}")
    print("ok")


if __name__ == "__main__":
    main()
