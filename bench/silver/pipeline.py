"""Kafka -> decode -> bronze frame -> canonical map -> silver MERGE, the dataflow's steps in one loop.

The steps and their order are those of the ingest dataflow (``flows/ingest.py``): a poll is split per
partition into a :class:`~core.events.RawBatch`, decoded by :func:`cdc.envelope.decode_batch`, turned
into bronze rows by :func:`sinks.delta.bronze.batch_to_arrow`, mapped by
:func:`flows.canonical.map_batch`, split by :func:`sinks.delta.silver.split_invalid`, and the records
go to :meth:`SilverWriter.apply` once ``batch`` of them are pending (one MERGE: one Delta commit with
one application transaction per Kafka partition). No Bytewax and no bronze commit: this measures the
silver path, and the bronze bench (``bench/bronze``) measures the rest.

``overlap=True`` applies each batch in a second thread while the next one is consumed and mapped
(delta-rs runs the MERGE in Rust without the GIL). Batches still reach the writer one at a time and
in offset order, so the semantics are those of the serial loop.
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from confluent_kafka import Consumer, TopicPartition

from bench.silver.generate import Segment
from cdc.envelope import decode_batch
from core.events import RawBatch
from flows.canonical import Mapping, map_batch
from sinks.delta.bronze import batch_to_arrow
from sinks.delta.silver import ApplyResult, SilverWriter, split_invalid

POLL = 20_000


def cpu_seconds() -> float:
    """CPU time of this process, every thread (delta-rs and polars work in native threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class RunStats:
    """What consuming and applying one segment took."""

    messages: int = 0
    changes: int = 0
    tombstones: int = 0
    rejected: int = 0
    invalid: int = 0
    records: int = 0
    rows_applied: int = 0
    rows_stale: int = 0
    rows_skipped_committed: int = 0
    commits: int = 0
    maintenance_runs: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    bronze_frames: list[pl.DataFrame] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (no frames)."""
        out = {k: v for k, v in vars(self).items() if k not in ("steps", "bronze_frames")}
        out["seconds"] = round(self.seconds, 3)
        out["cpu_seconds"] = round(self.cpu_seconds, 3)
        out["steps_s"] = {k: round(v, 3) for k, v in self.steps.items()}
        return out


def consumer(bootstrap: str, topic: str, start: dict[int, int]) -> Consumer:
    """A consumer on every partition of ``topic`` from ``start`` (the source's settings: no group)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "goldstream-bench-silver",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": False,
        }
    )
    c.assign([TopicPartition(topic, p, off) for p, off in start.items()])
    return c


def run_segment(
    bootstrap: str,
    topic: str,
    segment: Segment,
    mapping: Mapping,
    writer: SilverWriter,
    *,
    batch: int,
    keep_frames: bool = False,
    overlap: bool = False,
) -> RunStats:
    """Consume ``segment`` and apply it to ``writer`` in MERGEs of ``batch`` records (timed)."""
    stats = RunStats()
    steps = stats.steps
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    pool = ThreadPoolExecutor(1, thread_name_prefix="silver-apply") if overlap else None
    running: Future[tuple[ApplyResult, float]] | None = None
    c0, w0 = cpu_seconds(), time.perf_counter()
    cons = consumer(bootstrap, topic, segment.start)
    left = {p: segment.end[p] - segment.start[p] for p in segment.start if segment.end[p] > segment.start[p]}

    def apply(records: pl.DataFrame) -> tuple[ApplyResult, float]:
        t = time.perf_counter()
        return writer.apply(records), time.perf_counter() - t

    def collect(done: tuple[ApplyResult, float]) -> None:
        result, seconds = done
        steps["silver_apply"] += seconds
        stats.rows_applied += result.rows_applied
        stats.rows_stale += result.rows_ignored_stale
        stats.rows_skipped_committed += result.rows_skipped_committed
        stats.commits += result.commit_version is not None
        stats.maintenance_runs += result.maintenance is not None

    def wait() -> None:
        nonlocal running
        if running is not None:
            t = time.perf_counter()
            collect(running.result())
            steps["apply_wait"] += time.perf_counter() - t
            running = None

    def flush() -> None:
        nonlocal pending, pending_rows, running
        if not pending:
            return
        records = pl.concat(pending, how="vertical_relaxed") if len(pending) > 1 else pending[0]
        pending, pending_rows = [], 0
        wait()  # one batch at a time, in order: the writer's contract
        if pool is None:
            collect(apply(records))
        else:
            running = pool.submit(apply, records)

    try:
        while left:
            t = time.perf_counter()
            # short timeout: the segment is already in the topic; a long one would be idle time
            msgs = cons.consume(POLL, 0.05)
            parts: dict[int, list[tuple[int, bytes | None, bytes | None, int]]] = defaultdict(list)
            for m in msgs:
                if m.error() is not None:
                    raise RuntimeError(f"consuming {topic}: {m.error()}")
                p, off = m.partition(), m.offset()
                assert p is not None and off is not None
                if p not in left or off >= segment.end[p]:
                    continue  # the next segment's messages
                parts[p].append((off, m.key(), m.value(), m.timestamp()[1]))
            steps["consume"] += time.perf_counter() - t
            for p, rows in parts.items():
                stats.messages += len(rows)
                left[p] -= len(rows)
                if left[p] <= 0:
                    del left[p]
                t = time.perf_counter()
                raw = RawBatch(
                    topic=topic,
                    partition=p,
                    offsets=tuple(r[0] for r in rows),
                    keys=tuple(r[1] for r in rows),
                    values=tuple(r[2] for r in rows),
                    timestamps_ms=tuple(r[3] for r in rows),
                )
                decoded = decode_batch(raw)
                t2 = time.perf_counter()
                steps["decode"] += t2 - t
                stats.tombstones += decoded.tombstones
                stats.rejected += len(decoded.rejected)
                if len(decoded) == 0:
                    continue
                bronze = pl.from_arrow(batch_to_arrow(decoded))
                assert isinstance(bronze, pl.DataFrame)
                t3 = time.perf_counter()
                steps["bronze_frame"] += t3 - t2
                mapped = map_batch(mapping, bronze)
                records, bad = split_invalid(mapped.records)
                steps["canonical_map"] += time.perf_counter() - t3
                stats.changes += bronze.height
                stats.rejected += mapped.rejects.height
                stats.invalid += bad.height
                stats.records += records.height
                if keep_frames:
                    stats.bronze_frames.append(bronze)
                pending.append(records)
                pending_rows += records.height
                if pending_rows >= batch:
                    flush()
        flush()
        wait()
    finally:
        cons.close()
        if pool is not None:
            pool.shutdown(wait=True)
    stats.seconds = time.perf_counter() - w0
    stats.cpu_seconds = cpu_seconds() - c0
    return stats
