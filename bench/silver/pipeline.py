"""Kafka -> decode -> bronze frame -> canonical map -> silver MERGE, the dataflow's steps in one loop.

The steps and their order are those of the ingest dataflow (``flows/ingest.py``): a poll is split per
partition into a :class:`~core.events.RawBatch`, decoded by :func:`cdc.envelope.decode_batch`, turned
into bronze rows by :func:`sinks.delta.bronze.batch_to_arrow`, mapped by
:func:`flows.canonical.map_batch`, split by :func:`sinks.delta.silver.split_invalid`, and the records
go to :meth:`SilverWriter.apply` once ``batch`` of them are pending (one MERGE: one Delta commit with
one application transaction per Kafka partition). No Bytewax and no bronze commit: this measures the
silver path, and the bronze bench (``bench/bronze``) measures the rest.

``overlap=True`` applies each batch in a second thread while the next one is consumed and mapped
(the MERGE runs in polars or delta-rs, without the GIL), as the flow's silver step does on its writer
thread. Batches still reach the writer one at a time and in offset order, so the semantics are those
of the serial loop.

``run_segment_mapped`` is the flow's topology with one worker per partition: a :class:`MapperPool`
process per Kafka partition consumes, decodes and maps (the flow maps on every worker), and hands
the records to this process, where the one writer of the entity applies them (the flow routes every
record of an entity to one silver step). The records cross as uncompressed Arrow IPC, as Bytewax
would pickle them between workers.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import pickle
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import polars as pl
from confluent_kafka import Consumer, TopicPartition

from bench.silver.generate import Segment
from cdc.envelope import decode_batch, raw_batch
from core.events import RawBatch
from flows.canonical import Mapping, map_batch
from sinks.delta.bronze import batch_to_arrow
from sinks.delta.silver import ApplyResult, SilverWriter, split_invalid

POLL = 40_000
"""Messages per poll: the flow's ``dataflow.batch_size`` (20,000) per partition, for 2 partitions.
The flow's source emits one batch of up to ``batch_size`` messages per partition, and the mapping
runs per such batch; its cost per record falls with the batch size."""


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

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (no frames)."""
        out = {k: v for k, v in vars(self).items() if k != "steps"}
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


Rows = list[tuple[int, bytes | None, bytes | None, int]]


def poll_partitions(cons: Consumer, topic: str, segment: Segment, poll: int) -> dict[int, Rows]:
    """One poll, split per partition, without the messages past the segment's end."""
    # short timeout: the segment is already in the topic; a long one would be idle time
    msgs = cons.consume(poll, 0.05)
    parts: dict[int, Rows] = defaultdict(list)
    for m in msgs:
        if m.error() is not None:
            raise RuntimeError(f"consuming {topic}: {m.error()}")
        p, off = m.partition(), m.offset()
        assert p is not None and off is not None
        if p not in segment.end or off >= segment.end[p]:
            continue  # the next segment's messages
        parts[p].append((off, m.key(), m.value(), m.timestamp()[1]))
    return parts


