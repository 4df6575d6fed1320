"""Golden-record assembly: record changes in, versioned golden records and their lineage out.

A :class:`GoldenBook` holds everything one entity type needs between batches:

* the :class:`~flows.resolve.resolver.Resolver` (features, blocks, match graph, golden ids);
* per live record: its source system, source timestamp and canonical values (survivorship reads
  them), when it joined its golden id and the score last published for it in the crosswalk;
* per golden id: the last emitted version, its values and a digest of its members.

:meth:`GoldenBook.apply` feeds a batch of :class:`~core.golden.RecordChange` to the resolver and
turns the resulting entity events into one :class:`~core.golden.GoldBatch`: a new version of every
golden record whose values or membership changed, ``RETIRED`` versions of golden ids that lost
their records or were merged away, the crosswalk rows that moved, the current links of every
cluster that changed, and MERGED / SPLIT lineage. Everything is a function of the state and the
input (``now_us`` is passed in), so the same batch on the same state gives the same output.

Provenance is not kept in the state: it is a function of the members (survivorship is
deterministic), so it is recomputed with the values; keeping it would double the state that
Bytewax pickles at every epoch (DESIGN.md section 6).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.canonical import ENTITIES
from core.golden import (
    Cause,
    CrosswalkEntry,
    FieldProvenance,
    GoldBatch,
    GoldenChange,
    LineageEvent,
    LinkRecord,
    RecordChange,
    content_hash,
    json_value,
)
from flows.resolve.compare import probability
from flows.resolve.config import MatchingConfig, Overrides, load_matching_config, load_overrides
from flows.resolve.events import EntityEvent
from flows.resolve.resolver import Resolver
from flows.resolve.survivorship import (
    Group,
    Member,
    SurvivorshipConfig,
    build_golden,
    load_survivorship_config,
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Per live record: (source system, source ts in us, values in field order, joined-at us, score).
_Rec = tuple[str, int, tuple[Any, ...], int, float | None]
# Per golden id: (last emitted version, values in field order, members digest).
_Gold = tuple[int, tuple[Any, ...], bytes]


def matching_path(config_dir: Path, entity: str) -> Path:
    """``config/matching/<entity>.yaml``."""
    return config_dir / "matching" / f"{entity}.yaml"


def survivorship_path(config_dir: Path, entity: str) -> Path:
    """``config/survivorship/<entity>.yaml``."""
    return config_dir / "survivorship" / f"{entity}.yaml"


def overrides_path(config_dir: Path, entity: str) -> Path:
    """``config/matching/overrides/<entity>.yaml``: steward decisions kept apart from the matching
    config, so that ``goldstream match train`` rewriting the matching file never touches them (a
    sub-folder, so that ``config/matching/*.yaml`` still lists entities only)."""
    return config_dir / "matching" / "overrides" / f"{entity}.yaml"


def is_resolvable(config_dir: Path, entity: str) -> bool:
    """Whether ``entity`` has both a matching and a survivorship config."""
    return matching_path(config_dir, entity).is_file() and survivorship_path(config_dir, entity).is_file()


def golden_fields(entity: str, survivorship: SurvivorshipConfig) -> tuple[str, ...]:
    """The attributes of a golden record of ``entity``.

    For a canonical entity: its model's fields except references (``*_ref``), which hold keys of
    one source system and mean nothing in a golden record. Otherwise: the fields the survivorship
    config names.
    """
    model = ENTITIES.get(entity)
    if model is not None:
        return tuple(f for f in model.model_fields if not f.endswith("_ref"))
    named = [*survivorship.attributes, *(f for g in survivorship.groups.values() for f in g.fields)]
    return tuple(dict.fromkeys(named))


def merge_overrides(*sets: Overrides) -> Overrides:
    """The union of several override sets (a pair in both lists stays a cannot-link: the safer)."""
    must: dict[tuple[str, str], None] = {}
    cannot: dict[tuple[str, str], None] = {}
    for s in sets:
        for a, b in s.must_link:
            must[(min(a, b), max(a, b))] = None
        for a, b in s.cannot_link:
            cannot[(min(a, b), max(a, b))] = None
    return Overrides(must_link=tuple(p for p in must if p not in cannot), cannot_link=tuple(cannot))


def _present(v: object) -> bool:
    # The same test survivorship applies: null and blank text are no value.
    return v is not None and not (isinstance(v, str) and not v.strip())


def _intern(v: object) -> object:
    return sys.intern(v) if type(v) is str else v


def _json(v: object) -> object:
    # Values arrive JSON-safe (RecordChange's contract); convert only what is not, cheaply.
    return v if v is None or type(v) in (str, int, float, bool) else json_value(v)


def _digest(members: Sequence[str]) -> bytes:
    # blake2b, not hash(): the state is pickled and restored in another process (PYTHONHASHSEED).
    return hashlib.blake2b("\x00".join(members).encode(), digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class GoldenView:
    """The current golden record of one golden id, as last emitted."""

    golden_id: str
    version: int
    values: dict[str, Any]
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GoldenBookStats:
    """Sizes for metrics and benchmarks."""

    records: int
    golden: int


class GoldenBook:
    """Entity resolution and golden-record assembly for one entity type (pure, picklable)."""

    def __init__(
        self,
        matching: MatchingConfig,
        survivorship: SurvivorshipConfig,
        *,
        fields: Sequence[str] | None = None,
        overrides: Overrides | None = None,
    ) -> None:
        """``overrides`` are added to the matching config's own ``overrides`` section."""
        if matching.entity != survivorship.entity:
            raise ValueError(
                f"matching config is for {matching.entity!r}, survivorship for {survivorship.entity!r}"
            )
        self.entity = matching.entity
        self.survivorship = survivorship
        self.fields: tuple[str, ...] = (
            tuple(fields) if fields is not None else golden_fields(self.entity, survivorship)
        )
        self._groups, self._rules = survivorship_plan(survivorship, self.fields)
        self.resolver = Resolver(matching)
        self._rec: dict[str, _Rec] = {}
        self._gold: dict[str, _Gold] = {}
        self.overrides = merge_overrides(matching.overrides, overrides or Overrides())
        # No records yet, so this only installs the pairs; later calls re-cluster what they touch.
        self.resolver.set_overrides(self.overrides)

    @classmethod
    def from_config_dir(cls, config_dir: Path, entity: str) -> GoldenBook:
        """The book of ``entity`` from ``config/matching``, ``config/survivorship`` and the optional
        ``config/matching/overrides/<entity>.yaml``."""
        return cls(
            load_matching_config(matching_path(config_dir, entity)),
            load_survivorship_config(survivorship_path(config_dir, entity)),
            overrides=load_file_overrides(config_dir, entity),
        )

    # -- queries ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rec)

    def stats(self) -> GoldenBookStats:
        """Live records and golden ids."""
        return GoldenBookStats(len(self._rec), len(self._gold))

    def golden_id(self, record_id: str) -> str | None:
        """The golden id of a live record (None: unknown or deleted)."""
        return self.resolver.golden_id(record_id)

    def golden(self, golden_id: str) -> GoldenView | None:
        """The last emitted version of a golden id (None: unknown or retired)."""
        g = self._gold.get(golden_id)
        if g is None:
            return None
        return GoldenView(
            golden_id, g[0], dict(zip(self.fields, g[1], strict=True)), self.resolver.members(golden_id)
        )

    def golden_ids(self) -> list[str]:
        """Every live golden id, sorted."""
        return sorted(self._gold)

    # -- changes ----------------------------------------------------------------------------------
    def apply(self, changes: Sequence[RecordChange], *, now_us: int) -> GoldBatch:
        """Apply a batch of record changes (a later change of the same record wins)."""
        latest: dict[str, RecordChange] = {}
        for ch in changes:
            if ch.entity != self.entity:
                raise ValueError(f"a {ch.entity!r} change given to the {self.entity!r} book")
            latest[ch.record_id] = ch
        fields = self.fields
        value_dirty: set[str] = set()
        removed: set[str] = set()
        items: list[tuple[str, Mapping[str, object] | None]] = []
        for rid, ch in latest.items():
            old = self._rec.get(rid)
            if ch.values is None:
                if old is not None:
                    del self._rec[rid]
                    removed.add(rid)
                items.append((rid, None))
                continue
            vals = ch.values
            # Interned: equal values (a country, a status, a city) are one object, which pickle
            # then writes once per snapshot instead of once per record.
            row = tuple(_intern(vals.get(f)) for f in fields)
            if old is None:
                self._rec[rid] = (ch.source_system, ch.source_ts_us, row, now_us, None)
                value_dirty.add(rid)
            elif old[0] != ch.source_system or old[1] != ch.source_ts_us or old[2] != row:
                if old[2] != row:
                    value_dirty.add(rid)
                self._rec[rid] = (ch.source_system, ch.source_ts_us, row, old[3], old[4])
            items.append((rid, vals))
        events = self.resolver.apply(items)
        return self._emit(events, latest, value_dirty, removed, now_us)

    def set_overrides(self, overrides: Overrides, *, now_us: int) -> GoldBatch:
        """Replace the steward overrides given at construction (the matching config's own stay)."""
        self.overrides = merge_overrides(self.resolver.config.overrides, overrides)
        events = self.resolver.set_overrides(self.overrides)
        return self._emit(events, {}, set(), set(), now_us)

    # -- events -> golden batch ----------------------------------------------------------------------
    def _emit(
        self,
        events: list[EntityEvent],
        batch: Mapping[str, RecordChange],
        value_dirty: set[str],
        removed: set[str],
        now_us: int,
    ) -> GoldBatch:
        entity, resolver = self.entity, self.resolver
        touched: set[str] = set()
        moved: set[str] = set()
        merged_from: dict[str, tuple[str, ...]] = {}
        merged_into: dict[str, str] = {}
        split_from: dict[str, str] = {}
        lineage_events: list[EntityEvent] = []
        cause: dict[str, Cause] = {}
        cause_ts: dict[str, int] = {}

        def blame(gid: str | None, rid: str | None) -> None:
            # The latest of the batch's changes that touched a golden id is its cause.
            ch = batch.get(rid) if rid is not None else None
            if gid is None or ch is None:
                return
            if gid not in cause or ch.source_ts_us > cause_ts[gid]:
                cause[gid], cause_ts[gid] = ch.cause, ch.source_ts_us

        for e in events:
            touched.add(e.golden_id)
            touched.update(e.others)
            if e.kind == "MERGED":
                merged_from[e.golden_id] = e.others
                for o in e.others:
                    merged_into[o] = e.golden_id
                lineage_events.append(e)
            elif e.kind == "SPLIT":
                for o in e.others:
                    split_from[o] = e.golden_id
                lineage_events.append(e)
            elif e.kind == "ASSIGNED":
                if e.previous_golden_id != e.golden_id:
                    moved.add(e.record_id or "")
                    if e.previous_golden_id is not None:
                        touched.add(e.previous_golden_id)
                blame(e.golden_id, e.record_id)
                blame(e.previous_golden_id, e.record_id)
            elif e.kind == "REMOVED":
                blame(e.golden_id, e.record_id)
        # Golden ids only reached through a merge or split inherit the cause of the other side.
        for e in lineage_events:
            group = (e.golden_id, *e.others)
            known = next((cause[g] for g in group if g in cause), None)
            if known is not None:
                for g in group:
                    cause.setdefault(g, known)

        changes: list[GoldenChange] = []
        retired: list[GoldenChange] = []
        relinked: list[str] = []
        score_check: list[tuple[str, tuple[str, ...]]] = []
        for gid in sorted(touched):
            members = resolver.members(gid)
            prev = self._gold.get(gid)
            if not members:
                if prev is not None:
                    del self._gold[gid]
                    retired.append(
                        GoldenChange(
                            entity,
                            gid,
                            prev[0] + 1,
                            "RETIRED",
                            {},
                            {},
                            (),
                            (),
                            now_us,
                            cause=cause.get(gid),
                            merged_into=merged_into.get(gid),
                            content_hash=content_hash({}),
                        )
                    )
                continue
            digest = _digest(members)
            values, prov = self._build(members)
            row = tuple(values.get(f) for f in self.fields)
            membership_changed = prev is None or prev[2] != digest
            if membership_changed or any(r in value_dirty for r in members):
                relinked.append(gid)
                score_check.append((gid, members))
            if prev is not None and not membership_changed and prev[1] == row:
                continue
            version = 1 if prev is None else prev[0] + 1
            if prev is None:
                changed = tuple(f for f, v in zip(self.fields, row, strict=True) if v is not None)
            else:
                changed = tuple(f for f, a, b in zip(self.fields, prev[1], row, strict=True) if a != b)
            self._gold[gid] = (version, row, digest)
            full = dict(zip(self.fields, row, strict=True))
            changes.append(
                GoldenChange(
                    entity,
                    gid,
                    version,
                    "UPSERT",
                    full,
                    prov,
                    changed,
                    members,
                    now_us,
                    cause=cause.get(gid),
                    merged_from=merged_from.get(gid, ()),
                    split_from=split_from.get(gid) if prev is None else None,
                    content_hash=content_hash(full),
                )
            )

        crosswalk = self._crosswalk(score_check, moved, removed, now_us)
        links = [link for gid in relinked for link in self._links(gid)]
        lineage = [
            LineageEvent(
                entity,
                "MERGED" if e.kind == "MERGED" else "SPLIT",
                e.golden_id,
                e.others,
                now_us,
                cause.get(e.golden_id),
            )
            for e in lineage_events
        ]
        return GoldBatch(
            entity,
            changes=(*changes, *retired),
            crosswalk=tuple(crosswalk),
            links=tuple(links),
            lineage=tuple(lineage),
            relinked=tuple(relinked),
        )

    def _build(self, members: Sequence[str]) -> tuple[dict[str, Any], dict[str, FieldProvenance]]:
        """Survivorship over ``members``: JSON-safe values and their provenance."""
        rec = self._rec
        return assemble(
            self.fields,
            self.survivorship,
            self._groups,
            self._rules,
            [(rid, *rec[rid][:3]) for rid in members],
        )

    def _score(self, rid: str, cluster: set[str]) -> float | None:
        """Probability of the record's strongest link inside its cluster (None: no link)."""
        best = max((w for o, (w, _) in self.resolver.adj.get(rid, {}).items() if o in cluster), default=None)
        return None if best is None else probability(best)

    def _crosswalk(
        self,
        clusters: Iterable[tuple[str, tuple[str, ...]]],
        moved: set[str],
        removed: set[str],
        now_us: int,
    ) -> list[CrosswalkEntry]:
        out: dict[str, CrosswalkEntry] = {}
        rec = self._rec
        for gid, members in clusters:
            cluster = set(members)
            for rid in members:
                source, ts_us, row, since, old_score = rec[rid]
                score = self._score(rid, cluster) if len(members) > 1 else None
                if rid in moved:
                    since = now_us
                elif score == old_score:
                    continue
                rec[rid] = (source, ts_us, row, since, score)
                out[rid] = CrosswalkEntry(self.entity, rid, gid, score, since)
        for rid in moved:
            # A record moved by a re-clustering whose cluster did not otherwise change.
            now_gid = self.resolver.golden_id(rid)
            if rid not in out and rid in rec and now_gid is not None:
                source, ts_us, row, _, score = rec[rid]
                rec[rid] = (source, ts_us, row, now_us, score)
                out[rid] = CrosswalkEntry(self.entity, rid, now_gid, score, now_us)
        for rid in removed:
            out[rid] = CrosswalkEntry(self.entity, rid, None, None, now_us)
        return [out[r] for r in sorted(out)]

    def _links(self, gid: str) -> list[LinkRecord]:
        """The scored pairs inside one cluster with their breakdown, strongest first."""
        resolver = self.resolver
        members = resolver.members(gid)
        mset = set(members)
        out = []
        for a in members:
            for b in sorted(resolver.adj.get(a, {})):
                if a < b and b in mset:
                    x = resolver.explain_pair(a, b)
                    comps = tuple((d.comparison, d.level, d.weight + d.tf_adjustment) for d in x.comparisons)
                    out.append(LinkRecord(self.entity, gid, x.a, x.b, x.weight, x.probability, comps))
        out.sort(key=lambda link: (-link.weight, link.a, link.b))
        return out


MemberRow = tuple[str, str, int, tuple[Any, ...]]
"""One member for survivorship: (record id, source system, source ts in us, values in field order)."""


def survivorship_plan(
    survivorship: SurvivorshipConfig, fields: Sequence[str]
) -> tuple[tuple[tuple[str, Group], ...], tuple[tuple[str, str], ...]]:
    """The field groups, and the rule of every field outside a group, in field order."""
    grouped = {f for g in survivorship.groups.values() for f in g.fields}
    groups = tuple(survivorship.groups.items())
    rules = tuple(
        (f, survivorship.attributes.get(f, survivorship.default).rule) for f in fields if f not in grouped
    )
    return groups, rules


def assemble(
    fields: Sequence[str],
    survivorship: SurvivorshipConfig,
    groups: Sequence[tuple[str, Group]],
    rules: Sequence[tuple[str, str]],
    members: Sequence[MemberRow],
) -> tuple[dict[str, Any], dict[str, FieldProvenance]]:
    """Survivorship over ``members``: JSON-safe values and their provenance (``groups`` and ``rules``
    from :func:`survivorship_plan`). Shared by :class:`GoldenBook` and the staged golden step."""
    if len(members) == 1:
        return _assemble_single(fields, groups, rules, members[0])
    ms = []
    ts_of = {}
    for rid, source, ts_us, row in members:
        ts = _EPOCH + dt.timedelta(microseconds=ts_us)
        ts_of[rid] = ts_us
        ms.append(Member(rid, source, ts, dict(zip(fields, row, strict=True))))
    golden = build_golden(ms, survivorship, fields)
    values = {f: _json(v) for f, v in golden.values.items()}
    prov = {
        f: FieldProvenance(p.source, p.record_id, ts_of[p.record_id], p.rule, p.group, p.support)
        for f, p in golden.provenance.items()
    }
    return values, prov


def _assemble_single(
    fields: Sequence[str],
    groups: Sequence[tuple[str, Group]],
    rules: Sequence[tuple[str, str]],
    member: MemberRow,
) -> tuple[dict[str, Any], dict[str, FieldProvenance]]:
    """:func:`build_golden` of a one-record cluster, without the rule machinery (about half the
    clusters are single records; a unit test checks it gives what ``build_golden`` gives)."""
    rid, source, ts_us, row = member
    values: dict[str, Any] = {}
    prov: dict[str, FieldProvenance] = {}
    by_field = dict(zip(fields, row, strict=True))
    for name, group in groups:
        if any(_present(by_field.get(f)) for f in group.fields):
            p = FieldProvenance(source, rid, ts_us, group.rule, name, 1.0)
            for f in group.fields:
                values[f] = _json(by_field.get(f))
                prov[f] = p
    for f, rule in rules:
        v = by_field[f]
        if _present(v):
            values[f] = _json(v)
            prov[f] = FieldProvenance(source, rid, ts_us, rule, None, 1.0)
    return values, prov


def load_file_overrides(config_dir: Path, entity: str) -> Overrides:
    """The steward overrides file of ``entity`` (no file: none)."""
    path = overrides_path(config_dir, entity)
    return load_overrides(path) if path.is_file() else Overrides()
