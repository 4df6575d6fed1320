"""The resolve stage as a Bytewax operator: batches of record changes in, golden batches out.

    Stream[Sequence[RecordChange]]            (any mix of entities per batch)
      -> split by entity                      entities without config/matching/<entity>.yaml and
                                              config/survivorship/<entity>.yaml are passed over
      -> keyed by entity type                 one GoldenBook per entity (clustering is global)
      -> GoldenBook.apply                     every batch queued for the key at once
      -> Stream[GoldBatch]                    one per entity and step activation, never empty

All the logic is in :class:`~flows.resolve.golden.GoldenBook`; this module only wires it, so the
engine stays replaceable (DESIGN.md section 6).

State and snapshots: Bytewax calls ``snapshot()`` on every touched key at the end of every epoch,
with or without recovery, and requires the returned object to stay unchanged afterwards. Copying
the whole book each epoch (what ``stateful_map`` does) would cost as much as pickling it. Instead
``snapshot()`` returns a small holder of the live book that pickles it on demand; before the next
batch mutates the book, a holder that is still alive and not yet pickled is frozen (pickled right
then). Without recovery Bytewax drops the holders unpickled, so nothing is ever pickled; with
recovery each epoch pickles the book once, which recovery needs anyway.
"""

from __future__ import annotations

import pickle
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from core.golden import GoldBatch, RecordChange
from core.metrics import GOLDEN_CHANGES, GOLDEN_LINEAGE, RESOLVE_RECORDS, RESOLVE_SECONDS, RESOLVE_STATE
from flows.resolve.golden import GoldenBook, is_resolvable, load_file_overrides, overrides_path

Clock = Callable[[], int]
"""Microseconds since the epoch (UTC): ``emitted_at_us``, crosswalk ``since_us``, lineage ``at_us``."""


def wall_clock_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


class _Snapshot:
    """A recovery snapshot of a book (or any state object) that pickles it only when (and if)
    asked to."""

    __slots__ = ("__weakref__", "_book", "_data")

    def __init__(self, book: object) -> None:
        self._book: object | None = book
        self._data: bytes | None = None

    def freeze(self) -> None:
        """Pickle the state now (it is about to change) and let go of it."""
        if self._data is None:
            self._data = pickle.dumps(self._book, protocol=pickle.HIGHEST_PROTOCOL)
            self._book = None

    def __reduce__(self) -> tuple[Callable[[bytes], object], tuple[bytes]]:
        # Unpickles straight to the state object: the resume state handed to the builder.
        self.freeze()
        assert self._data is not None
        return pickle.loads, (self._data,)


class ResolveLogic(StatefulBatchLogic[Sequence[RecordChange], GoldBatch, object]):
    """The per-entity logic: owns one :class:`GoldenBook` (built on the first batch, since Bytewax
    does not tell a builder its key)."""

    def __init__(
        self,
        config_dir: Path,
        clock: Clock,
        book: GoldenBook | None,
        *,
        overrides_poll_s: float = 30.0,
    ) -> None:
        self.config_dir = config_dir
        self.clock = clock
        self.book = book
        self.overrides_poll_s = overrides_poll_s
        # What the steward overrides file looked like when last read. A resumed book starts
        # "unknown", so its first batch re-reads the file: decisions made while the flow was down
        # take effect, and the ones already applied re-cluster nothing.
        self._overrides_seen: tuple[int, int] | str | None = "unknown"
        self._overrides_checked = time.monotonic()
        self._snap: weakref.ref[_Snapshot] | None = None
        # Counted once per book and snapshot cycle, not per pickle.
        self.freezes = 0

    def _detach(self) -> None:
        snap = self._snap() if self._snap is not None else None
        if snap is not None and snap._data is None:
            snap.freeze()
            self.freezes += 1
        self._snap = None

    def on_batch(self, values: list[Sequence[RecordChange]]) -> tuple[Iterable[GoldBatch], bool]:
        """Resolve everything queued for this entity in one step."""
        changes = [c for v in values for c in v]
        if not changes:
            return [], StatefulBatchLogic.RETAIN
        self._detach()
        started = time.perf_counter()
        out: list[GoldBatch] = []
        if self.book is None:
            entity = changes[0].entity
            # Stamp first: a file changed while the book is built is read again on the next check.
            self._overrides_seen = _stamp(overrides_path(self.config_dir, entity))
            self._overrides_checked = time.monotonic()
            self.book = GoldenBook.from_config_dir(self.config_dir, entity)
        book = self.book
        batch = self._check_overrides(book)
        if batch is not None:
            out.append(batch)
        out.append(book.apply(changes, now_us=self.clock()))
        entity = book.entity
        RESOLVE_SECONDS.labels(entity=entity).observe(time.perf_counter() - started)
        RESOLVE_RECORDS.labels(entity=entity, outcome="resolved").inc(len(changes))
        stats = book.stats()
        RESOLVE_STATE.labels(entity=entity, what="records").set(stats.records)
        RESOLVE_STATE.labels(entity=entity, what="golden").set(stats.golden)
        RESOLVE_STATE.labels(entity=entity, what="oversized_blocks").set(book.resolver.oversized_blocks)
        for b in out:
            _count(b)
        return [b for b in out if not _is_empty(b)], StatefulBatchLogic.RETAIN

    def _check_overrides(self, book: GoldenBook) -> GoldBatch | None:
        """Re-apply the steward overrides file when it changed (checked every ``overrides_poll_s``)."""
        now = time.monotonic()
        if self._overrides_seen != "unknown" and now - self._overrides_checked < self.overrides_poll_s:
            return None
        self._overrides_checked = now
        stamp = _stamp(overrides_path(self.config_dir, book.entity))
        if stamp == self._overrides_seen:
            return None
        overrides = load_file_overrides(self.config_dir, book.entity)
        self._overrides_seen = stamp
        return book.set_overrides(overrides, now_us=self.clock())

    def snapshot(self) -> object:
        """A holder of the live book (see the module docstring); None before the first batch."""
        if self.book is None:
            return None
        snap = self._snap() if self._snap is not None else None
        if snap is None:
            # No batch since the last snapshot reuses that holder: it still shows the current book.
            snap = _Snapshot(self.book)
            self._snap = weakref.ref(snap)
        return snap


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, None when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def _is_empty(b: GoldBatch) -> bool:
    return not (b.changes or b.crosswalk or b.links or b.lineage or b.relinked)


