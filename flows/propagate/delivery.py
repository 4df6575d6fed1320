"""Delivering golden changes to one target: plan, send, record (the propagation flow's sink logic).

:class:`TargetSync` is synchronous and has no Bytewax in it (unit-tested with a mock transport). For
one unit of work (the golden changes of one Kafka batch, in offset order) it:

1. decodes and plans every change against the pushed state (:func:`flows.propagate.plan.plan_change`),
   later versions of a record diffing against the planned state of earlier ones, then coalesces;
2. appends ``phase=intent`` rows with the echo fingerprint of each record's new state to
   ``sync/pushed`` *before* calling the API, so the echo can never overtake our bookkeeping;
3. sends: upserts through the batch endpoint (split-and-retry inside the client), merges and
   deactivations one by one, in plan order per record. When the target is down (breaker open, or a
   request failing after every retry) it waits for the breaker and resumes with what is left: a unit
   is never dropped and never half-recorded;
4. appends the sync_log rows, the ``done`` pushed rows and the ledger rows (terminal failures, also
   published to the DLQ topic) under transaction ids ``(target, topic, partition) @ last offset``.

:class:`TargetRuntime` runs a :class:`TargetSync` on its own thread behind a queue, so a slow or
down target never blocks the Bytewax worker (and the other targets); it also tracks which offsets
are still undelivered so the source can pause and never snapshot past them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from core.errors import InvalidInputError, TerminalError
from core.events import RawBatch, Rejected
from core.golden import GoldenChange, decode_change
from core.metrics import RETRIES, STAGE_SECONDS, SYNC_LATENCY_SECONDS, SYNC_OPERATIONS
from core.retry import retry_transient
from flows.propagate.config import TargetConfig
from flows.propagate.mapping import ReadBack
from flows.propagate.plan import PlannedOp, Position, PushedState, apply, coalesce, deactivated, plan_change
from sinks.delta.sync_log import LedgerRow, PushedRow, SyncLogRow, SyncTables, latest_pushed
from sinks.dlq import DeadLetterProducer
from sinks.targets.client import (
    ItemResult,
    RequestFailedError,
    TargetClient,
    TargetUnavailableError,
    UpsertItem,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One golden-topic message for a target."""

    position: Position
    value: bytes | None


@dataclass
class UnitResult:
    """What one unit of work did (for tests, the plan command and logs)."""

    log: list[SyncLogRow] = field(default_factory=list)
    pushed: list[PushedRow] = field(default_factory=list)
    ledger: list[LedgerRow] = field(default_factory=list)
    planned: list[PlannedOp] = field(default_factory=list)

    def ok(self) -> int:
        """Operations that succeeded."""
        return sum(1 for r in self.log if r.status == "ok")


def _now() -> datetime:
    return datetime.now(UTC)


