"""Where a bronze worker's time goes, measured with wall-clock timers around each stage.

cProfile slows per-call-heavy code (the per-message loops) far more than the Rust and C parts, so
its percentages mislead. This instrumentation wraps only a few coarse functions with
``time.perf_counter`` (about a microsecond per batch) and counts the cyclic garbage collector's
pauses via ``gc.callbacks``. Everything not inside a wrapped stage is Bytewax and idle time.

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
from sinks.delta.appender import IdempotentAppender

TOTALS: dict[str, float] = {}
COUNTS: dict[str, int] = {}
_first_at: list[float] = []
_gc_started: dict[int, float] = {}


def _add(name: str, seconds: float) -> None:
    TOTALS[name] = TOTALS.get(name, 0.0) + seconds
    COUNTS[name] = COUNTS.get(name, 0) + 1


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        if not _first_at:
            _first_at.append(started)
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, time.perf_counter() - started)

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
    b2a = bronze_flow.batch_to_arrow  # type: ignore[attr-defined]
    bronze_flow.batch_to_arrow = _timed("write.batch_to_arrow", b2a)  # type: ignore[attr-defined]
    bronze_flow.BronzeWriter.write = _timed(  # type: ignore[method-assign]
        "write (all)", bronze_flow.BronzeWriter.write
    )
    IdempotentAppender.append = _timed(  # type: ignore[method-assign]
        "write.delta_append (all)", IdempotentAppender.append
    )
    wdl = appender_mod.write_deltalake  # type: ignore[attr-defined]
    appender_mod.write_deltalake = _timed("write.delta_append.write_deltalake", wdl)  # type: ignore[attr-defined]
    obs = bronze_flow.observe_many  # type: ignore[attr-defined]
    bronze_flow.observe_many = _timed("write.metrics", obs)  # type: ignore[attr-defined]
    gc.callbacks.append(_on_gc)


def dump(path: Path) -> None:
    """Write the totals (seconds and calls per stage) and the span since the first timed call."""
    span = time.perf_counter() - _first_at[0] if _first_at else 0.0
    doc = {
        "span_s": round(span, 3),
        "stages": {k: {"s": round(v, 3), "calls": COUNTS[k]} for k, v in sorted(TOTALS.items())},
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
