"""Silver MERGE micro-benchmark: upserts/s into a silver table and read time of its current state.

    .venv/bin/python bench/silver_merge.py [--rows 1000000] [--batches 20000,50000,100000]
        [--rounds 4] [--small-minutes 10] [--small-batch 1000] [--engine rewrite] [--out results.json]

Phases (all through ``SilverWriter.apply``, so fold + transaction check + MERGE + commit):

1. load: ``--rows`` inserts with random keys (batches of ``--load-batch``) into a fresh table;
2. upserts: for each batch size, ``--rounds`` batches of random keys drawn from a key space 10%
   larger than the table (so ~9% inserts, the rest updates), 10% of them deletes; lsn increasing;
3. read of the current state (``read_current``, polars) before and after ``maintain()``;
4. small commits: ``--small-minutes`` of back-to-back batches of ``--small-batch`` random keys with
   the writer's automatic maintenance on; the read time is sampled every ``--sample-s`` seconds.

Numbers depend on the machine and on what else runs on it: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sinks.delta.maintenance import MaintenancePolicy, maintain
from sinks.delta.silver import ENGINES, SilverWriter, read_current

CITIES = [f"City {i}" for i in range(500)]
COUNTRIES = ["DE", "FR", "NL", "US", "GB", "IT", "ES", "PL"]
STATUS = ["active", "inactive", "past_due", "closed"]


def echo(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Generator:
    """Canonical customer change batches with a monotonic LSN and offset (one Kafka partition)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.lsn = 1_000_000
        self.offset = 0

    def batch(self, keys: np.ndarray, delete_frac: float = 0.0, op: str = "u") -> pl.DataFrame:
        n = len(keys)
        rng = self.rng
        lsn = np.arange(self.lsn, self.lsn + n, dtype=np.int64)
        offsets = np.arange(self.offset, self.offset + n, dtype=np.int64)
        self.lsn += n
        self.offset += n
        is_delete = rng.random(n) < delete_frac
        ops = np.where(is_delete, "d", op)
        k = pl.Series(keys).cast(pl.String)
        ts = pl.Series(np.full(n, 1_750_000_000_000_000, dtype=np.int64) + lsn).cast(pl.Datetime("us", "UTC"))
        first = pl.Series(rng.integers(0, 5000, n)).cast(pl.String)
        last = pl.Series(rng.integers(0, 20000, n)).cast(pl.String)
        df = pl.DataFrame(
            {
                "source_system": pl.repeat("crm", n, eager=True),
                "source_table": pl.repeat("public.customers", n, eager=True),
                "source_key": k,
                "lsn": lsn,
                "tx_id": pl.Series(lsn // 3),
                "source_ts": ts,
                "mapping_version": pl.repeat("crm.public.customers@1#bench", n, eager=True),
                "op": pl.Series(ops),
                "deleted": pl.Series(is_delete),
                "snapshot": pl.repeat(False, n, eager=True),
                "topic": pl.repeat("crm.public.customers", n, eager=True),
                "partition": pl.repeat(0, n, eager=True, dtype=pl.Int32),
                "offset": offsets,
                "unavailable": pl.repeat([], n, eager=True, dtype=pl.List(pl.String)),
                "kind": pl.repeat("person", n, eager=True),
                "status": pl.Series(STATUS).gather(rng.integers(0, len(STATUS), n)),
                "first_name": "First" + first,
                "last_name": "Last" + last,
                "full_name": "First" + first + " Last" + last,
                "email": "user" + k + "@example.com",
                "phone": "+49301" + k.str.zfill(7),
                "street": pl.Series(rng.integers(1, 300, n)).cast(pl.String) + " Main Street",
                "postal_code": pl.Series(rng.integers(10000, 99999, n)).cast(pl.String),
                "city": pl.Series(CITIES).gather(rng.integers(0, len(CITIES), n)),
                "country": pl.Series(COUNTRIES).gather(rng.integers(0, len(COUNTRIES), n)),
                "birth_date": pl.Series(rng.integers(-10000, 12000, n)).cast(pl.Int32).cast(pl.Date),
                "marketing_opt_in": pl.Series(rng.random(n) < 0.3),
                "created_at": ts,
                "updated_at": ts,
            }
        )
        return df


def cpu_seconds() -> float:
    """CPU time of this process, all threads (delta-rs and polars work in native threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_seconds(path: Path, repeat: int = 3) -> tuple[float, int]:
    """Best of ``repeat`` reads of the current state (a fresh table load each time)."""
    times, rows = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = read_current(path).height
        times.append(time.perf_counter() - t0)
    return min(times), rows


def table_stats(path: Path) -> dict[str, Any]:
    files = [p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts]
    log = list((path / "_delta_log").glob("*.json"))
    from deltalake import DeltaTable

    t0 = time.perf_counter()
    table = DeltaTable(str(path))
    load = time.perf_counter() - t0
    return {
        "version": table.version(),
        "active_files": len(table.file_uris()),
        "parquet_files_on_disk": len(files),
        "disk_mb": round(sum(p.stat().st_size for p in files) / 2**20, 1),
        "log_json_files": len(log),
        "table_load_s": round(load, 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--load-batch", type=int, default=250_000)
    p.add_argument("--batches", default="20000,50000,100000")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--delete-frac", type=float, default=0.1)
    p.add_argument("--small-minutes", type=float, default=10.0)
    p.add_argument("--small-batch", type=int, default=1000)
    p.add_argument("--sample-s", type=float, default=60.0)
    p.add_argument("--retention-minutes", type=float, default=2.0, help="vacuum retention in the bench")
    p.add_argument("--root", type=Path, default=None, help="where the table goes (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the table afterwards")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--engine", choices=ENGINES, default="rewrite", help="the silver MERGE engine")
    args = p.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="silver-bench-"))
    shutil.rmtree(root / "silver", ignore_errors=True)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    gen = Generator()
    policy = MaintenancePolicy(retention=timedelta(minutes=args.retention_minutes))
    writer = SilverWriter(root, "customer", maintenance=policy, engine=args.engine)
    path = writer.path
    space = int(args.rows * 1.1)
    keys = gen.rng.permutation(space)[: args.rows]

    echo(f"load {args.rows:,} rows into {path}")
    t0 = time.perf_counter()
    for i in range(0, args.rows, args.load_batch):
        writer.apply(gen.batch(keys[i : i + args.load_batch], op="c"))
    load_s = time.perf_counter() - t0
    results["load_cpu_s"] = round(cpu_seconds(), 2)
    results["load"] = {
        "rows": args.rows,
        "seconds": round(load_s, 2),
        "rows_per_s": round(args.rows / load_s),
    }
    echo(f"  {results['load']}")
    results["read_after_load"] = dict(zip(("seconds", "rows"), read_seconds(path), strict=True))
    echo(f"  read {results['read_after_load']}")

    upserts: dict[str, Any] = {}
    for size in [int(s) for s in args.batches.split(",") if s]:
        apply_s, cpu_s = [], []
        for _ in range(args.rounds):
            batch = gen.batch(gen.rng.choice(space, size, replace=False), delete_frac=args.delete_frac)
            c0 = cpu_seconds()
            r = writer.apply(batch)
            cpu_s.append(cpu_seconds() - c0)
            apply_s.append(r.seconds)
        median = statistics.median(apply_s)
        upserts[str(size)] = {
            "apply_seconds": [round(s, 3) for s in apply_s],
            "cpu_seconds": [round(s, 3) for s in cpu_s],
            "median_s": round(median, 3),
            "upserts_per_s_median": round(size / median),
            "upserts_per_s_overall": round(size * len(apply_s) / sum(apply_s)),
            "upserts_per_cpu_s": round(size * len(cpu_s) / sum(cpu_s)),
        }
        echo(f"batch {size:>7,}: {upserts[str(size)]}")
    results["upserts"] = upserts
    results["table_after_upserts"] = table_stats(path)

    before = read_seconds(path)
    report = maintain(path, retention=timedelta(minutes=args.retention_minutes))
    after = read_seconds(path)
    results["maintenance"] = {
        "read_before_s": round(before[0], 3),
        "read_after_s": round(after[0], 3),
        "rows": after[1],
        "maintain_s": round(report.seconds, 2),
        "steps": {k: round(v, 3) for k, v in report.step_seconds.items()},
        "files": [report.files_before, report.files_after],
        "vacuumed": report.vacuumed_files,
    }
    echo(f"maintain: {results['maintenance']}")
    results["table_after_maintain"] = table_stats(path)

    if args.small_minutes > 0:
        echo(f"small commits: {args.small_batch} rows per commit for {args.small_minutes} min")
        end = time.monotonic() + args.small_minutes * 60
        next_sample = time.monotonic()
        samples, commit_s, maint = [], [], 0
        c0 = cpu_seconds()
        while time.monotonic() < end:
            batch = gen.batch(
                gen.rng.choice(space, args.small_batch, replace=False), delete_frac=args.delete_frac
            )
            r = writer.apply(batch)
            commit_s.append(r.seconds)
            maint += r.maintenance is not None
            if time.monotonic() >= next_sample:
                read_s, rows = read_seconds(path, repeat=1)
                sample = {
                    "t_s": round(args.small_minutes * 60 - (end - time.monotonic())),
                    "commits": len(commit_s),
                }
                sample.update(read_s=round(read_s, 3), rows=rows, **table_stats(path))
                samples.append(sample)
                echo(f"  {sample}")
                next_sample += args.sample_s
        commit_s.sort()
        results["small_commits"] = {
            "commits": len(commit_s),
            "rows_per_commit": args.small_batch,
            "commit_s_p50": round(commit_s[len(commit_s) // 2], 3),
            "commit_s_p95": round(commit_s[int(len(commit_s) * 0.95)], 3),
            "upserts_per_s": round(args.small_batch * len(commit_s) / sum(commit_s)),
            "cpu_s_per_commit": round((cpu_seconds() - c0) / len(commit_s), 3),
            "maintenance_runs": maint,
            "samples": samples,
        }
        final = read_seconds(path)
        results["small_commits"]["read_at_end_s"] = round(final[0], 3)
        echo(f"  done: { ({k: v for k, v in results['small_commits'].items() if k != 'samples'}) }")
    results["load_avg_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if not args.keep and args.root is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
