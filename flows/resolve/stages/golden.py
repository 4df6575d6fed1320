"""The golden stage: survivorship and versioned golden records, keyed by golden id."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from core.golden import (
    CrosswalkEntry,
    GoldBatch,
    GoldenChange,
    LineageEvent,
    LinkRecord,
    content_hash,
)
from flows.resolve.compare import probability
from flows.resolve.golden import assemble
from flows.resolve.stages.base import Stage
from flows.resolve.stages.protocol import (
    GoldenUpdate,
    MemberValues,
    Routed,
    RowBlob,
    decode_row,
    encode_row,
)

# Per record: (seq, golden id it was released for, source, source ts us, row, since us, score).
_Rec = tuple[int, str, str, int, RowBlob, int | None, float | None]
# Per golden id: (last emitted version, values in field order, members digest).
_Gold = tuple[int, RowBlob, bytes]


def _digest(members: Sequence[str]) -> bytes:
    return hashlib.blake2b("\x00".join(members).encode(), digest_size=8).digest()


def _merge(old: GoldenUpdate, new: GoldenUpdate) -> GoldenUpdate:
    """Two updates of one golden id as one (``new`` is later; events of both are kept)."""
    return GoldenUpdate(
        new.golden_id,
        new.members,
        moved_in=tuple(dict.fromkeys((*old.moved_in, *new.moved_in))),
        moved_out=tuple(dict.fromkeys((*old.moved_out, *new.moved_out))),
        removed=tuple(dict.fromkeys((*old.removed, *new.removed))),
        merged_from=tuple(dict.fromkeys((*old.merged_from, *new.merged_from))),
        merged_into=new.merged_into if new.merged_into is not None else old.merged_into,
        split_from=old.split_from if old.split_from is not None else new.split_from,
        lineage=(*old.lineage, *new.lineage),
        relinked=old.relinked or new.relinked,
        links=new.links if new.relinked else old.links,
        best=new.best if new.relinked else old.best,
        cause=new.cause if new.cause is not None else old.cause,
    )


class GoldenStage(Stage):
    """Keyed by golden id (its key group): what :class:`~flows.resolve.golden.GoldenBook` does after
    resolution, for the golden ids of one group.

    A :class:`GoldenUpdate` waits until the group holds the values of every member at the version
    clustering named (they come through the value stage, by another path); then the golden record
    is rebuilt by survivorship, and gets a new version only when its values or its membership
    changed. The output is one :class:`~core.golden.GoldBatch` per activation with anything in it.

    Value rows stay encoded (:data:`~.protocol.RowBlob`) in the state and are decoded where
    survivorship reads them (:meth:`row` gives a golden record's current values).
    """

    stage = "g"
    TABLES: ClassVar[dict[str, Any]] = {
        "rec": dict[str, tuple[int, str, str, int, bytes, int | None, float | None]],
        "gold": dict[str, tuple[int, bytes, bytes]],
    }

    def __init__(self, ctx: Any, key: str) -> None:
        super().__init__(ctx, key)
        self.rec: dict[str, _Rec] = {}
        self.gold: dict[str, _Gold] = {}
        self.pending: dict[str, GoldenUpdate] = {}

    def upgrade(self, fmt: int) -> None:
        """Layout 1 held value tuples."""
        if fmt < 2:

            def blob(row: Any) -> RowBlob:
                return row if isinstance(row, bytes) else encode_row(tuple(row))

            self.rec = {rid: (*r[:4], blob(r[4]), *r[5:]) for rid, r in self.rec.items()}
            self.gold = {gid: (g[0], blob(g[1]), g[2]) for gid, g in self.gold.items()}

    def row(self, golden_id: str) -> tuple[Any, ...] | None:
        """The values of a golden id's current version in field order (None: unknown)."""
        g = self.gold.get(golden_id)
        return None if g is None else decode_row(g[1])

    def apply(self, messages: list[Any], *, now_us: int = 0) -> list[Routed]:
        """Member values and golden updates in; a GoldBatch out (keyed by this group)."""
        batch = self.step(messages, now_us=now_us)
        return [] if batch is None else [(self.key, batch)]

    def step(self, messages: list[Any], *, now_us: int) -> GoldBatch | None:
        """:meth:`apply` returning the batch itself (None: nothing changed)."""
        rec, pending = self.rec, self.pending
        waiting: set[str] = set()
        for m in messages:
            for x in m:
                if isinstance(x, MemberValues):
                    cur = rec.get(x.record_id)
                    if cur is not None and cur[1] == x.golden_id:
                        if cur[0] >= x.seq:
                            continue
                        since, score = cur[5], cur[6]
                    else:
                        since, score = None, None
                    rec[x.record_id] = (
                        x.seq,
                        x.golden_id,
                        x.source_system,
                        x.source_ts_us,
                        x.row,
                        since,
                        score,
                    )
                    waiting.add(x.golden_id)
                else:
                    assert isinstance(x, GoldenUpdate)
                    old = pending.get(x.golden_id)
                    pending[x.golden_id] = x if old is None else _merge(old, x)
                    waiting.add(x.golden_id)
        ready: list[GoldenUpdate] = []
        for gid in sorted(waiting):
            upd = pending.get(gid)
            if upd is None:
                continue
            if all(
                (r := rec.get(rid)) is not None and r[1] == gid and r[0] >= seq for rid, seq in upd.members
            ):
                ready.append(pending.pop(gid))
        if not ready:
            return None
        return self._assemble(ready, now_us)

    def _assemble(self, ready: list[GoldenUpdate], now_us: int) -> GoldBatch | None:
        ctx = self.context
        entity, fields = ctx.entity, ctx.fields
        rec, gold = self.rec, self.gold
        changes: list[GoldenChange] = []
        retired: list[GoldenChange] = []
        crosswalk: list[CrosswalkEntry] = []
        links: list[LinkRecord] = []
        lineage: list[LineageEvent] = []
        relinked: list[str] = []
        link_comparisons: Callable[..., tuple[tuple[str, str, float], ...]] = ctx.scorer.link_comparisons
        n = ctx.n_comparisons
        for upd in ready:
            gid = upd.golden_id
            members = tuple(m for m, _ in upd.members)
            for kind, others in upd.lineage:
                lineage.append(LineageEvent(entity, kind, gid, others, now_us, upd.cause))
            for rid in upd.removed:
                crosswalk.append(CrosswalkEntry(entity, rid, None, None, now_us))
            mset = set(members)
            # Values of records that left this golden id (and were released for it) are done here.
            for rid in (*upd.moved_out, *upd.removed):
                r = rec.get(rid)
                if r is not None and r[1] == gid and rid not in mset:
                    del rec[rid]
            prev = gold.get(gid)
            if not members:
                if prev is not None:
                    del gold[gid]
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
                            cause=upd.cause,
                            merged_into=upd.merged_into,
                            content_hash=content_hash({}),
                        )
                    )
                continue
            digest = _digest(members)
            values, prov = assemble(
                fields,
                ctx.survivorship,
                ctx.groups,
                ctx.rules,
                [(rid, (r := rec[rid])[2], r[3], decode_row(r[4])) for rid in members],
            )
            row = tuple(values.get(f) for f in fields)
            prev_row = decode_row(prev[1]) if prev is not None else None
            membership_changed = prev is None or prev[2] != digest
            relink = upd.relinked or membership_changed
            if relink:
                relinked.append(gid)
                for a, b, w, lv in upd.links:
                    comps = link_comparisons(lv[:n], lv[n:])
                    links.append(LinkRecord(entity, gid, a, b, w, probability(w), comps))
                moved = set(upd.moved_in)
                single = len(members) == 1
                best = upd.best or (None,) * len(members)
                for rid, top in zip(members, best, strict=True):
                    seq, g, source, ts_us, vals, since, old_score = rec[rid]
                    score = None if single or top is None else probability(top)
                    if rid in moved or since is None:
                        since = now_us
                    elif score == old_score:
                        continue
                    rec[rid] = (seq, g, source, ts_us, vals, since, score)
                    crosswalk.append(CrosswalkEntry(entity, rid, gid, score, since))
            else:
                for rid in upd.moved_in:
                    r = rec[rid]
                    rec[rid] = (r[0], r[1], r[2], r[3], r[4], now_us, r[6])
                    crosswalk.append(CrosswalkEntry(entity, rid, gid, r[6], now_us))
            if prev is not None and not membership_changed and prev_row == row:
                continue
            version = 1 if prev is None else prev[0] + 1
            if prev_row is None:
                changed = tuple(f for f, v in zip(fields, row, strict=True) if v is not None)
            else:
                changed = tuple(f for f, a, b in zip(fields, prev_row, row, strict=True) if a != b)
            gold[gid] = (version, encode_row(row), digest)
            full = dict(zip(fields, row, strict=True))
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
                    cause=upd.cause,
                    merged_from=upd.merged_from,
                    split_from=upd.split_from if prev is None else None,
                    content_hash=content_hash(full),
                )
            )
        changes.sort(key=lambda c: c.golden_id)
        retired.sort(key=lambda c: c.golden_id)
        crosswalk.sort(key=lambda e: e.record_id)
        links.sort(key=lambda x: (x.golden_id, -x.weight, x.a, x.b))
        batch = GoldBatch(
            entity,
            changes=(*changes, *retired),
            crosswalk=tuple(crosswalk),
            links=tuple(links),
            lineage=tuple(lineage),
            relinked=tuple(relinked),
        )
        if not (batch.changes or batch.crosswalk or batch.links or batch.lineage or batch.relinked):
            return None
        return batch
