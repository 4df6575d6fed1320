"""bench/silver: upserts/s into a 1M-row silver table, end to end from Kafka, exactly once.

    .venv/bin/python -m bench.silver [--rows 1000000] [--run-changes 250000] [--batches 250000]
        [--modes serial,overlap] [--engine rewrite] [--runs 3] [--soak .state/bench/silver-soak.json]
        [--out bench/results/silver.json]

1. **Messages.** A fresh topic ``bench.silver.<ts>`` (2 partitions) receives Debezium-shaped changes of
   ``shop.public.customers`` (``bench.silver.generate``): ``--rows`` creates with distinct random keys
   (the load), then per run ``--run-changes`` changes of random keys drawn from a key space 10%
   larger than the table (updates, ~9% inserts; ``--delete-frac`` deletes of live rows, each followed
   by a tombstone). Every delivery is confirmed before the clock starts.
2. **Load** the table through the pipeline (``bench.silver.pipeline``: consume -> decode -> bronze
   frame -> ``map_batch`` -> ``SilverWriter.apply``) in MERGEs of ``--load-batch`` records.
3. **Upsert runs.** ``--runs`` segments per mode and ``--batches`` size, each consumed and applied
   by the same writer (production ``MaintenancePolicy``, ``--engine``). Modes: ``serial`` (one
   process: map, then MERGE), ``overlap`` (the MERGE on a writer thread meanwhile) and ``mapped``
   (the flow's topology: a mapper process per partition, the MERGEs on this process's writer
   thread; ``bench.silver.pipeline.MapperPool``). upserts/s = changes in the segment / wall seconds
   from the start of consuming to the last commit. The best median is the result.
4. **Exactly once.** The last segment is consumed again by a new writer (a restarted worker): every
   row must be skipped by the transaction check and the table version must not move; then the
   current state is compared key by key with the generator's: live keys, soft-deleted keys.
5. **Transform alone.** ``map_batch`` and the per-record ``map_batch_reference`` on the same
   ``--compare-rows`` bronze rows of the first segment, one after the other in this process, outputs
   checked equal; records per CPU-second and per wall-second.
6. **Read.** ``read_current`` (polars, fresh table load) after the runs, best of 3; and the soak's
   result (``bench.silver.soak``, a separate, long process) merged in as ``read_current_s_after_1h``
   with its measured duration.

The machine is shared: load averages are recorded before, during and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from bench.silver.generate import ChangeProducer, ChangeStream, Segment, customers_mapping, row_pool
from bench.silver.pipeline import (
    MapperPool,
    RunStats,
    bronze_sample,
    cpu_seconds,
    run_segment,
    run_segment_mapped,
)
from cdc.topics import admin, probe_broker
from core.canonical import record_schema
from core.runtime import tune_gc
from core.settings import load_settings
from flows.canonical import Mapping, map_batch, map_batch_reference
from sinks.delta.silver import ENGINES, SilverWriter, read_current


def echo(msg: str) -> None:
    """Progress line with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def timed_read(path: Path, repeat: int = 3) -> tuple[float, int]:
    """Best of ``repeat`` fresh ``read_current`` calls: seconds and rows."""
    best, rows = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = read_current(path).height
        best = min(best, time.perf_counter() - t0)
    return best, rows


def transform_rates(mapping: Mapping, frames: list[pl.DataFrame], rows: int) -> dict[str, Any]:
    """Records/s of the vectorised engine and of the per-record reference on the same rows."""
    chosen, total = [], 0
    for f in frames:
        if total >= rows:
            break
        chosen.append(f)
        total += f.height
    out: dict[str, Any] = {"rows": total, "batches": len(chosen)}
    results = {}
    for name, fn in (("engine", map_batch), ("reference", map_batch_reference)):
        w0, c0 = time.perf_counter(), time.process_time()
        results[name] = [fn(mapping, f) for f in chosen]
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        out[name] = {
            "wall_s": round(wall, 3),
            "rec_per_s": round(total / wall),
            "rec_per_cpu_s": round(total / cpu),
        }
    for a, b in zip(results["engine"], results["reference"], strict=True):
        assert_frame_equal(a.records, b.records)
        assert_frame_equal(a.rejects, b.rejects)
    out["outputs_equal"] = True
    return out


def check_state(path: Path, stream: ChangeStream) -> dict[str, Any]:
    """The table's current state against the generator's: every live key, every soft delete."""
    everything = read_current(path, include_deleted=True).select("source_key", "deleted")
    live = set(everything.filter(~pl.col("deleted"))["source_key"].to_list())
    deleted = everything.filter(pl.col("deleted")).height
    expected = stream.expected_live()
    ok = live == expected and deleted == stream.expected_deleted()
    return {
        "ok": ok,
        "live_rows": len(live),
        "expected_live_rows": len(expected),
        "soft_deleted_rows": deleted,
        "expected_soft_deleted_rows": stream.expected_deleted(),
        "missing": len(expected - live),
        "unexpected": len(live - expected),
    }