def map_rows(
    topic: str, partition: int, rows: Rows, mapping: Mapping, stats: RunStats
) -> pl.DataFrame | None:
    """decode -> bronze frame -> canonical map -> contract split of one partition's poll (timed)."""
    steps = stats.steps
    stats.messages += len(rows)
    t = time.perf_counter()
    raw = RawBatch(
        topic=topic,
        partition=partition,
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
        return None
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
    return records


class Applier:
    """Collects records and applies them in MERGEs of ``batch``, one at a time, in arrival order;
    with ``overlap`` each MERGE runs on a writer thread while the caller goes on."""

    def __init__(self, writer: SilverWriter, stats: RunStats, batch: int, overlap: bool) -> None:
        self.writer = writer
        self.stats = stats
        self.batch = batch
        self.pending: list[pl.DataFrame] = []
        self.pending_rows = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="silver-apply") if overlap else None
        self.running: Future[tuple[ApplyResult, float]] | None = None

    def add(self, records: pl.DataFrame) -> None:
        """Queue ``records``; a MERGE starts once ``batch`` of them are pending."""
        self.pending.append(records)
        self.pending_rows += records.height
        if self.pending_rows >= self.batch:
            self.flush()

    def _apply(self, records: pl.DataFrame) -> tuple[ApplyResult, float]:
        t = time.perf_counter()
        return self.writer.apply(records), time.perf_counter() - t

    def _collect(self, done: tuple[ApplyResult, float]) -> None:
        result, seconds = done
        stats, steps = self.stats, self.stats.steps
        steps["silver_apply"] += seconds
        for name, spent in result.steps.items():
            steps[f"silver_{name}"] += spent
        stats.rows_applied += result.rows_applied
        stats.rows_stale += result.rows_ignored_stale
        stats.rows_skipped_committed += result.rows_skipped_committed
        stats.commits += result.commit_version is not None
        stats.maintenance_runs += result.maintenance is not None

    def wait(self) -> None:
        """Until the running MERGE (if any) is committed."""
        if self.running is not None:
            t = time.perf_counter()
            self._collect(self.running.result())
            self.stats.steps["apply_wait"] += time.perf_counter() - t
            self.running = None

    def flush(self) -> None:
        """Start a MERGE of everything pending."""
        if not self.pending:
            return
        pending = self.pending
        records = pl.concat(pending, how="vertical_relaxed") if len(pending) > 1 else pending[0]
        self.pending, self.pending_rows = [], 0
        self.wait()  # one batch at a time, in order: the writer's contract
        if self.pool is None:
            self._collect(self._apply(records))
        else:
            self.running = self.pool.submit(self._apply, records)

    def close(self) -> None:
        """Apply the rest and wait for it."""
        self.flush()
        self.wait()
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def run_segment(
    bootstrap: str,
    topic: str,
    segment: Segment,
    mapping: Mapping,
    writer: SilverWriter,
    *,
    batch: int,
    overlap: bool = False,
    poll: int = POLL,
) -> RunStats:
    """Consume ``segment`` and apply it to ``writer`` in MERGEs of ``batch`` records (timed)."""
    stats = RunStats()
    c0, w0 = cpu_seconds(), time.perf_counter()
    applier = Applier(writer, stats, batch, overlap)
    cons = consumer(bootstrap, topic, segment.start)
    left = {p: segment.end[p] - segment.start[p] for p in segment.start if segment.end[p] > segment.start[p]}
    try:
        while left:
            t = time.perf_counter()
            parts = poll_partitions(cons, topic, segment, poll)
            stats.steps["consume"] += time.perf_counter() - t
            for p, rows in parts.items():
                left[p] -= len(rows)
                if left[p] <= 0:
                    del left[p]
                records = map_rows(topic, p, rows, mapping, stats)
                if records is not None:
                    applier.add(records)
        applier.close()
    finally:
        cons.close()
    stats.seconds = time.perf_counter() - w0
    stats.cpu_seconds = cpu_seconds() - c0
    return stats


def bronze_sample(
    bootstrap: str, topic: str, segment: Segment, rows: int, poll: int = POLL
) -> list[pl.DataFrame]:
    """Bronze frames (one per partition poll) of the first ``rows`` changes of ``segment``."""
    frames: list[pl.DataFrame] = []
    total = 0
    cons = consumer(bootstrap, topic, segment.start)
    try:
        while total < rows:
            for p, part in poll_partitions(cons, topic, segment, poll).items():
                decoded = decode_batch(raw_batch(topic, p, [(off, k, v) for off, k, v, _ in part]))
                if len(decoded):
                    frame = pl.from_arrow(batch_to_arrow(decoded))
                    assert isinstance(frame, pl.DataFrame)
                    frames.append(frame)
                    total += frame.height
    finally:
        cons.close()
    return frames


# -- one mapper process per partition ---------------------------------------------------------------


_RECORDS, _DONE = b"R", b"D"
"""First byte of a mapper's message: records (Arrow IPC follows), or its range is done (pickle)."""


