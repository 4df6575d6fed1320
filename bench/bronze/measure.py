"""Running one measurement: a ceiling process or a bronze dataflow cluster, timed and checked.

Dataflow timing starts just before the worker processes are spawned (so interpreter start, imports,
flow construction, Bytewax cluster start and the consumers' first fetch are included) and ends at
the modification time of the Delta commit that brings the bronze table to every change event. The
orchestrator learns that by reading only the new ``_delta_log/*.json`` files every 50 ms (each
``add`` action carries ``numRecords``), which costs next to nothing next to the workers. Then it
reads each worker's peak RSS (``VmHWM``) and CPU time from ``/proc``, stops the cluster (SIGINT,
Bytewax's requested stop) and checks the table: row count, no duplicate ``(partition, offset)``,
and the insert/update/delete counts the generator wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from deltalake import DeltaTable

from bench.bronze.ceiling import format_ends
from bench.bronze.generate import SYSTEM, TopicData
from core.settings import Settings
from flows.engine.runner import ensure_recovery_dir, free_ports
from sinks.delta.bronze import bronze_path

Echo = Callable[[str], None]
POLL_S = 0.05


def _python() -> str:
    return sys.executable


def proc_peak_rss_mb(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def system_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, not idle or iowait) since boot."""
    with open("/proc/stat", encoding="utf-8") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(*, max_busy_cores: float, max_wait_s: float, window_s: float = 2.0) -> float:
    """Wait (at most ``max_wait_s``) until the machine's busy CPU over ``window_s`` is below
    ``max_busy_cores``; returns the last busy level seen. Other users' jobs on a shared machine
    would otherwise land in some runs and not in others."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = system_busy_s()
        time.sleep(window_s)
        busy = (system_busy_s() - before) / window_s
        if busy < max_busy_cores or time.monotonic() >= deadline:
            return round(busy, 2)


@dataclass
class DeltaProgress:
    """Follows a Delta table's log: rows added so far and when each commit landed."""

    table: Path
    rows: int = 0
    commits: int = 0
    first_commit_at: float | None = None
    last_commit_at: float = 0.0
    _seen: set[str] = field(default_factory=set)

    def poll(self) -> int:
        """Read the commit files not seen yet; returns the rows added so far."""
        log = self.table / "_delta_log"
        try:
            names = sorted(n for n in os.listdir(log) if n.endswith(".json") and n not in self._seen)
        except FileNotFoundError:
            return self.rows
        for name in names:
            path = log / name
            added = 0
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    if '"add"' not in line:
                        continue
                    action = json.loads(line).get("add")
                    # dataChange=false: a compaction rewrote rows already counted
                    if action and action.get("stats") and action.get("dataChange", True):
                        added += int(json.loads(action["stats"]).get("numRecords", 0))
            self._seen.add(name)
            if added:
                mtime = path.stat().st_mtime
                self.rows += added
                self.commits += 1
                self.first_commit_at = self.first_commit_at or mtime
                self.last_commit_at = max(self.last_commit_at, mtime)
        return self.rows


