"""The load generator: a steady stream of inserts, updates and deletes across the demo systems.

Pacing is computed from the start time (``due = rate * elapsed - done``), never from accumulated
sleeps, so the achieved rate does not drift. Each tick's changes are sent per database in one
pipelined transaction: batching is what makes thousands of changes per second possible.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from cdc.demo import db
from cdc.demo.systems import SYSTEMS
from cdc.demo.systems.base import Conn, Rename, Stmt, SystemLoad, TruthLog
from cdc.demo.truth import TruthRow, read_truth, truth_path, write_truth
from cdc.demo.world import Person, make_person
from core.settings import Settings

log = logging.getLogger(__name__)

OPS = ("insert", "update", "delete")


@dataclass(frozen=True, slots=True)
class OpMix:
    """Relative weights of inserts, updates and deletes (normalised; default 60/35/5)."""

    insert: float = 60.0
    update: float = 35.0
    delete: float = 5.0

    def __post_init__(self) -> None:
        weights = (self.insert, self.update, self.delete)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"op mix needs non-negative weights with a positive sum, got {weights}")

    @classmethod
    def parse(cls, text: str) -> OpMix:
        """``"60/35/5"`` -> OpMix(60, 35, 5)."""
        parts = text.replace(",", "/").split("/")
        if len(parts) != 3:
            raise ValueError(f"op mix must be insert/update/delete, e.g. 60/35/5, got {text!r}")
        return cls(*(float(p) for p in parts))

    def weights(self) -> tuple[float, float, float]:
        """(insert, update, delete) weights."""
        return (self.insert, self.update, self.delete)


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """A snapshot for progress displays, reported a few times per second."""

    done: int
    target: int | None  # None when running unthrottled
    elapsed_s: float
    duration_s: float
    errors: int

    @property
    def rate(self) -> float:
        """Achieved events per second so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """The outcome of :func:`load`. One event is one row-level statement (cascades not counted)."""

    counts: dict[tuple[str, str, str], int]  # (system, table, op) -> events
    target: int | None
    elapsed_s: float
    errors: int
    first_error: str = ""
    truth_path: Path | None = None
    truth_rows: int = 0
    by_system_op: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All events sent and committed."""
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Achieved events per second."""
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0


class PersonSource:
    """People for inserts: mostly brand-new, sometimes someone this run already created elsewhere,
    so new cross-system duplicates keep appearing under load as they do in real life."""

    def __init__(self, seed: int, first_index: int, rng: random.Random) -> None:
        self._seed = seed
        self._next = first_index
        self._rng = rng
        self._recent: deque[tuple[Person, set[str]]] = deque(maxlen=500)

    def __call__(self, system: str) -> Person:
        """A person to insert into ``system``."""
        if self._recent and self._rng.random() < 0.4:
            person, known = self._recent[self._rng.randrange(len(self._recent))]
            if system not in known:
                known.add(system)
                return person
        person = make_person(self._next, self._seed, org_count=0)
        self._next += 1
        self._recent.append((person, {system}))
        return person


def _first_person_index(truth: Sequence[TruthRow], settings: Settings, systems: Sequence[str]) -> int:
    """One past the highest person number known (truth file, else the seed markers)."""
    numbers = [
        int(r.person_id[1:]) for r in truth if r.person_id.startswith("P") and r.person_id[1:].isdigit()
    ]
    if numbers:
        return max(numbers) + 1
    highest = 0
    for name in systems:
        with db.connect(settings, SYSTEMS[name].dbname) as conn:
            marker = db.read_marker(conn)
        highest = max(highest, int(marker.get("people", 0)) if marker else 0)
    return highest + 1


class _Runner:
    """Generates and sends batches; keeps the counts."""

    def __init__(self, loaders: dict[str, SystemLoad], mix: OpMix, rng: random.Random) -> None:
        self.loaders = loaders
        self.names = list(loaders)
        total = sum(mix.weights())
        self.share = dict(zip(OPS, (w / total for w in mix.weights()), strict=True))
        self.generated: Counter[str] = Counter()
        self.rng = rng
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.errors = 0
        self.first_error = ""

    def generate(self, n: int) -> dict[str, list[Stmt]]:
        """At least ``n`` statements (whole logical changes), grouped by system."""
        batch: dict[str, list[Stmt]] = {name: [] for name in self.names}
        made = misses = 0
        while made < n:
            name = self.names[self.rng.randrange(len(self.names))]
            op = self._next_op()
            loader = self.loaders[name]
            stmts = getattr(loader, op)(self.rng)
            if not stmts:
                # Nothing to update or delete (empty tables): grow instead, and never spin forever.
                misses += 1
                stmts = loader.insert(self.rng) if misses < 10_000 else []
                if not stmts:
                    break
            batch[name].extend(stmts)
            made += len(stmts)
            for s in stmts:
                self.generated[s.op] += 1
        return batch

    def _next_op(self) -> str:
        """The op furthest behind its share of the statements so far.

        A logical insert can be several statements (an order and its lines), so drawing ops at random
        by weight would skew the statement mix towards inserts; steering by deficit keeps it on target.
        """
        total = sum(self.generated.values()) + 1
        return max(OPS, key=lambda op: self.share[op] * total - self.generated[op] + self.rng.random() * 1e-3)

    def send(self, batch: dict[str, list[Stmt]]) -> int:
        """One pipelined transaction per system; returns the statements committed."""
        sent = 0
        for name, stmts in batch.items():
            if not stmts:
                continue
            loader = self.loaders[name]
            conn = loader.conn
            try:
                with conn.pipeline(), conn.cursor() as cur:
                    for s in stmts:
                        cur.execute(s.sql, s.params)
                conn.commit()
            except psycopg.OperationalError:
                raise  # the database is gone: stop, do not count on
            except psycopg.Error as exc:
                conn.rollback()
                self.errors += len(stmts)
                if not self.first_error:
                    self.first_error = f"{name}: {exc}"
                log.warning("load batch on %s failed (%s); reloading its keys", name, exc)
                # The in-memory pools assumed the batch would commit: start over from the database.
                fresh = type(loader)(conn, loader.truth, loader.next_person)
                fresh.prepare()
                self.loaders[name] = fresh
                continue
            for s in stmts:
                self.counts[(name, s.table, s.op)] += 1
            sent += len(stmts)
        return sent


