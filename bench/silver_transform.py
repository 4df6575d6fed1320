"""Canonical mapping speed: the vectorised engine vs the per-record reference, on realistic customers.

    .venv/bin/python -m bench.silver_transform [--people 37000] [--batch 20000] [--runs 3]

The rows come from the demo world (``cdc.demo``: names in many scripts with typos, nicknames, case
and whitespace noise, phones in every national format, country names and codes, '' vs NULL, text
dates, epoch seconds...), rendered by the demo seeders of the five customer-like tables (crm
accounts + contacts, erp debtors, shop customers, billing accounts) and serialised exactly as our
Debezium settings write them. ``--people 37000`` gives ~100k rows.

Each run maps every table in batches of ``--batch`` rows (the dataflow's batch size) with
:func:`flows.canonical.map_batch`, then with :func:`flows.canonical.map_batch_reference`, one core,
and checks that both produced the same records. "cold" runs clear the lookup caches (phone,
country, ftfy, dateutil) first, as a fresh worker process would; "warm" runs keep them, as a
long-running worker does. Medians of ``--runs`` go to ``--out`` (JSON) with the command and machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# One core, as the target says: polars reads this once, at import.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import polars as pl
from polars.testing import assert_frame_equal

from cdc.demo.assign import plan
from cdc.demo.systems import SYSTEMS
from cdc.demo.world import build_world
from flows.canonical import Mapping, compile_mappings, map_batch, map_batch_reference
from flows.canonical import values as vals
from flows.canonical.sample import Change, events_frame

TABLES = [
    ("crm", "public", "accounts"),
    ("crm", "public", "contacts"),
    ("erp", "erp", "debtors"),
    ("shop", "public", "customers"),
    ("billing", "billing", "accounts"),
]
CACHED = (
    vals.fix_text,
    vals.nfc,
    vals.fix_case,
    vals.country_alpha2,
    vals.phone_e164,
    vals.parse_any_datetime,
)


def clear_caches() -> None:
    for fn in CACHED:
        fn.cache_clear()


def build_batches(people: int, seed: int, batch: int) -> list[tuple[Mapping, pl.DataFrame]]:
    """Event frames per table, ``batch`` rows each, from the demo seeders."""
    mappings = compile_mappings(Path("config"))
    world = build_world(people, seed)
    assignment = plan(world)
    out = []
    for system in sorted({s for s, _, _ in TABLES}):
        data = SYSTEMS[system].seed_rows(world, assignment)
        for sys_name, schema, table in TABLES:
            if sys_name != system:
                continue
            mapping = mappings.for_table(system, schema, table)
            assert mapping is not None
            rows = data.rows[table]
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                out.append(
                    (mapping, events_frame(mapping, [Change("c", r) for r in chunk], first_offset=start))
                )
    return out


def timed(fn: Any, batches: list[tuple[Mapping, pl.DataFrame]]) -> tuple[float, float, list[Any]]:
    """Wall and CPU seconds of mapping every batch with ``fn`` (CPU time is what one core spent:
    the figure to trust on a machine other jobs share)."""
    w0, c0 = time.perf_counter(), time.process_time()
    results = [fn(m, ev) for m, ev in batches]
    return time.perf_counter() - w0, time.process_time() - c0, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=37_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/silver_transform.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    batches = build_batches(args.people, args.seed, args.batch)
    rows = sum(ev.height for _, ev in batches)
    per_table = {f"{m.system}.{m.source_table}": 0 for m, _ in batches}
    for m, ev in batches:
        per_table[f"{m.system}.{m.source_table}"] += ev.height
    print(f"{rows} rows in {len(batches)} batches ({time.perf_counter() - t0:.1f}s to generate): {per_table}")

    results: dict[str, list[float]] = {}
    issues = rejects = 0
    for run in range(args.runs):
        clear_caches()
        cold = timed(map_batch, batches)
        warm = timed(map_batch, batches)
        clear_caches()
        ref = timed(map_batch_reference, batches)
        for a, b in zip(cold[2], ref[2], strict=True):
            assert_frame_equal(a.records, b.records)
            assert_frame_equal(a.rejects, b.rejects)
        issues = sum(int((r.records["issues"].list.len() > 0).sum()) for r in cold[2])
        rejects = sum(r.rejects.height for r in cold[2])
        for name, (wall, cpu, _) in (("engine_cold", cold), ("engine_warm", warm), ("reference", ref)):
            results.setdefault(f"{name}_cpu", []).append(rows / cpu)
            results.setdefault(f"{name}_wall", []).append(rows / wall)
        print(
            f"run {run + 1} (records/s of CPU time): engine {rows / cold[1]:,.0f} cold, "
            f"{rows / warm[1]:,.0f} warm; reference {rows / ref[1]:,.0f}; outputs equal"
        )
    summary = {
        "benchmark": "silver_transform",
        "command": " ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "bench.silver_transform", *sys.argv[1:]]
        ),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "polars_threads": pl.thread_pool_size(),
        "rows": rows,
        "batch": args.batch,
        "rows_per_table": per_table,
        "rows_with_issues": issues,
        "rejects": rejects,
        "median_records_per_s": {k: round(statistics.median(v)) for k, v in results.items()},
        "speedup_warm_vs_reference": round(
            statistics.median(results["engine_warm_cpu"]) / statistics.median(results["reference_cpu"]), 1
        ),
    }
    print(json.dumps(summary["median_records_per_s"]), f"speedup x{summary['speedup_warm_vs_reference']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