def soak_result(path: Path) -> dict[str, Any] | None:
    """The soak bench's results file, if it ran."""
    if not path.exists():
        return None
    soak: dict[str, Any] = json.loads(path.read_text())
    samples = soak.get("samples") or []
    if not samples:
        return None
    last = samples[-1]
    return {
        "read_s": soak.get("read_at_end_s", last["read_s"]),
        "measured_duration_s": soak.get("duration_s", last["t_s"]),
        "commits": soak.get("commits", last["commits"]),
        "finished": "finished" in soak,
        "read_cpu_s": soak.get("read_at_end_cpu_s"),
        "read_s_trend": [(s["t_s"], s["read_s"]) for s in samples],
        "table_load_s_trend": [(s["t_s"], s["table_load_s"]) for s in samples],
        "files_trend": [(s["t_s"], s["active_files"], s["log_json_files"]) for s in samples],
        "read_after_load_s": soak.get("read_after_load_s"),
        "params": soak.get("params"),
        "command": soak.get("command"),
        "load_avg_start": soak.get("load_avg_start"),
        "load_avg_end": soak.get("load_avg_end"),
    }


def with_soak(results: dict[str, Any], soak: dict[str, Any] | None) -> dict[str, Any]:
    """``results`` with the soak's read time (and how long the soak really ran) filled in."""
    return {
        **results,
        "read_current_s_after_1h": None if soak is None else soak["read_s"],
        "read_current_measured_after_s": None if soak is None else soak["measured_duration_s"],
        "read_current_goal_s": 1.0,
        "soak": soak,
    }


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--load-batch", type=int, default=250_000)
    ap.add_argument("--run-changes", type=int, default=250_000)
    ap.add_argument("--batches", default="250000", help="MERGE sizes (records), comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--modes",
        default="serial,overlap",
        help="serial: map then MERGE; overlap: MERGE in a thread meanwhile; mapped: one mapper process"
        " per partition (the flow's workers) feeding this process's writer thread",
    )
    ap.add_argument(
        "--engine", choices=ENGINES, default="rewrite", help="the silver MERGE engine (SilverWriter engine=)"
    )
    ap.add_argument("--delete-frac", type=float, default=0.1)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument(
        "--poll",
        type=int,
        default=None,
        help="messages per poll (default: the flow's dataflow.batch_size per partition)",
    )
    ap.add_argument("--compare-rows", type=int, default=40_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--root", type=Path, default=Path(".state/bench/silver"))
    ap.add_argument("--soak", type=Path, default=Path(".state/bench/silver-soak.json"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/silver.json"))
    ap.add_argument("--keep-topic", action="store_true")
    ap.add_argument(
        "--soak-only", action="store_true", help="only merge the soak's results into the existing --out file"
    )
    args = ap.parse_args()
    tune_gc()  # the ingest flow's process setting (flows.engine.runner): this models its silver path
    if args.soak_only:
        merged = with_soak(json.loads(args.out.read_text()), soak_result(args.soak))
        args.out.write_text(json.dumps(merged, indent=2) + "\n")
        echo(f"merged {args.soak} into {args.out}: read {merged['read_current_s_after_1h']}s")
        return

    settings = load_settings()
    bootstrap = settings.kafka.bootstrap_servers
    probe_broker(bootstrap)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "silver",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, "-m", "bench.silver", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_avg_start": load_avg(),
        "params": {k: str(v) for k, v in vars(args).items()},
    }
    poll = args.poll or settings.dataflow.batch_size * args.partitions
    results["params"]["poll"] = str(poll)
    sizes = [int(s) for s in args.batches.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"serial", "overlap", "mapped"}:
        ap.error(f"--modes takes serial, overlap and/or mapped, not {args.modes!r}")
    mapping = customers_mapping()
    topic = f"bench.silver.{int(time.time())}"
    space = int(args.rows * 1.1)
    stream = ChangeStream(row_pool(mapping), key_space=space, seed=args.seed)
    producer = ChangeProducer(bootstrap, topic, args.partitions, stream)
    rng = stream.rng

    echo(
        f"produce {args.rows:,} creates + {len(sizes) * len(modes) * args.runs} x {args.run_changes:,}"
        f" changes to {topic}"
    )
    t0 = time.perf_counter()
    load = producer.produce("load", rng.permutation(space)[: args.rows], 0.0)
    runs: list[tuple[str, int, Segment]] = []
    for i in range(args.runs):  # rounds: every configuration once per round, so noise spreads evenly
        for mode in modes:
            for size in sizes:
                keys = rng.integers(0, space, args.run_changes)
                runs.append((mode, size, producer.produce(f"{mode}-{size}-r{i}", keys, args.delete_frac)))
    produced = load.changes + sum(s.changes + s.deletes for _, _, s in runs)  # + tombstones
    results["produce"] = {"messages": produced, "seconds": round(time.perf_counter() - t0, 1), "topic": topic}
    echo(f"  {results['produce']}")

    shutil.rmtree(args.root, ignore_errors=True)
    writer = SilverWriter(args.root, "customer", schema=record_schema("customer"), engine=args.engine)
    echo(f"load {args.rows:,} rows in MERGEs of {args.load_batch:,}")
    stats = run_segment(bootstrap, topic, load, mapping, writer, batch=args.load_batch, poll=poll)
    results["load"] = {**stats.summary(), "rows_per_s": round(load.changes / stats.seconds)}
    echo(f"  {results['load']}")
    read_s, rows = timed_read(writer.path)
    results["read_current_after_load"] = {"seconds": round(read_s, 3), "rows": rows}

    per_size: dict[str, Any] = {}
    pool = (
        MapperPool(bootstrap, topic, args.partitions, poll // args.partitions) if "mapped" in modes else None
    )
    for mode, size, segment in runs:
        entry = per_size.setdefault(f"{mode}/{size}", {"mode": mode, "batch": size, "runs": []})
        if mode == "mapped":
            assert pool is not None
            stats = run_segment_mapped(pool, segment, writer, batch=size)
        else:
            stats = run_segment(
                bootstrap, topic, segment, mapping, writer, batch=size, overlap=mode == "overlap", poll=poll
            )
        summary: dict[str, Any] = {
            **stats.summary(),
            "upserts": segment.changes,
            "deletes": segment.deletes,
            "upserts_per_s": round(segment.changes / stats.seconds),
            "upserts_per_cpu_s": round(segment.changes / stats.cpu_seconds),
            "load_avg_after": load_avg(),
        }
        assert stats.changes == segment.changes, (stats.changes, segment.changes)
        entry["runs"].append(summary)
        echo(f"{mode} batch {size:,}: {summary}")
    for entry in per_size.values():
        rates = [r["upserts_per_s"] for r in entry["runs"]]
        entry["upserts_per_s_median"] = round(statistics.median(rates))
        entry["upserts_per_cpu_s_median"] = round(
            statistics.median(r["upserts_per_cpu_s"] for r in entry["runs"])
        )
    results["upserts"] = per_size
    best = max(per_size, key=lambda k: per_size[k]["upserts_per_s_median"])

    echo("exactly once: replay the last segment through a new writer")
    restarted = SilverWriter(args.root, "customer", schema=record_schema("customer"), engine=args.engine)
    before = len(list((writer.path / "_delta_log").glob("*.json")))
    replay: RunStats = run_segment(bootstrap, topic, runs[-1][2], mapping, restarted, batch=10**9, poll=poll)
    after = len(list((writer.path / "_delta_log").glob("*.json")))
    results["exactly_once"] = {
        "replayed_records": replay.records,
        "skipped_as_committed": replay.rows_skipped_committed,
        "applied": replay.rows_applied,
        "new_commits": after - before,
        "ok": replay.rows_applied == 0
        and replay.rows_skipped_committed == replay.records
        and after == before,
        "state": check_state(writer.path, stream),
    }
    echo(f"  {results['exactly_once']}")

    if pool is not None:
        pool.close()
    echo(f"transform alone on {args.compare_rows:,} rows: engine vs per-record reference")
    kept = bronze_sample(bootstrap, topic, runs[0][2], args.compare_rows, poll)
    results["transform"] = transform_rates(mapping, kept, args.compare_rows)
    echo(f"  {results['transform']}")
    read_s, rows = timed_read(writer.path)
    results["read_current_after_runs"] = {"seconds": round(read_s, 3), "rows": rows}
    soak = soak_result(args.soak)

    results.update(
        table_rows=args.rows,
        upserts_per_s=per_size[best]["upserts_per_s_median"],
        upserts_per_s_config=best,
        upserts_goal=50_000,
        upserts_goal_met=per_size[best]["upserts_per_s_median"] >= 50_000,
        read_current_s=round(read_s, 3),
        transform_rec_per_s=results["transform"]["engine"]["rec_per_s"],
        per_record_baseline_rec_per_s=results["transform"]["reference"]["rec_per_s"],
        transform_rec_per_cpu_s=results["transform"]["engine"]["rec_per_cpu_s"],
        per_record_baseline_rec_per_cpu_s=results["transform"]["reference"]["rec_per_cpu_s"],
        load_avg_end=load_avg(),
        wall_s=round(time.perf_counter() - started),
        cpu_s=round(cpu_seconds()),
    )
    results = with_soak(results, soak)
    if not args.keep_topic:
        admin(bootstrap).delete_topics([topic])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    keys = ("upserts_per_s", "read_current_s", "read_current_s_after_1h", "transform_rec_per_s")
    echo(json.dumps({k: results[k] for k in (*keys, "per_record_baseline_rec_per_s")}))
    echo(f"wrote {args.out}")


if __name__ == "__main__":
    main()