def _update_truth(path: Path, log_: TruthLog, loaders: dict[str, SystemLoad]) -> int:
    """Apply the run's inserts and key renames to the truth file, then drop rows whose source row is gone."""
    rows = read_truth(path)
    index = {(r.system, r.schema, r.table, r.source_key): r for r in rows}
    for change in log_.changes:  # in order: a row may be inserted and then renumbered
        if isinstance(change, Rename):
            old = index.pop((change.system, change.schema, change.table, change.old_key), None)
            if old is not None:
                new_key = (change.system, change.schema, change.table, change.new_key)
                index[new_key] = TruthRow(*new_key, old.person_id)
        else:
            index[(change.system, change.schema, change.table, change.source_key)] = change
    for name, loader in loaders.items():
        for table in SYSTEMS[name].truth_tables:
            live = db.keys_as_text(loader.conn, table)
            loader.conn.commit()
            for key in [k for k in index if k[:3] == (name, table.schema, table.name) and k[3] not in live]:
                del index[key]
    return write_truth(path, index.values())


def load(
    settings: Settings,
    rate: float,
    duration: float,
    *,
    seed: int | None = None,
    systems: Sequence[str] = tuple(SYSTEMS),
    mix: OpMix | None = None,
    tick_s: float = 0.05,
    on_progress: Callable[[LoadProgress], None] | None = None,
    update_truth: bool = True,
) -> LoadSummary:
    """Send about ``rate`` row changes per second for ``duration`` seconds to ``systems``.

    ``rate <= 0`` runs unthrottled (as fast as the databases take it). The op mix defaults to
    60/35/5 inserts/updates/deletes. Updates include single-column changes, TOAST-sized text, jsonb
    edits and primary-key changes (shop ``products.sku``, billing ``accounts.account_number``);
    deletes include parents whose children go by ON DELETE CASCADE. With ``update_truth`` the truth
    file (if present) is brought up to date at the end.
    """
    unknown = set(systems) - set(SYSTEMS)
    if unknown or not systems:
        raise ValueError(f"unknown or no systems: {sorted(unknown)} (known: {', '.join(SYSTEMS)})")
    if duration <= 0:
        raise ValueError("duration must be positive")
    rng = random.Random(seed if seed is not None else secrets.randbits(64))
    path = truth_path(settings)
    truth = read_truth(path)
    people = PersonSource(rng.getrandbits(32), _first_person_index(truth, settings, systems), rng)
    truth_log = TruthLog()
    conns: list[Conn] = []
    try:
        loaders: dict[str, SystemLoad] = {}
        for name in systems:
            conn = db.connect(settings, SYSTEMS[name].dbname)
            conns.append(conn)
            # The generator measures the CDC pipeline, not this disk's fsync latency: commit without
            # waiting for the WAL flush. Logical decoding still sees every change in commit order.
            conn.execute("SET synchronous_commit = off")
            conn.commit()
            loaders[name] = SYSTEMS[name].loader(conn, truth_log, people)
            loaders[name].prepare()
        runner = _Runner(loaders, mix or OpMix(), rng)
        elapsed = _pace(runner, rate, duration, tick_s, on_progress)
        truth_rows = _update_truth(path, truth_log, loaders) if update_truth and path.exists() else 0
    finally:
        for conn in conns:
            conn.close()
    by_system_op: Counter[tuple[str, str]] = Counter()
    for (system, _table, op), n in runner.counts.items():
        by_system_op[(system, op)] += n
    return LoadSummary(
        counts=dict(runner.counts),
        target=math.floor(rate * duration) if rate > 0 else None,
        elapsed_s=elapsed,
        errors=runner.errors,
        first_error=runner.first_error,
        truth_path=path if truth_rows else None,
        truth_rows=truth_rows,
        by_system_op=dict(by_system_op),
    )


def _pace(
    runner: _Runner,
    rate: float,
    duration: float,
    tick_s: float,
    on_progress: Callable[[LoadProgress], None] | None,
) -> float:
    """The pacing loop; returns the elapsed seconds."""
    throttled = rate > 0
    target = math.floor(rate * duration) if throttled else None
    # When behind, catch up in bounded batches so one transaction never grows huge.
    max_batch = max(int(rate * tick_s * 4), 200) if throttled else 500
    done = 0
    start = time.monotonic()
    next_tick = start
    last_report = 0.0
    while True:
        now = time.monotonic()
        elapsed = now - start
        finished = elapsed >= duration
        if target is not None:
            due = min((target if finished else math.floor(rate * elapsed)) - done, max_batch)
        else:
            due = 0 if finished else max_batch
        if due > 0:
            done += runner.send(runner.generate(due))
        if on_progress is not None and (finished or now - last_report >= 0.25):
            last_report = now
            on_progress(
                LoadProgress(done, target, min(time.monotonic() - start, duration), duration, runner.errors)
            )
        if finished:
            break  # the batch above topped up to the target if we were keeping up; never overrun
        next_tick += tick_s
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()  # running behind: do not try to replay missed ticks
    return time.monotonic() - start
