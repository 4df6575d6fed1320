"""``python -m bench.propagation.restart_state``: how long the propagation flow takes to load its
diff base (:func:`sinks.delta.sync_log.latest_pushed`) from a large ``sync/pushed`` table.

The pushed table keeps one ``done`` row (and one ``intent`` row) per push ever made, so after weeks
of operation it holds many rows per golden id. A restart reads the newest ``done`` row per golden id
for its target. This bench writes ``--rows`` pushed rows over ``--golden-ids`` golden ids into a
fresh table (two targets, half the rows ``intent``), then times, in the same run and alternating,
``latest_pushed`` against a per-row Python reference (every row to a dict, newest kept in a dict:
what ``latest_pushed`` did before 2026-11-24), checks they return the same rows, and prints medians.
Nothing is written to ``bench/results``; the command and its output are quoted where it is cited.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sinks.delta.sync_log import PUSHED_SCHEMA, SyncTables, latest_pushed, pushed_path, read_table

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def reference(delta_root: Path, target: str) -> list[dict[str, Any]]:
    """The per-row baseline: every done row of the target to a dict, newest per golden id kept."""
    data = read_table(pushed_path(delta_root), filter_column="target", value=target)
    if data is None:
        return []
    data = data.filter(pc.equal(data["phase"], "done"))
    best: dict[str, dict[str, Any]] = {}
    for row in data.to_pylist():
        seen = best.get(row["golden_id"])
        if seen is None or (row["version"], row["at"]) >= (seen["version"], seen["at"]):
            best[row["golden_id"]] = row
    return list(best.values())


def build(root: Path, rows: int, golden_ids: int, commits: int) -> None:
    """``rows`` pushed rows in ``commits`` appends; golden id i gets versions 1, 2, ... in order."""
    tables = SyncTables(root)
    per_commit = rows // commits
    for c in range(commits):
        lo = c * per_commit
        n = per_commit
        idx = pa.array(range(lo, lo + n), pa.int64())
        gid = pc.cast(pc.divide(idx, 2), pa.int64())  # an intent and a done row per push
        golden = pc.binary_join_element_wise("g", pc.cast(pc.remainder(gid, golden_ids), pa.string()), "")
        version = pc.add(pc.divide(gid, golden_ids), 1)
        phase = pa.array(["intent", "done"] * (n // 2), pa.string())
        target = pa.array((["crm"] * 2 + ["erp"] * 2) * (n // 4), pa.string())
        cols = {
            "target": target,
            "system": target,
            "golden_id": golden,
            "version": version,
            "phase": phase,
            "target_key": pc.binary_join_element_wise("k", golden, ""),
            "content_hash": pa.array(["0" * 64] * n, pa.string()),
            "echo_fields": pa.array([["email", "phone", "name"]] * n, pa.list_(pa.string())),
            "origin": pa.array(["goldstream"] * n, pa.string()),
            "state": pa.array(['{"email": "a@example.com", "phone": "+4930123456", "name": "A B"}'] * n),
            "status": pa.array(["active"] * n, pa.string()),
            "merged_into": pa.nulls(n, pa.string()),
            "at": pa.array(
                [T0 + dt.timedelta(milliseconds=lo + i) for i in range(n)], PUSHED_SCHEMA.field("at").type
            ),
            "topic": pa.array(["golden.customer"] * n, pa.string()),
            "partition": pa.array([0] * n, pa.int32()),
            "offset": idx,
        }
        data = pa.Table.from_pydict(cols, schema=PUSHED_SCHEMA)
        tables.pushed.append(data, app_id="bench", version=lo + n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.propagation.restart_state", description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000, help="pushed rows in the table (1,000,000)")
    p.add_argument("--golden-ids", type=int, default=50_000, help="distinct golden ids (50,000)")
    p.add_argument("--commits", type=int, default=20, help="appends that build the table (20)")
    p.add_argument("--runs", type=int, default=5, help="timed runs of each (5); medians reported")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="gs-restart-state-"))
    try:
        started = time.perf_counter()
        build(root, args.rows, args.golden_ids, args.commits)
        print(
            f"built {args.rows:,} pushed rows over {args.golden_ids:,} golden ids "
            f"in {time.perf_counter() - started:.1f} s"
        )
        times: dict[str, list[float]] = {"latest_pushed": [], "per_row_reference": []}
        fns = {"latest_pushed": latest_pushed, "per_row_reference": reference}
        results: dict[str, list[dict[str, Any]]] = {}
        for run in range(args.runs):
            order = list(fns) if run % 2 == 0 else list(reversed(fns))
            for name in order:
                t = time.perf_counter()
                results[name] = fns[name](root, "crm")
                times[name].append(time.perf_counter() - t)
        key = lambda r: r["golden_id"]  # noqa: E731
        same = sorted(results["latest_pushed"], key=key) == sorted(results["per_row_reference"], key=key)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "golden_ids": args.golden_ids,
                    "returned": len(results["latest_pushed"]),
                    "same_rows": same,
                    "median_s": {k: round(v, 3) for k, v in med.items()},
                    "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
                    "speedup": round(med["per_row_reference"] / med["latest_pushed"], 2),
                }
            )
        )
        return 0 if same else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
