"""Where a bronze worker's time goes, measured with timers around each stage.

cProfile slows per-call-heavy code (the per-message loops) far more than the Rust and C parts, so
its percentages mislead. This instrumentation wraps only a few coarse functions with
``time.perf_counter`` and ``time.thread_time`` (wall and the calling thread's CPU, about a
microsecond per batch) and counts the cyclic garbage collector's pauses via ``gc.callbacks``.

The bronze flow runs on two threads per process: the worker thread polls (``source.next_batch``),
decodes and builds the Arrow rows (``worker.prepare``), then waits for the previous batch's commit
(``worker.wait_commit``); the commit thread appends (``commit.append``, of which
``commit.write_deltalake`` is the Parquet write and Delta commit, in Rust: its CPU is spent on
delta-rs's own threads, so only the wall time says much). On the worker thread, everything not
inside a wrapped stage is Bytewax and idle time.

Installed by ``bench.bronze.worker --stage-times PATH`` before the flow is built; the totals are
written to ``PATH`` as JSON when the worker stops.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flows.bronze as bronze_flow
import sinks.delta.appender as appender_mod
from flows.engine.kafka_source import KafkaBatchPartition

TOTALS: dict[str, float] = {}
CPU: dict[str, float] = {}
COUNTS: dict[str, int] = {}
_first_at: list[float] = []
_gc_started: dict[int, float] = {}


def _add(name: str, seconds: float, cpu: float = 0.0) -> None:
    TOTALS[name] = TOTALS.get(name, 0.0) + seconds
    CPU[name] = CPU.get(name, 0.0) + cpu
    COUNTS[name] = COUNTS.get(name, 0) + 1


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        if not _first_at:
            _first_at.append(started)
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, time.perf_counter() - started, time.thread_time() - cpu)

    return wrapper


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    tid = threading.get_ident()
    if phase == "start":
        _gc_started[tid] = time.perf_counter()
    elif tid in _gc_started:
        _add(f"gc_gen{info.get('generation', '?')}", time.perf_counter() - _gc_started.pop(tid))


def install() -> None:
    """Wrap the stages. Must run before ``build_bronze_flow`` (it looks ``decode`` up then)."""
    KafkaBatchPartition.next_batch = _timed(  # type: ignore[method-assign]
        "source.next_batch", KafkaBatchPartition.next_batch
    )
    bronze_flow.decode = _timed("decode", bronze_flow.decode)
    bronze_flow.BronzeWriter.prepare = _timed(  # type: ignore[method-assign]
        "worker.prepare", bronze_flow.BronzeWriter.prepare
    )
    bronze_flow.BackgroundBronzeWriter.flush = _timed(  # type: ignore[method-assign]
        "worker.wait_commit", bronze_flow.BackgroundBronzeWriter.flush
    )
    bronze_flow.BronzeWriter.append = _timed(  # type: ignore[method-assign]
        "commit.append", bronze_flow.BronzeWriter.append
    )
    wdl = appender_mod.write_deltalake  # type: ignore[attr-defined]
    appender_mod.write_deltalake = _timed("commit.write_deltalake", wdl)  # type: ignore[attr-defined]
    obs = bronze_flow.observe_many  # type: ignore[attr-defined]
    bronze_flow.observe_many = _timed("commit.metrics", obs)  # type: ignore[attr-defined]
    gc.callbacks.append(_on_gc)


def dump(path: Path) -> None:
    """Write the totals (seconds and calls per stage) and the span since the first timed call."""
    span = time.perf_counter() - _first_at[0] if _first_at else 0.0
    doc = {
        "span_s": round(span, 3),
        "stages": {
            k: {"s": round(v, 3), "cpu_s": round(CPU[k], 3), "calls": COUNTS[k]}
            for k, v in sorted(TOTALS.items())
        },
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