def _mapper(conn: Connection, bootstrap: str, topic: str, partition: int, poll: int) -> None:
    """A mapper process: per command ``(start, end)``, map that range of its partition and send the
    records (Arrow IPC bytes), then its counters and CPU seconds."""
    from bench.silver.generate import customers_mapping
    from core.runtime import tune_gc

    tune_gc()
    mapping = customers_mapping()
    conn.send(("ready",))
    while (command := conn.recv()) is not None:
        start, end = command
        stats = RunStats()
        c0 = cpu_seconds()
        segment = Segment("part", 0, 0, start={partition: start}, end={partition: end})
        cons = consumer(bootstrap, topic, {partition: start})
        left = end - start
        try:
            while left > 0:
                t = time.perf_counter()
                rows = poll_partitions(cons, topic, segment, poll).get(partition, [])
                stats.steps["consume"] += time.perf_counter() - t
                if not rows:
                    continue
                left -= len(rows)
                records = map_rows(topic, partition, rows, mapping, stats)
                if records is None:
                    continue
                t = time.perf_counter()
                buf = io.BytesIO()
                buf.write(_RECORDS)
                records.write_ipc(buf, compression="uncompressed")
                conn.send_bytes(buf.getbuffer())
                stats.steps["send"] += time.perf_counter() - t
        finally:
            cons.close()
        counters = {k: v for k, v in stats.summary().items() if k != "steps_s"}
        conn.send_bytes(_DONE + pickle.dumps((counters, dict(stats.steps), cpu_seconds() - c0)))
    conn.close()


class MapperPool:
    """One long-lived mapper process per partition (started once: imports take seconds)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, poll: int) -> None:
        ctx = mp.get_context("spawn")  # this process runs librdkafka threads: no fork
        self.conns: dict[int, Connection] = {}
        self.procs = []
        for p in range(partitions):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_mapper, args=(there, bootstrap, topic, p, poll), daemon=True)
            proc.start()
            there.close()
            self.conns[p] = here
            self.procs.append(proc)
        for conn in self.conns.values():
            if conn.recv() != ("ready",):
                raise RuntimeError("a mapper process did not start")

    def close(self) -> None:
        """Stop the processes."""
        for conn in self.conns.values():
            conn.send(None)
        for proc in self.procs:
            proc.join(30)


_COUNTERS = ("messages", "changes", "tombstones", "rejected", "invalid", "records")


def run_segment_mapped(
    pool: MapperPool,
    segment: Segment,
    writer: SilverWriter,
    *,
    batch: int,
    overlap: bool = True,
    on_records: Callable[[pl.DataFrame], None] | None = None,
) -> RunStats:
    """``run_segment`` with the mapping in ``pool``'s processes and the MERGEs here (timed from the
    commands to the mappers to the last commit; CPU of every process)."""
    stats = RunStats()
    c0, w0 = cpu_seconds(), time.perf_counter()
    applier = Applier(writer, stats, batch, overlap)
    active: dict[Connection, int] = {}
    for p, conn in pool.conns.items():
        if segment.end.get(p, 0) > segment.start.get(p, 0):
            conn.send((segment.start[p], segment.end[p]))
            active[conn] = p
    mapper_cpu = 0.0
    while active:
        for ready in wait(list(active)):
            assert isinstance(ready, Connection)
            conn = ready
            try:
                payload = conn.recv_bytes()
            except EOFError as exc:
                raise RuntimeError(f"mapper of partition {active[conn]} died") from exc
            if payload[:1] == _DONE:  # the mapper finished its range
                counters, steps, cpu = pickle.loads(payload[1:])
                for name in _COUNTERS:
                    setattr(stats, name, getattr(stats, name) + counters[name])
                for name, spent in steps.items():
                    stats.steps[f"mapper_{name}"] += spent
                mapper_cpu += cpu
                del active[conn]
                continue
            t = time.perf_counter()
            records = pl.read_ipc(io.BytesIO(memoryview(payload)[1:]))
            stats.steps["receive"] += time.perf_counter() - t
            if on_records is not None:
                on_records(records)
            applier.add(records)
    applier.close()
    stats.seconds = time.perf_counter() - w0
    stats.cpu_seconds = cpu_seconds() - c0 + mapper_cpu
    return stats