def verify_bronze(table: Path, data: TopicData) -> dict[str, Any]:
    """Row count, uniqueness by ``(partition, offset)`` and op counts of the bronze table."""
    t = DeltaTable(str(table)).to_pyarrow_table(columns=["partition", "offset", "op"])
    pos = pc.add(pc.multiply(t["partition"].cast("int64"), 1 << 40), t["offset"])
    distinct = pc.count_distinct(pos).as_py()
    ops = {str(r["values"]): int(r["counts"]) for r in pc.value_counts(t["op"]).to_pylist()}
    want_ops = {"c": data.inserts, "u": data.updates, "d": data.deletes}
    problems = []
    if t.num_rows != data.events:
        problems.append(f"{t.num_rows} rows, expected {data.events}")
    if distinct != t.num_rows:
        problems.append(f"{t.num_rows - distinct} duplicate (partition, offset) rows")
    if ops != want_ops:
        problems.append(f"op counts {ops}, expected {want_ops}")
    return {
        "rows": t.num_rows,
        "distinct_positions": distinct,
        "ops": ops,
        "ok": not problems,
        "problems": problems,
    }


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(children: list[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> list[int]:
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(c.poll() is None for c in children):
        time.sleep(0.1)
    for c in children:
        if c.poll() is None:
            c.kill()
    return [c.wait() for c in children]


def run_dataflow(
    settings: Settings,
    data: TopicData,
    *,
    processes: int,
    batch_size: int,
    workdir: Path,
    recovery: bool = True,
    keep: bool = False,
    profile: Path | None = None,
    stage_times: bool = False,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """One timed run of the bronze dataflow with ``processes`` x 1 worker on a fresh Delta root."""
    run_dir = workdir / f"dataflow-{processes}p-{time.strftime('%H%M%S')}-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    delta_root = run_dir / "delta"
    table = bronze_path(delta_root, SYSTEM, "public", "customers")
    recovery_dir = (
        ensure_recovery_dir(run_dir / "recovery", settings.dataflow.recovery_partitions) if recovery else None
    )
    addresses = ",".join(f"127.0.0.1:{p}" for p in free_ports(processes)) if processes > 1 else None
    argvs, logs, ready = [], [], []
    for i in range(processes):
        argv = [
            _python(),
            "-m",
            "bench.bronze.worker",
            "--delta-root",
            str(delta_root),
            "--batch-size",
            str(batch_size),
            "--ready-file",
            str(run_dir / f"ready-{i}"),
        ]
        if recovery_dir is not None:
            argv += ["--recovery-dir", str(recovery_dir)]
        if addresses:
            argv += ["--process-id", str(i), "--addresses", addresses]
        if profile is not None:
            argv += ["--profile", str(profile.with_suffix(f".{i}.prof"))]
        if stage_times:
            argv += ["--stage-times", str(run_dir / f"stages-{i}.json")]
        argvs.append(argv)
        logs.append(run_dir / f"worker-{i}.log")
        ready.append(run_dir / f"ready-{i}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    progress = DeltaProgress(table)
    handles = [log.open("wb") for log in logs]
    busy_before = system_busy_s()
    started = time.time()
    children = [
        subprocess.Popen(argv, stdout=h, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
        for argv, h in zip(argvs, handles, strict=True)
    ]
    completed = False
    try:
        while progress.poll() < data.events:
            for i, c in enumerate(children):
                if c.poll() is not None:
                    raise RuntimeError(
                        f"dataflow process {i} exited with {c.returncode} after {progress.rows:,} rows:\n"
                        + _tail(logs[i])
                    )
            if time.time() - started > timeout_s:
                raise RuntimeError(f"dataflow not done after {timeout_s:.0f} s ({progress.rows:,} rows)")
            time.sleep(POLL_S)
        rss = [proc_peak_rss_mb(c.pid) for c in children]
        cpu = [proc_cpu_s(c.pid) for c in children]
        busy = system_busy_s() - busy_before
        completed = True
    finally:
        codes = _stop(children)
        for h in handles:
            h.close()
        if not completed and not keep:  # keep the worker logs, drop the (large) tables
            shutil.rmtree(delta_root, ignore_errors=True)
    seconds = progress.last_commit_at - started
    ready_at = [float(r.read_text().strip()) for r in ready if r.exists()]
    # The ceiling's clock starts after its imports, before its consumer exists; the dataflow's
    # counterpart is "every process has built its flow" (interpreter start and the bytewax, deltalake
    # and polars imports excluded). Reported beside the launch-to-last-commit time, not instead of it.
    from_ready = progress.last_commit_at - max(ready_at) if len(ready_at) == processes else None
    check = verify_bronze(table, data)
    result: dict[str, Any] = {
        "processes": processes,
        "workers_per_process": 1,
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "ev_per_s": round(data.events / seconds, 1),
        "seconds_from_ready": round(from_ready, 3) if from_ready else None,
        "ev_per_s_from_ready": round(data.events / from_ready, 1) if from_ready else None,
        "peak_rss_mb": round(sum(rss), 1),
        "peak_rss_mb_per_process": [round(r, 1) for r in rss],
        "cpu_s": round(sum(cpu), 2),
        "cpu_s_per_process": [round(x, 2) for x in cpu],
        "other_cpu_s": round(busy - sum(cpu), 2),
        "startup_s": round(max(ready_at) - started, 3) if ready_at else None,
        "first_commit_s": round(progress.first_commit_at - started, 3) if progress.first_commit_at else None,
        "commits": progress.commits,
        "exit_codes": codes,
        "check": check,
    }
    if stage_times:
        result["stages"] = [
            json.loads((run_dir / f"stages-{i}.json").read_text(encoding="utf-8"))
            for i in range(processes)
            if (run_dir / f"stages-{i}.json").exists()
        ]
    if not check["ok"]:
        result["log_tail"] = [_tail(log, 10) for log in logs]
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def run_ceiling(settings: Settings, data: TopicData, *, mode: str) -> dict[str, Any]:
    """One ceiling measurement in a fresh process (``consume`` or ``parse``)."""
    argv = [
        _python(),
        "-m",
        "bench.bronze.ceiling",
        "--bootstrap",
        settings.kafka.bootstrap_servers,
        "--topic",
        data.topic,
        "--ends",
        format_ends(data.low, data.high),
        "--mode",
        mode,
    ]
    busy_before = system_busy_s()
    launched = time.time()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    busy = system_busy_s() - busy_before
    if out.returncode != 0:
        raise RuntimeError(f"ceiling ({mode}) failed with {out.returncode}:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    ok = result["events"] == data.events and result["messages"] == data.messages
    result["ok"] = ok and result.get("rejected", 0) == 0
    result["ev_per_s"] = round(data.events / result["seconds"], 1)
    result["seconds"] = round(result["seconds"], 3)
    # timed from the process launch, as the dataflow is (interpreter start and imports included)
    from_launch = result.pop("ended_at") - launched
    result["seconds_from_launch"] = round(from_launch, 3)
    result["ev_per_s_from_launch"] = round(data.events / from_launch, 1)
    result["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
    result["other_cpu_s"] = round(busy - result["cpu_s"], 2)
    result["cpu_s"] = round(result["cpu_s"], 2)
    return result
