"""``python -m bench.er``: streaming entity resolution vs Splink on labelled data sets.

For each data set: train the matching config on the records (EM, labels unused), stream the records
one at a time through ``flows.resolve.Resolver`` in ``--orders`` shuffled orders, then once in
micro-batches; score pairwise and B-cubed accuracy, blocking recall, comparisons per record,
largest cluster, speed and memory; run Splink (DuckDB) on the same records as the baseline.
``demo`` is the seeded demo world's canonical customers (``demo_handset``: the same records with
the config's hand-set m/u, as the resolver runs before any training). ``scale`` measures
throughput with 100,000 synthetic customers already in state.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.er import datasets
from bench.er.run import QUIET_WAIT, evaluate, load_avg, scale

DEFAULT_OUT = Path("bench/results/er.json")
ALL_SETS = ("febrl1", "febrl2", "febrl3", "febrl4", "historical_50k", "demo", "demo_handset", "scale")
_START = time.perf_counter()


def echo(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - _START:6.0f}s] {msg}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.er", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--sets", default=",".join(ALL_SETS), help=f"comma-separated, from {','.join(ALL_SETS)}")
    p.add_argument(
        "--data", type=Path, help="another file with the columns of a built-in set (.parquet/.csv)"
    )
    p.add_argument("--config", type=Path, help="matching config for --data (default: the built-in set's)")
    p.add_argument("--orders", type=int, default=5, help="shuffled arrival orders per set (default 5)")
    p.add_argument("--scale-records", type=int, default=120_000, help="synthetic customers for `scale`")
    p.add_argument("--scale-fill", type=int, default=100_000, help="records in state before measuring")
    p.add_argument("--quiet-wait", type=float, default=5.0, help="max seconds to wait for a quiet machine")
    p.add_argument("--no-splink", action="store_true", help="skip the Splink baseline")
    p.add_argument("--demo-people", type=int, default=500, help="people in the demo world (default 500)")
    p.add_argument("--demo-seed", type=int, default=42, help="seed of the demo world (default 42)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other sets' entries of an existing results file (replace only the sets run)",
    )
    return p


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    QUIET_WAIT[0] = args.quiet_wait
    command = "python -m bench.er " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    results: dict[str, Any] = {}
    wanted = [] if args.data else [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(wanted) - set(ALL_SETS)
    if unknown:
        raise SystemExit(f"unknown sets {sorted(unknown)}; choose from {', '.join(ALL_SETS)}")
    load_start = load_avg()
    if args.data:
        ds = datasets.from_file(args.data)
        cfg = args.config or datasets.CONFIGS[ds.kind]
        results[ds.name] = evaluate(ds, cfg, args.orders, not args.no_splink, echo)
    demo_ds: datasets.Dataset | None = None
    for name in wanted:
        if name.startswith("febrl"):
            ds = datasets.febrl(int(name[5:]))
            results[name] = evaluate(
                ds, args.config or datasets.CONFIGS["febrl"], args.orders, not args.no_splink, echo
            )
        elif name == "historical_50k":
            ds = datasets.historical()
            cfg = args.config or datasets.CONFIGS["historical_50k"]
            results[name] = evaluate(ds, cfg, args.orders, not args.no_splink, echo)
        elif name in ("demo", "demo_handset"):
            if demo_ds is None:
                demo_ds = datasets.demo(args.demo_people, args.demo_seed)
            ds = dataclasses.replace(demo_ds, name=name)
            cfg = args.config or datasets.CONFIGS["demo"]
            handset = name == "demo_handset"
            results[name] = evaluate(
                ds, cfg, args.orders, not args.no_splink and not handset, echo, train=not handset
            )
        elif name == "scale":
            echo(f"scale: generating {args.scale_records:,} synthetic customers")
            ds = datasets.customers(args.scale_records)
            results[name] = scale(ds, datasets.CONFIGS["customers"], args.scale_fill, echo)
    generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for res in results.values():
        res["command"] = command
        res["generated_at"] = generated_at
    wall = time.perf_counter() - _START
    sets = rounded(results)
    if args.merge and args.out.exists():
        # Earlier entries keep their own command and generated_at; machine/versions describe this run.
        previous = json.loads(args.out.read_text(encoding="utf-8")).get("sets", {})
        sets = {**previous, **sets}
    doc = {
        "benchmark": "bench/er",
        "generated_at": generated_at,
        "command": command,
        "wall_seconds": round(wall, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_start": load_start,
            "load_avg_end": load_avg(),
            "note": "shared machine: rec_per_cpu_s (this process's CPU time) is the load-independent speed",
        },
        "versions": {
            p: version(p) for p in ("rapidfuzz", "numpy", "polars", "splink", "duckdb", "recordlinkage")
        },
        "sets": sets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    echo(f"wrote {args.out} in {wall:.0f} s")
    for name, res in results.items():
        splink = res.get("splink_f1_pairwise")
        echo(
            f"{name:>16}: F1 {res['f1_pairwise']:.4f} B3 {res['f1_bcubed']:.4f}"
            + (f" Splink {splink:.4f}" if splink is not None else "")
            + f" | {res['rec_per_s']:,.0f} rec/s, {res['rec_per_s_batched']:,.0f} batched, "
            f"p99 {res['p99_ms']:.2f} ms | largest {res['largest_cluster']} | "
            f"{res['memory_bytes_per_record']:,.0f} B/record"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
