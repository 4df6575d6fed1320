"""``python -m bench.er.staged``: the staged resolution vs the single resolve operator, same run.

Both sides get the same synthetic customers (``bench.er.synthetic``, as the ``scale`` set of
``python -m bench.er``) with the same trained matching config and ``config/survivorship``:

* **in process**: the single operator's logic (:class:`~flows.resolve.golden.GoldenBook`, what
  ``ResolveLogic`` runs per batch; and the bare :class:`~flows.resolve.resolver.Resolver` the
  ``scale`` set reports) against the stage functions driven by
  :class:`~flows.resolve.stages.simulate.StagedResolver` (every stage, every key group, in one
  process: the Bytewax-free cost of the stages). ``--fill`` records go in first in batches of
  2,000, then the rest is measured in batches of 1,000 with that many records in state.
* **flows** (``--flows``): the real Bytewax resolve flows without ingest (a partitioned source of
  record-change batches -> ``resolve`` or ``resolve_staged`` -> a counting sink), all records from
  empty, in 1 and 2 processes (``-p``), timed from "flow built" to the end; CPU is the sum over
  the processes (``getrusage``) minus the same flow's run on no records (start-up and imports).

Runs alternate single / staged and the medians of ``--runs`` are reported. CPU seconds are the
figure to compare (the machine is shared); records/s are wall-clock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import pickle
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.er import datasets
from bench.er.run import load_avg, wait_quiet
from core.golden import Cause, RecordChange
from core.settings import DataflowSettings
from flows.resolve.config import MatchingConfig, load_matching_config, write_matching_config
from flows.resolve.golden import GoldenBook, survivorship_path
from flows.resolve.resolver import Resolver
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.simulate import StagedResolver
from flows.resolve.survivorship import load_survivorship_config
from flows.resolve.train import train_with_report

CONFIG = Path("config")
DEFAULT_OUT = Path("bench/results/er_staged.json")
_START = time.perf_counter()


def echo(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - _START:6.0f}s] {msg}", flush=True)


def changes(n: int) -> tuple[list[RecordChange], list[str]]:
    """``n`` synthetic customers as record changes (and their labels)."""
    frame = datasets.customers(n).frame
    out = []
    labels = []
    for i, row in enumerate(frame.iter_rows(named=True)):
        rid = f"{row['source_system']}:public.customers:{i}"
        ts = int(dt.datetime.fromisoformat(row["source_ts"]).timestamp() * 1e6)
        values = {k: v for k, v in row.items() if k not in ("id", "label", "source_ts")}
        values["source_key"] = str(i)
        out.append(RecordChange("customer", rid, row["source_system"], values, ts, Cause(rid, i, ts)))
        labels.append(row["label"])
    return out, labels


def _batches(chs: list[RecordChange], start: int, stop: int, size: int) -> list[list[RecordChange]]:
    return [chs[s : min(s + size, stop)] for s in range(start, stop, size)]


def run_single(config: MatchingConfig, chs: list[RecordChange], fill: int, *, bare: bool) -> dict[str, Any]:
    """GoldenBook (or the bare Resolver) filled with ``fill`` records, then measured on the rest."""
    surv = load_survivorship_config(survivorship_path(CONFIG, "customer"))
    book = GoldenBook(config, surv)
    resolver = Resolver(config)

    def apply(batch: list[RecordChange]) -> None:
        if bare:
            resolver.upsert_many((c.record_id, c.values or {}) for c in batch)
        else:
            book.apply(batch, now_us=0)

    for b in _batches(chs, 0, fill, 2000):
        apply(b)
    gc.collect()
    busy = wait_quiet()
    t0, c0 = time.perf_counter(), time.process_time()
    for b in _batches(chs, fill, len(chs), 1000):
        apply(b)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    part = resolver.partition() if bare else book.resolver.partition()
    size, took = _pickled(resolver if bare else book)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "other_cores_busy": busy,
        "partition": part,
        "state_bytes": size,
        "state_pickle_cpu_s": took,
    }


def _pickled(state: object) -> tuple[int, float]:
    """Pickled size and pickling CPU seconds of a state object (what a recovery snapshot of it costs
    at every epoch that touches it)."""
    gc.collect()
    c0 = time.process_time()
    size = len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    return size, time.process_time() - c0


def run_staged(config: MatchingConfig, chs: list[RecordChange], fill: int, key_groups: int) -> dict[str, Any]:
    """The stage functions in one process, filled then measured like :func:`run_single`."""
    surv = load_survivorship_config(survivorship_path(CONFIG, "customer"))
    sim = StagedResolver(StageContext(config, surv, key_groups))
    for b in _batches(chs, 0, fill, 2000):
        sim.submit(b)
        sim.run()
    gc.collect()
    busy = wait_quiet()
    a0 = sim.activations
    t0, c0 = time.perf_counter(), time.process_time()
    for b in _batches(chs, fill, len(chs), 1000):
        sim.submit(b)
        sim.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    by_stage: dict[str, int] = {}
    secs_by_stage: dict[str, float] = {}
    for k, st in sim.stages.items():
        size, took = _pickled(st)
        letter = k.rsplit("/", 1)[1][0]
        by_stage[letter] = by_stage.get(letter, 0) + size
        secs_by_stage[letter] = secs_by_stage.get(letter, 0.0) + took
    scored = sum(getattr(s, "scored", 0) for s in sim.stages.values())
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "other_cores_busy": busy,
        "partition": sim.cluster.partition(),
        "activations_per_batch": (sim.activations - a0) / max(1, len(_batches(chs, fill, len(chs), 1000))),
        "state_bytes": sum(by_stage.values()),
        "state_pickle_cpu_s": sum(secs_by_stage.values()),
        "state_bytes_by_stage": by_stage,
        "state_pickle_cpu_s_by_stage": secs_by_stage,
        "pairs_scored": scored,
        "idle": sim.cluster.idle(),
    }


# -- the Bytewax flows ---------------------------------------------------------------------------


def _flow_child(args: argparse.Namespace) -> None:
    """One process of a flow run (``--child``)."""
    from datetime import timedelta

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import cluster_main

    from flows.resolve.operator import resolve
    from flows.resolve.staged_operator import resolve_staged

    with open(args.data, "rb") as f:
        batches: list[list[RecordChange]] = pickle.load(f)
    parts = args.processes

    class _Part(StatefulSourcePartition[list[RecordChange], int]):
        def __init__(self, mine: list[list[RecordChange]]) -> None:
            self.mine = mine
            self.i = 0

        def next_batch(self) -> list[list[RecordChange]]:
            if self.i >= len(self.mine):
                raise StopIteration
            self.i += 1
            return [self.mine[self.i - 1]]

        def snapshot(self) -> int:
            return self.i

    class _Source(FixedPartitionedSource[list[RecordChange], int]):
        def list_parts(self) -> list[str]:
            return [str(i) for i in range(parts)]

        def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Part:
            # Each partition reads every parts-th batch: records of one batch stay together.
            return _Part(batches[int(for_part) :: parts])

    class _Count(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            pass

    class _Sink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
            return _Count()

    flow = Dataflow("bench_resolve")
    up = op.input("in", flow, _Source())
    if args.mode == "staged":
        golden = resolve_staged("resolve", up, config_dir=Path(args.config_dir), key_groups=args.key_groups)
    else:
        golden = resolve("resolve", up, config_dir=Path(args.config_dir))
    op.output("out", golden, _Sink())
    addresses = [f"127.0.0.1:{args.port + i}" for i in range(parts)] if parts > 1 else []
    recovery = None
    if args.recovery:
        from bytewax.recovery import RecoveryConfig

        recovery = RecoveryConfig(args.recovery)
    ready = time.perf_counter()
    cluster_main(  # type: ignore[no-untyped-call]
        flow, addresses, args.proc, epoch_interval=timedelta(seconds=5), recovery_config=recovery
    )
    if args.proc == 0:
        print(json.dumps({"run_s": time.perf_counter() - ready}), flush=True)


def run_flow(
    mode: str,
    processes: int,
    data: Path,
    config_dir: Path,
    key_groups: int,
    port: int,
    recovery: Path | None = None,
) -> dict[str, Any]:
    """One flow run: wall seconds from "flow built" (process 0) and CPU seconds of all processes
    (``recovery``: a fresh recovery store there, snapshots every 5 s epoch)."""
    extra: list[str] = []
    if recovery is not None:
        import shutil

        from bytewax.recovery import init_db_dir

        shutil.rmtree(recovery, ignore_errors=True)
        recovery.mkdir(parents=True)
        init_db_dir(recovery, max(processes, 2))
        extra = ["--recovery", str(recovery)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = []
    for proc in range(processes):
        cmd = [
            sys.executable,
            "-m",
            "bench.er.staged",
            "--child",
            "--mode",
            mode,
            "--processes",
            str(processes),
            "--proc",
            str(proc),
            "--data",
            str(data),
            "--config-dir",
            str(config_dir),
            "--key-groups",
            str(key_groups),
            "--port",
            str(port),
            *extra,
        ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"flow run failed: {[p.returncode for p in procs]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run_s = json.loads(outs[0].strip().splitlines()[-1])["run_s"]
    return {"run_s": run_s, "cpu_s": cpu}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _median_runs(rs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    cpu = statistics.median(r["cpu_s"] for r in rs)
    wall = statistics.median(r["wall_s"] for r in rs)
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "rec_per_s": n / wall,
        "rec_per_cpu_s": n / cpu,
        "cpu_runs": [r["cpu_s"] for r in rs],
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.er.staged", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--records", type=int, default=120_000)
    p.add_argument("--fill", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--key-groups",
        default=str(DataflowSettings().resolve_key_groups),
        help="key groups of the staged side (comma list: one staged side per count; default: the setting's)",
    )
    p.add_argument("--flows", action="store_true", help="also run the Bytewax flows")
    p.add_argument("--flow-records", type=int, default=60_000)
    p.add_argument("--flow-processes", default="1,2", help="flows without recovery: process counts")
    p.add_argument("--no-inprocess", action="store_true")
    p.add_argument("--with-recovery", action="store_true", help="flows: also runs with a recovery store")
    p.add_argument("--recovery-processes", default="1", help="flows with recovery: process counts")
    p.add_argument("--only-recovery", action="store_true", help="flows: only the recovery runs")
    p.add_argument("--quiet-wait", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    # child process of a flow run
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--proc", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--config-dir", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=2101, help=argparse.SUPPRESS)
    p.add_argument("--recovery", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.key_groups = int(args.key_groups)
        _flow_child(args)
        return
    from bench.er.run import QUIET_WAIT

    QUIET_WAIT[0] = args.quiet_wait
    groups = _ints(args.key_groups)
    started = time.perf_counter()
    echo(f"{args.records:,} synthetic customers")
    chs, _ = changes(args.records)
    base = load_matching_config(CONFIG / "matching" / "customer.yaml")
    t0 = time.perf_counter()
    rows = [c.values or {} for c in chs[: args.fill]]
    import polars as pl

    config, _ = train_with_report(pl.DataFrame(rows, infer_schema_length=None), base)
    echo(f"trained in {time.perf_counter() - t0:.1f} s")
    results: dict[str, Any] = {
        "benchmark": "bench.er.staged",
        "command": "python -m bench.er.staged " + shlex.join(sys.argv[1:]),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "records": args.records,
        "fill": args.fill,
        "key_groups": groups,
    }
    sides = ["resolver", "single", *(f"staged_kg{g}" for g in groups)]
    if not args.no_inprocess:
        n = args.records - args.fill
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for k in range(args.runs):
            for name in sides:
                gc.collect()
                if name.startswith("staged"):
                    r = run_staged(config, chs, args.fill, int(name.removeprefix("staged_kg")))
                else:
                    r = run_single(config, chs, args.fill, bare=name == "resolver")
                runs[name].append(r)
                echo(
                    f"run {k + 1}/{args.runs} {name}: {n / r['wall_s']:,.0f} rec/s, cpu {r['cpu_s']:.2f} s "
                    f"({n / r['cpu_s']:,.0f} rec/cpu-s), load {load_avg()}"
                )
        inproc: dict[str, Any] = {"measured_records": n}
        for name, rs in runs.items():
            inproc[name] = _median_runs(rs, n)
            last = rs[-1]
            inproc[name].update(
                {
                    k: v
                    for k, v in last.items()
                    if k not in ("wall_s", "cpu_s", "partition", "other_cores_busy")
                }
            )
        for name in sides[2:]:
            same = runs[name][0]["partition"] == runs["single"][0]["partition"]
            inproc[name]["partition_equal"] = same
            ratio = inproc[name]["cpu_s"] / inproc["single"]["cpu_s"]
            inproc[f"cpu_ratio_{name}_vs_single"] = ratio
            echo(f"in process {name}: same partition as single: {same}; staged / single CPU = {ratio:.2f}")
        results["in_process"] = inproc
    if args.flows:
        results["flows"] = run_flows(args, config, chs, groups)
    results["wall_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    echo(f"wrote {args.out}")


def run_flows(
    args: argparse.Namespace, config: MatchingConfig, chs: list[RecordChange], groups: list[int]
) -> dict[str, Any]:
    """The flow runs: each (processes, recovery) set runs single and every staged side alternately,
    ``--runs`` times, each also on no records (its start-up CPU, subtracted)."""
    flows: dict[str, Any] = {"records": args.flow_records, "epoch_s": 5}
    n = args.flow_records
    modes = [("single", 0), *(("staged", g) for g in groups)]
    plan = [(procs, True) for procs in _ints(args.recovery_processes)] if args.with_recovery else []
    if not args.only_recovery:
        plan += [(procs, False) for procs in _ints(args.flow_processes)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "batches.pkl"
        empty = Path(tmp) / "empty.pkl"
        cfg_dir = Path(tmp) / "config"
        (cfg_dir / "matching").mkdir(parents=True)
        (cfg_dir / "survivorship").mkdir()
        write_matching_config(config, cfg_dir / "matching" / "customer.yaml")
        (cfg_dir / "survivorship" / "customer.yaml").write_text(
            survivorship_path(CONFIG, "customer").read_text()
        )
        with open(data, "wb") as f:
            pickle.dump(_batches(chs, 0, n, 1000), f)
        with open(empty, "wb") as f:
            pickle.dump([], f)
        port = 2101
        for procs, recovery in plan:
            store = Path(tmp) / "recovery" if recovery else None
            base_runs: dict[str, list[dict[str, Any]]] = {}
            full_runs: dict[str, list[dict[str, Any]]] = {}
            for k in range(args.runs):
                for mode, kg in modes:
                    name = mode if mode == "single" else f"staged_kg{kg}"
                    port += 10
                    base = run_flow(mode, procs, empty, cfg_dir, kg or 1, port, store)
                    base_runs.setdefault(name, []).append(base)
                    port += 10
                    wait_quiet()
                    r = run_flow(mode, procs, data, cfg_dir, kg or 1, port, store)
                    full_runs.setdefault(name, []).append(r)
                    echo(
                        f"flow {name} -p {procs}{' with recovery' if recovery else ''} run {k + 1}: "
                        f"{r['run_s']:.1f} s, cpu {r['cpu_s']:.1f} s (empty: {base['cpu_s']:.1f} s), "
                        f"load {load_avg()}"
                    )
            suffix = f"p{procs}" + ("_recovery" if recovery else "")
            for name, rs in full_runs.items():
                run_s = statistics.median(r["run_s"] for r in rs)
                startup = statistics.median(r["cpu_s"] for r in base_runs[name])
                cpu = statistics.median(r["cpu_s"] for r in rs) - startup
                flows[f"{name}_{suffix}"] = {
                    "run_s": run_s,
                    "rec_per_s": n / run_s,
                    "cpu_s": cpu,
                    "rec_per_cpu_s": n / cpu,
                    "startup_cpu_s": startup,
                    "cpu_runs": [r["cpu_s"] for r in rs],
                    "run_s_runs": [r["run_s"] for r in rs],
                }
            for name in full_runs:
                if name != "single":
                    ratio = flows[f"{name}_{suffix}"]["cpu_s"] / flows[f"single_{suffix}"]["cpu_s"]
                    flows[f"cpu_ratio_{name}_vs_single_{suffix}"] = ratio
                    echo(f"flows {suffix}: {name} / single CPU = {ratio:.2f}")
    return flows


if __name__ == "__main__":
    main()
