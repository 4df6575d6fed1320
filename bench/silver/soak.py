"""Read time of a silver table's current state under continuous small commits (the "after 1 hour").

    .venv/bin/python -m bench.silver.soak [--rows 1000000] [--minutes 60] [--batch 2000]
        [--interval 10] [--sample-s 60] [--out .state/bench/silver-soak.json]

A fresh 1M-row customer silver table (random keys) takes one small MERGE of ``--batch`` random keys
(10% deletes) every ``--interval`` seconds through :class:`~sinks.delta.silver.SilverWriter`, with
its automatic maintenance on (the production :class:`~sinks.delta.maintenance.MaintenancePolicy`,
vacuum retention shortened to ``--retention-minutes`` so the disk does not fill up). Every
``--sample-s`` seconds ``read_current`` (polars, new table load) is timed (best of 3, and its CPU
time), with the table's file and log counts. The results file is rewritten after each sample, so a
run stopped early still leaves its trend.

The commits are paced, not back to back: a random-key MERGE rewrites the whole 1M-row partition
(~6 CPU-s), and the machine is shared. What grows with time (log files, data files, dead copies)
depends on the number of commits, which the results record.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.silver_merge import Generator, table_stats
from sinks.delta.maintenance import MaintenancePolicy
from sinks.delta.silver import SilverWriter, read_current


def echo(msg: str) -> None:
    """Progress line with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed_read(path: Path, repeat: int = 3) -> tuple[float, float, int]:
    """Best wall seconds, the CPU seconds of that read, and rows of ``repeat`` fresh ``read_current``.

    The best of a few: on a shared machine a single read mostly measures who else was running.
    """
    best: tuple[float, float, int] = (float("inf"), 0.0, 0)
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = read_current(path).height
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best[0]:
            best = (wall, cpu, rows)
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, then commit and sample until ``args.minutes`` have passed."""
    root: Path = args.root
    shutil.rmtree(root, ignore_errors=True)
    gen = Generator(seed=args.seed)
    policy = MaintenancePolicy(retention=timedelta(minutes=args.retention_minutes))
    writer = SilverWriter(root, "customer", maintenance=policy)
    path = writer.path
    space = int(args.rows * 1.1)
    keys = gen.rng.permutation(space)[: args.rows]
    results: dict[str, Any] = {
        "benchmark": "silver_soak",
        "command": " ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "bench.silver.soak", *sys.argv[1:]]
        ),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "params": {k: str(v) for k, v in vars(args).items()},
    }
    echo(f"load {args.rows:,} rows into {path}")
    t0 = time.perf_counter()
    for i in range(0, args.rows, 250_000):
        writer.apply(gen.batch(keys[i : i + 250_000], op="c"))
    results["load_s"] = round(time.perf_counter() - t0, 1)
    read_s, _cpu, rows = timed_read(path)
    results["read_after_load_s"] = round(read_s, 3)
    results["rows_after_load"] = rows
    echo(f"loaded in {results['load_s']}s; read {read_s:.3f}s ({rows:,} rows)")

    samples: list[dict[str, Any]] = []
    results["samples"] = samples
    start = time.monotonic()
    end = start + args.minutes * 60
    next_sample = start
    commits = maintenance_runs = 0
    commit_s: list[float] = []
    while time.monotonic() < end:
        began = time.monotonic()
        batch = gen.batch(gen.rng.choice(space, args.batch, replace=False), delete_frac=args.delete_frac)
        r = writer.apply(batch)
        commits += 1
        commit_s.append(r.seconds)
        maintenance_runs += r.maintenance is not None
        if time.monotonic() >= next_sample:
            read_s, read_cpu_s, rows = timed_read(path)
            sample: dict[str, Any] = {
                "t_s": round(time.monotonic() - start),
                "commits": commits,
                "maintenance_runs": maintenance_runs,
                "read_s": round(read_s, 3),
                "read_cpu_s": round(read_cpu_s, 3),
                "rows": rows,
                "load_avg_1m": round(os.getloadavg()[0], 2),
                **table_stats(path),
            }
            samples.append(sample)
            results["duration_s"] = sample["t_s"]
            results["commits"] = commits
            results["commit_s_mean"] = round(sum(commit_s) / len(commit_s), 3)
            results["load_avg_end"] = os.getloadavg()
            echo(str(sample))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            next_sample += args.sample_s
        time.sleep(max(0.0, args.interval - (time.monotonic() - began)))
    final_s, final_cpu_s, rows = timed_read(path, repeat=5)
    results["read_at_end_s"] = round(final_s, 3)
    results["read_at_end_cpu_s"] = round(final_cpu_s, 3)
    results["rows_at_end"] = rows
    results["duration_s"] = round(time.monotonic() - start)
    results["commits"] = commits
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    echo(f"done: {commits} commits in {results['duration_s']}s, final read {final_s:.3f}s")
    return results


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--interval", type=float, default=10.0, help="seconds from one commit's start to the next")
    p.add_argument("--delete-frac", type=float, default=0.1)
    p.add_argument("--sample-s", type=float, default=60.0)
    p.add_argument("--retention-minutes", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--root", type=Path, default=Path(".state/bench/silver-soak"))
    p.add_argument("--out", type=Path, default=Path(".state/bench/silver-soak.json"))
    return p


def main() -> None:
    """Entry point."""
    run(parser().parse_args())


if __name__ == "__main__":
    main()
