"""Seeding the four demo systems from one world, and writing the ground truth.

Each system is seeded in a single transaction that also records the seed parameters on the
database, so a crash leaves nothing half-written and a second run skips what is already there.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cdc.demo import db
from cdc.demo.assign import Plan, plan
from cdc.demo.systems import SYSTEMS, SystemSpec
from cdc.demo.systems.base import Conn
from cdc.demo.truth import TruthRow, read_truth, truth_path, write_truth
from cdc.demo.world import World, build_world
from core.settings import Settings

MARKER_FORMAT = 1
SeedStatus = Literal["seeded", "skipped"]


@dataclass(frozen=True, slots=True)
class SystemSeedResult:
    """What happened to one system."""

    system: str
    status: SeedStatus
    rows: dict[str, int]  # table -> rows written (or present, when skipped)
    message: str = ""


@dataclass(frozen=True, slots=True)
class SeedSummary:
    """The outcome of :func:`seed`."""

    people: int
    seed: int
    orgs: int
    systems: tuple[SystemSeedResult, ...]
    truth_path: Path
    truth_rows: int
    # people by how many systems know them (1..4), from the plan
    spread: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def skipped(self) -> bool:
        """True when nothing was written."""
        return all(s.status == "skipped" for s in self.systems)

    @property
    def multi_system_share(self) -> float:
        """Share of people known to two or more systems."""
        total = sum(self.spread.values())
        return sum(v for k, v in self.spread.items() if k >= 2) / total if total else 0.0


def spread(world: World, p: Plan) -> dict[int, int]:
    """How many people are known to 1, 2, 3 and 4 systems."""
    counts: Counter[int] = Counter()
    membership: dict[int, set[str]] = {}
    for system, entries in p.people.items():
        for index, _copy in entries:
            membership.setdefault(index, set()).add(system)
    for index in range(len(world.people)):
        counts[len(membership.get(index, ()))] += 1
    return dict(sorted(counts.items()))


def _live_truth(conn: Conn, spec: SystemSpec, truth: list[TruthRow]) -> tuple[list[TruthRow], int]:
    """The seed's truth rows whose source rows still exist, and how many live rows it cannot map."""
    live: set[tuple[str, str]] = set()
    for table in spec.truth_tables:
        live |= {(table.name, key) for key in db.keys_as_text(conn, table)}
    kept = [r for r in truth if (r.table, r.source_key) in live]
    return kept, len(live) - len(kept)


def _seed_system(
    settings: Settings, spec: SystemSpec, world: World, p: Plan, params: dict[str, int], reset: bool
) -> tuple[SystemSeedResult, list[TruthRow], bool]:
    """Seed one system; returns the result, its truth rows, and whether its marker matches ``params``."""
    data = spec.seed_rows(world, p)
    with db.connect(settings, spec.dbname) as conn:
        marker = db.read_marker(conn)
        existing = db.row_counts(conn, spec.tables)
        same = marker is not None and all(marker.get(k) == v for k, v in params.items())
        if not reset:
            if marker is not None:
                if not same:
                    msg = f"already seeded with people={marker.get('people')} seed={marker.get('seed')}"
                    result = SystemSeedResult(spec.name, "skipped", existing, msg + "; use --reset to reseed")
                    return result, data.truth, False
                truth, unmapped = _live_truth(conn, spec, data.truth)
                msg = "already seeded; use --reset to reseed"
                if unmapped:
                    # Only matters when the truth file is rebuilt: rows added later by `demo load`
                    # belong to people the seed does not know.
                    msg += f" ({unmapped} rows added since seeding are not in a rebuilt truth file)"
                return SystemSeedResult(spec.name, "skipped", existing, msg), truth, True
            if any(existing.values()):
                msg = "has rows not written by the seeder; use --reset to replace them"
                return SystemSeedResult(spec.name, "skipped", existing, msg), data.truth, False
        else:
            db.truncate(conn, spec.tables)
        written: dict[str, int] = {}
        for table in spec.tables:
            written[table.name] = db.copy_rows(conn, table, data.rows.get(table.name, ()))
            db.sync_identity(conn, table)
        db.write_marker(
            conn, {**params, "format": MARKER_FORMAT, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        )
        conn.commit()
    return (
        SystemSeedResult(spec.name, "seeded", written, "reset and reseeded" if reset else ""),
        data.truth,
        True,
    )


def seed(
    settings: Settings,
    people: int = 500,
    seed: int = 42,
    *,
    systems: Sequence[str] = tuple(SYSTEMS),
    reset: bool = False,
) -> SeedSummary:
    """Fill the demo databases with ``people`` people (and about people/5 organisations).

    Deterministic for ``(people, seed)``. Systems already seeded (or holding other rows) are skipped
    unless ``reset`` truncates them first. Writes ``<state_dir>/demo/truth.parquet`` mapping every
    customer-ish row to its person or organisation; truth for skipped systems is kept as it was.
    """
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown systems: {', '.join(sorted(unknown))} (known: {', '.join(SYSTEMS)})")
    if people < 1:
        raise ValueError("people must be at least 1")
    started = time.perf_counter()
    world = build_world(people, seed)
    p = plan(world)
    params = {"people": people, "seed": seed}
    results: list[SystemSeedResult] = []
    fresh: dict[str, list[TruthRow]] = {}
    keep_existing: set[str] = set(SYSTEMS) - set(systems)
    for name in systems:
        result, truth, same = _seed_system(settings, SYSTEMS[name], world, p, params, reset)
        results.append(result)
        if result.status == "seeded" or same:
            fresh[name] = truth
            if result.status == "skipped":
                keep_existing.add(name)  # prefer the file's rows: the load generator may have moved on
        else:
            keep_existing.add(name)
    path = truth_path(settings)
    existing = read_truth(path)
    have = {r.system for r in existing}
    rows: list[TruthRow] = [r for r in existing if r.system in keep_existing]
    for name, truth in fresh.items():
        if name not in keep_existing or name not in have:
            rows.extend(truth)
    changed = any(r.status == "seeded" for r in results) or not path.exists()
    n_truth = write_truth(path, rows) if changed else len(existing)
    return SeedSummary(
        people=people,
        seed=seed,
        orgs=len(world.orgs),
        systems=tuple(results),
        truth_path=path,
        truth_rows=n_truth,
        spread=spread(world, p),
        elapsed_s=time.perf_counter() - started,
    )


@dataclass(frozen=True, slots=True)
class SystemState:
    """A demo database as it is now."""

    system: str
    marker: dict[str, Any] | None  # seed parameters, if seeded by us
    rows: dict[str, int]


def status(settings: Settings, *, systems: Sequence[str] = tuple(SYSTEMS)) -> list[SystemState]:
    """Row counts and seed parameters of each demo database."""
    out: list[SystemState] = []
    for name in systems:
        spec = SYSTEMS[name]
        with db.connect(settings, spec.dbname) as conn:
            out.append(SystemState(name, db.read_marker(conn), db.row_counts(conn, spec.tables)))
    return out