def _state_json(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_state(tables_root: Any, target: str) -> dict[str, PushedState]:
    """The pushed state of every golden id of ``target``, from the ``sync/pushed`` table."""
    out: dict[str, PushedState] = {}
    for row in latest_pushed(tables_root, target):
        out[row["golden_id"]] = PushedState(
            row["golden_id"],
            int(row["version"]),
            json.loads(row["state"]),
            row["target_key"],
            "retired" if row["status"] == "retired" else "live",
            row["merged_into"],
        )
    return out


class TargetSync:
    """Plans and delivers golden changes to one target (see the module docstring)."""

    def __init__(
        self,
        cfg: TargetConfig,
        readback: ReadBack,
        client: TargetClient | None,
        tables: SyncTables | None,
        *,
        origin: str,
        dlq: DeadLetterProducer | None = None,
        state: dict[str, PushedState] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self.readback = readback
        self.client = client
        self.tables = tables
        self.origin = origin
        self.dlq = dlq
        self.state: dict[str, PushedState] = state if state is not None else {}
        self._sleep = sleep
        self._should_stop = should_stop

    # --- planning (pure apart from reading self.state) ---

    def plan(self, items: Sequence[Incoming]) -> tuple[list[PlannedOp], list[LedgerRow]]:
        """Plan ``items`` in order; undecodable messages become ledger rows."""
        planned: dict[str, PushedState | None] = {}
        ops: list[PlannedOp] = []
        bad: list[LedgerRow] = []
        for item in items:
            if item.value is None:
                continue  # a tombstone on the golden topic carries nothing to push
            try:
                change: GoldenChange = decode_change(item.value)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
                err = InvalidInputError("undecodable golden change", detail=str(exc)[:300])
                p = item.position
                bad.append(
                    LedgerRow(
                        self.cfg.target,
                        "",
                        -1,
                        "decode",
                        "open",
                        str(err),
                        item.value,
                        _now(),
                        p.topic,
                        p.partition,
                        p.offset,
                    )
                )
                continue
            if change.entity != self.cfg.entity:
                continue
            gid = change.golden_id
            current = planned[gid] if gid in planned else self.state.get(gid)
            new = plan_change(self.cfg, change, current, position=item.position, raw=item.value)
            for o in new:
                current = apply(current, o, target_key=None) if o.operation != "skip" else current
                ops.append(o)
                if o.operation == "merge" and o.other is not None:
                    ops.extend(self._retire_merged(o, planned))
            planned[gid] = current
        return coalesce(ops), bad

    def _retire_merged(self, merge: PlannedOp, planned: dict[str, PushedState | None]) -> list[PlannedOp]:
        """After a target-side merge, record the retired record's deactivated state too.

        The merge endpoint deactivates the retired record; its echo must be recognised like any other
        (the deactivate call itself changes nothing at the target: no second database change).
        """
        assert merge.other is not None
        retired = planned[merge.other] if merge.other in planned else self.state.get(merge.other)
        if retired is None or retired.status == "retired":
            return []
        o = PlannedOp(
            self.cfg.target,
            merge.other,
            retired.version,
            "deactivate",
            {},
            deactivated(self.cfg, retired.fields),
            position=merge.position,
            other=merge.golden_id,
            reason="merged",
            emitted_at_us=merge.emitted_at_us,
            change=merge.change,
        )
        planned[merge.other] = apply(retired, o, target_key=None)
        return [o]

    # --- one unit ---

    def process(self, items: Sequence[Incoming], *, stream: str | None, version: int) -> UnitResult:
        """Plan, record intents, send, record outcomes (see the module docstring).

        ``stream`` names the exactly-once stream of the appends (``target:topic:partition``) and
        ``version`` is the unit's last offset; ``stream=None`` writes nothing (dry runs, tests).
        """
        result = UnitResult()
        ops, bad = self.plan(items)
        result.planned = ops
        result.ledger.extend(bad)
        fingerprints = self._fingerprints(ops)
        now = _now()
        intents = [
            self._pushed_row(o, "intent", now, fingerprints.get(id(o))) for o in ops if self._writes(o)
        ]
        if stream is not None and intents:
            with STAGE_SECONDS.labels(stage="sync_intent").time():
                self._append("pushed", intents, stream=f"intent:{stream}", version=version)
        pending = list(ops)
        with STAGE_SECONDS.labels(stage="sync_send").time():
            while pending:
                pending = self._send(pending, result, fingerprints)
                if pending:
                    self._wait_for_target()
        if stream is not None:
            with STAGE_SECONDS.labels(stage="sync_record").time():
                self._record(result, stream=stream, version=version)
        return result

    def _writes(self, o: PlannedOp) -> bool:
        return o.operation in ("create", "update", "deactivate", "delete", "merge")

    def _fingerprints(self, ops: list[PlannedOp]) -> dict[int, str | None]:
        writes = [o for o in ops if o.operation in ("create", "update", "deactivate")]
        digests = self.readback.fingerprints([o.state for o in writes])
        return {id(o): d for o, d in zip(writes, digests, strict=True)}

    def _pushed_row(self, o: PlannedOp, phase: str, at: datetime, digest: str | None) -> PushedRow:
        known = self.state.get(o.golden_id)
        retired = o.operation in ("deactivate", "delete")
        return PushedRow(
            target=o.target,
            system=self.cfg.system,
            golden_id=o.golden_id,
            version=o.version,
            phase=phase,
            target_key=known.target_key if known else None,
            content_hash=digest,
            echo_fields=self.readback.echo_fields,
            origin=self.origin,
            state=_state_json(o.state),
            status="retired" if retired else "live",
            merged_into=o.other if retired else None,
            at=at,
            topic=o.position.topic,
            partition=o.position.partition,
            offset=o.position.offset,
        )

    def _wait_for_target(self) -> None:
        assert self.client is not None
        wait = max(0.2, self.client.breaker.retry_in())
        log.warning("%s: target unavailable; pausing %.1fs", self.cfg.target, wait)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if self._should_stop():
                raise TerminalError(f"{self.cfg.target}: stopped while the target was down")
            self._sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _send(
        self, ops: list[PlannedOp], result: UnitResult, fingerprints: dict[int, str | None]
    ) -> list[PlannedOp]:
        """Send ``ops`` in order; returns the ops still to send when the target went down."""
        i = 0
        while i < len(ops):
            o = ops[i]
            if o.operation == "skip":
                self._outcome(o, result, None, fingerprints, started=time.perf_counter())
                i += 1
                continue
            # Upserts are batched up to the next non-upsert op or repeated golden id (order per record).
            if o.operation in ("create", "update"):
                j, seen = i, set()
                while (
                    j < len(ops) and ops[j].operation in ("create", "update") and ops[j].golden_id not in seen
                ):
                    seen.add(ops[j].golden_id)
                    j += 1
                group = ops[i:j]
                started = time.perf_counter()
                try:
                    results = self._upserts(group)
                except (TargetUnavailableError, RequestFailedError) as exc:
                    log.warning("%s: %s", self.cfg.target, exc)
                    return ops[i:]
                for g, r in zip(group, results, strict=True):
                    self._outcome(g, result, r, fingerprints, started=started)
                i = j
                continue
            started = time.perf_counter()
            try:
                r = self._single(o)
            except (TargetUnavailableError, RequestFailedError) as exc:
                log.warning("%s: %s", self.cfg.target, exc)
                return ops[i:]
            self._outcome(o, result, r, fingerprints, started=started)
            i += 1
        return []

    def _upserts(self, group: list[PlannedOp]) -> list[ItemResult]:
        assert self.client is not None
        items = [UpsertItem(o.golden_id, o.fields, o.idempotency_key) for o in group]
        if len(items) == 1:
            return [self.client.upsert(items[0])]
        return self.client.upsert_batch(items)

    def _target_key(self, golden_id: str) -> str | None:
        assert self.client is not None
        known = self.state.get(golden_id)
        if known is not None and known.target_key:
            return known.target_key
        return self.client.find_key(golden_id)

    def _single(self, o: PlannedOp) -> ItemResult:
        assert self.client is not None
        if o.operation == "merge":
            assert o.other is not None
            survivor = self._target_key(o.golden_id)
            if survivor is None:
                return ItemResult(o.golden_id, True, 404, "unchanged")
            return self.client.merge(survivor, o.other, key=o.idempotency_key)
        key = self._target_key(o.golden_id)
        if key is None:
            return ItemResult(o.golden_id, True, 404, "unchanged")
        if o.operation == "delete":
            return self.client.delete(key, key=o.idempotency_key)
        return self.client.set_active(key, False, key=o.idempotency_key)

    def _outcome(
        self,
        o: PlannedOp,
        result: UnitResult,
        r: ItemResult | None,
        fingerprints: dict[int, str | None],
        *,
        started: float,
    ) -> None:
        now = _now()
        latency = (time.perf_counter() - started) * 1000
        p = o.position
        if r is None:  # skip
            status, error, attempts, key = "skipped", o.reason, 0, None
        elif r.ok:
            status, error, attempts = "ok", None, r.attempts
            key = r.target_key if o.operation in ("create", "update") else None
            self.state_update(o, key)
            digest = fingerprints.get(id(o))
            result.pushed.append(self._pushed_row(o, "done", now, digest))
            if o.emitted_at_us:
                SYNC_LATENCY_SECONDS.labels(target=o.target).observe(
                    max(0.0, time.time() - o.emitted_at_us / 1e6)
                )
        else:
            status, error, attempts, key = "failed", r.error, r.attempts, None
            result.ledger.append(
                LedgerRow(
                    o.target,
                    o.golden_id,
                    o.version,
                    o.operation,
                    "open",
                    r.error,
                    o.change,
                    now,
                    p.topic,
                    p.partition,
                    p.offset,
                )
            )
        SYNC_OPERATIONS.labels(target=o.target, operation=o.operation, outcome=status).inc()
        known = self.state.get(o.golden_id)
        result.log.append(
            SyncLogRow(
                golden_id=o.golden_id,
                version=o.version,
                target=o.target,
                operation=o.operation,
                fields=tuple(sorted(o.fields)),
                status=status,
                error=error,
                attempt=attempts,
                latency_ms=latency if r is not None else None,
                at=now,
                target_key=key or (known.target_key if known else None),
                idempotency_key=o.idempotency_key,
                topic=p.topic,
                partition=p.partition,
                offset=p.offset,
            )
        )

    def state_update(self, o: PlannedOp, target_key: str | None) -> None:
        """Apply a successful operation to the pushed state."""
        new = apply(self.state.get(o.golden_id), o, target_key=target_key)
        if new is not None:
            self.state[o.golden_id] = new

    def _append(self, which: str, rows: Sequence[Any], *, stream: str, version: int) -> None:
        tables = self.tables
        if tables is None or not rows:
            return
        retry_transient(
            lambda: tables.append(which, rows, stream=stream, version=version),
            operation=f"{which} append {stream}",
            on_retry=lambda _e, _n: RETRIES.labels(operation=f"sync_{which}_append").inc(),
        )

    def _record(self, result: UnitResult, *, stream: str, version: int) -> None:
        self._append("log", result.log, stream=stream, version=version)
        self._append("pushed", result.pushed, stream=f"done:{stream}", version=version)
        if result.ledger:
            self._append("ledger", result.ledger, stream=stream, version=version)
            self._publish(result.ledger)

    def _publish(self, rows: list[LedgerRow]) -> None:
        if self.dlq is None:
            return
        rejects = [
            Rejected(
                reason="target_refused" if r.operation != "decode" else "undecodable",
                detail=f"{r.target} {r.operation} {r.golden_id} v{r.version}: {r.error}"[:2000],
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                kafka_ts_ms=0,
                key=r.golden_id.encode(),
                value=r.change,
                stage=f"propagate:{r.target}",
            )
            for r in rows
        ]
        dlq = self.dlq
        retry_transient(lambda: dlq.publish(rejects), operation=f"sync DLQ publish {self.cfg.target}")


#: Messages one delivery unit takes from the queue at most (one unit = a few Delta commits).
UNIT_MAX = 5_000


class TargetRuntime:
    """A :class:`TargetSync` on its own thread, fed by the sink, watched by the source.

    The source registers every batch it emits (:meth:`emitted`); the thread marks it delivered when
    its unit is recorded. :meth:`resume_offset` is what the source may snapshot (never past an
    undelivered message), :meth:`paused` tells it to stop reading while the target is down or the
    queue is full.
    """

    def __init__(self, sync_factory: Callable[[Callable[[], bool]], TargetSync], *, max_pending: int) -> None:
        self._factory = sync_factory
        self._max_pending = max_pending
        self._queue: queue.Queue[RawBatch | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], deque[tuple[int, int]]] = {}
        self._pending_count = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.sync: TargetSync | None = None
        self._users = 0

    # --- source side ---

    def emitted(self, batch: RawBatch) -> None:
        """Called by the source for every batch it hands downstream."""
        if not batch.offsets:
            return
        with self._lock:
            self._pending.setdefault((batch.topic, batch.partition), deque()).append(
                (batch.offsets[0], batch.offsets[-1])
            )
            self._pending_count += len(batch.offsets)

    def resume_offset(self, topic: str, partition: int, next_offset: int) -> int:
        """The offset a snapshot may record: the first undelivered one, or ``next_offset``."""
        with self._lock:
            pending = self._pending.get((topic, partition))
            return pending[0][0] if pending else next_offset

    def paused(self) -> bool:
        """True while the target is down or too much is waiting for it."""
        self.raise_if_failed()
        if self._pending_count >= self._max_pending:
            return True
        sync = self.sync
        return sync is not None and sync.client is not None and not sync.client.breaker.allow()

    # --- sink side ---

    def start(self) -> None:
        """Start the delivery thread (once; several sink partitions may share the runtime)."""
        with self._lock:
            self._users += 1
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="goldstream-propagate", daemon=True)
            self._thread.start()

    def submit(self, batch: RawBatch) -> None:
        """Queue one batch for delivery (never blocks)."""
        self.raise_if_failed()
        self._queue.put(batch)

    def raise_if_failed(self) -> None:
        """Re-raise a failure of the delivery thread in the dataflow (stop loudly, not silently)."""
        if self._error is not None:
            raise TerminalError(f"propagation thread failed: {self._error}") from self._error

    def idle(self) -> bool:
        """Nothing queued or in flight."""
        with self._lock:
            return self._pending_count == 0 and self._queue.empty()

    def close(self) -> None:
        """Stop the thread after the queued work (the last sink partition to close stops it)."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
        # Stop waiting for a down target at once: undelivered batches stay before the snapshotted
        # offsets and are read again on restart. A unit already being sent finishes.
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self.sync is not None and self.sync.client is not None:
            self.sync.client.close()
        if self.sync is not None and self.sync.dlq is not None:
            self.sync.dlq.close()

    def _run(self) -> None:
        try:
            self.sync = self._factory(self._stop.is_set)
            while True:
                batch = self._queue.get()
                if batch is None or self._stop.is_set():
                    return
                batches, stop = self._drain(batch)
                self._deliver(batches)
                if stop:
                    return
        except BaseException as exc:  # surfaced to the dataflow by raise_if_failed
            log.exception("propagation thread failed")
            self._error = exc

    def _drain(self, first: RawBatch) -> tuple[list[RawBatch], bool]:
        """``first`` plus whatever else is queued (up to :data:`UNIT_MAX` messages).

        Every unit costs a few Delta commits; under a trickle each Kafka batch holds a handful of
        messages, so working batch by batch would spend most of the time committing.
        """
        batches, size = [first], len(first.offsets)
        while size < UNIT_MAX:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return batches, True
            batches.append(more)
            size += len(more.offsets)
        return batches, False

    def _deliver(self, batches: list[RawBatch]) -> None:
        """One unit per Kafka partition (different partitions hold different golden ids)."""
        assert self.sync is not None
        groups: dict[tuple[str, int], list[RawBatch]] = {}
        for b in batches:
            groups.setdefault((b.topic, b.partition), []).append(b)
        for (topic, partition), group in groups.items():
            items = [
                Incoming(Position(topic, partition, off), value)
                for b in group
                for off, value in zip(b.offsets, b.values, strict=True)
            ]
            stream = f"{self.sync.cfg.target}:{topic}:{partition}"
            self.sync.process(items, stream=stream, version=group[-1].offsets[-1])
            with self._lock:
                pending = self._pending.get((topic, partition))
                for b in group:
                    if pending:
                        pending.popleft()
                    self._pending_count -= len(b.offsets)