def _count(b: GoldBatch) -> None:
    for ch in b.changes:
        kind = "retired" if ch.kind == "RETIRED" else "created" if ch.version == 1 else "updated"
        GOLDEN_CHANGES.labels(entity=b.entity, kind=kind).inc()
    for e in b.lineage:
        GOLDEN_LINEAGE.labels(entity=b.entity, kind=e.kind).inc()


class _Router:
    """Splits input batches by entity and passes over the entities without config."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._known: dict[str, bool] = {}

    def __call__(self, batch: Sequence[RecordChange]) -> list[tuple[str, Sequence[RecordChange]]]:
        groups: dict[str, list[RecordChange]] = {}
        for ch in batch:
            groups.setdefault(ch.entity, []).append(ch)
        out: list[tuple[str, Sequence[RecordChange]]] = []
        for entity, chs in groups.items():
            ok = self._known.get(entity)
            if ok is None:
                ok = self._known[entity] = is_resolvable(self.config_dir, entity)
            if ok:
                out.append((entity, chs))
            else:
                RESOLVE_RECORDS.labels(entity=entity, outcome="no_config").inc(len(chs))
        return out


@operator
def resolve(
    step_id: str,
    up: Stream[Sequence[RecordChange]],
    *,
    config_dir: Path,
    clock: Clock = wall_clock_us,
    overrides_poll_s: float = 30.0,
) -> Stream[GoldBatch]:
    """Entity resolution and golden records for every entity with a matching and survivorship config.

    ``up`` carries batches of record changes (any entities, in source order per record); the output
    carries one :class:`~core.golden.GoldBatch` per entity and step activation, only when something
    changed. Config files are read when an entity's first batch arrives; a resumed flow keeps the
    matching and survivorship config it was started with (changing those means re-resolving).
    The steward overrides file (``config/matching/overrides/<entity>.yaml``) is re-read when it
    changes, checked at most every ``overrides_poll_s`` seconds, on the next batch of the entity.

    Wiring (the ingest flow)::

        changed = op.map("bronze_silver", decoded, process)  # Stream[list[RecordChange]]
        golden = resolve("resolve", changed, config_dir=settings.config_dir)  # Stream[GoldBatch]
        op.output("gold", golden, WriterSink(make_gold_writer))
    """
    router = _Router(config_dir)
    keyed = op.flat_map("by_entity", up, router)

    def build(resume: object | None) -> ResolveLogic:
        book = resume if isinstance(resume, GoldenBook) else None
        return ResolveLogic(config_dir, clock, book, overrides_poll_s=overrides_poll_s)

    golden = op.stateful_batch("golden", keyed, build)
    return op.key_rm("unkey", golden)
