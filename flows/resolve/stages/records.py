"""The split, the record stage (features, blocking keys, versions) and the value stage."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from core.golden import RecordChange
from flows.resolve.stages.base import Stage, union
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.protocol import (
    Assignment,
    BlockEntry,
    BlocksIn,
    MemberValues,
    RecordEntry,
    RecordsIn,
    Report,
    Routed,
    RowBlob,
    Tokens,
    ValueEntry,
    encode_features,
    encode_row,
    shard_of,
    stage_key,
)


def split_batch(
    changes: Sequence[RecordChange], contexts: Callable[[str], StageContext | None], token: Callable[[], str]
) -> list[Routed]:
    """Route one input batch: per entity (``contexts`` None: not resolved), one message per record
    shard, all under one new token, and the root report announcing those messages to clustering.

    The token makes the whole batch one unit for clustering (see :mod:`.protocol`): what an in-order
    resolver does in one step, the stages do as one step too."""
    by_entity: dict[str, list[RecordChange]] = {}
    for ch in changes:
        by_entity.setdefault(ch.entity, []).append(ch)
    out: list[Routed] = []
    for entity, chs in by_entity.items():
        ctx = contexts(entity)
        if ctx is None:
            continue
        t = token()
        shards: dict[int, list[RecordChange]] = {}
        n = ctx.shards
        for ch in chs:
            shards.setdefault(shard_of(ch.record_id, n), []).append(ch)
        sent = []
        for i in sorted(shards):
            dest = stage_key(entity, "r", i)
            mid = f"{t}>{dest}"
            out.append((dest, RecordsIn(mid, (t,), tuple(shards[i]))))
            sent.append((mid, (t,)))
        out.append((stage_key(entity, "c"), Report(f"{entity}/split", (), tuple(sent), root=t)))
    return out


def _digest(blob: bytes) -> bytes:
    # blake2b, not hash(): the state is restored in other processes (PYTHONHASHSEED).
    return hashlib.blake2b(blob, digest_size=8).digest()


class RecordStage(Stage):
    """Keyed by record id: computes features and blocking key values, versions each record.

    State per record: ``(seq, mask of block shards holding its keys, digest of its features)``
    (digest None: deleted; the entry stays so a re-created record continues the sequence). An
    upsert whose features did not change (other attributes did) goes to values and clustering only.
    """

    stage = "r"
    TABLES: ClassVar[dict[str, Any]] = {"recs": dict[str, tuple[int, int, bytes | None]]}

    def __init__(self, ctx: StageContext, key: str) -> None:
        super().__init__(ctx, key)
        self.recs: dict[str, tuple[int, int, bytes | None]] = {}

    def apply(self, messages: list[Any]) -> list[Routed]:
        """Process the record changes of one activation (a later change of a record wins)."""
        ctx = self.context
        self.n += 1
        latest: dict[str, RecordChange] = {}
        received = []
        token_sets: list[Tokens] = []
        for m in messages:
            assert isinstance(m, RecordsIn)
            received.append((m.mid, m.tokens))
            token_sets.append(m.tokens)
            for ch in m.changes:
                latest[ch.record_id] = ch
        tokens = union(token_sets)
        entity, shards, fields = ctx.entity, ctx.shards, ctx.fields
        extract, keyer = ctx.extract, ctx.keyer
        blocks: dict[int, list[BlockEntry]] = {}
        values: dict[int, list[ValueEntry]] = {}
        records: list[RecordEntry] = []
        recs = self.recs
        for rid, ch in latest.items():
            old = recs.get(rid)
            seq = 1 if old is None else old[0] + 1
            if ch.values is None:
                if old is None or old[2] is None:
                    continue  # unknown or already deleted: nothing to resolve
                mask = old[1]
                recs[rid] = (seq, 0, None)
                i = 0
                while mask:
                    if mask & 1:
                        blocks.setdefault(i, []).append(BlockEntry(rid, seq, None, ()))
                    mask >>= 1
                    i += 1
                kind = "delete"
                row = None
            else:
                feats = extract(ch.values)
                blob = encode_features(feats)
                digest = _digest(blob)
                row = values_row(fields, ch.values)
                if old is not None and old[2] == digest:
                    recs[rid] = (seq, old[1], digest)
                    kind = "same"
                else:
                    by_shard: dict[int, list[str]] = {}
                    for k in keyer(feats):
                        by_shard.setdefault(shard_of(k, shards), []).append(k)
                    mask = 0
                    for i in by_shard:
                        mask |= 1 << i
                    old_mask = old[1] if old is not None else 0
                    both, i = mask | old_mask, 0
                    while both:
                        if both & 1:
                            ks = by_shard.get(i, ())
                            blocks.setdefault(i, []).append(BlockEntry(rid, seq, blob, tuple(ks)))
                        both >>= 1
                        i += 1
                    recs[rid] = (seq, mask, digest)
                    kind = "upsert"
            vshard = shard_of(rid, shards)
            values.setdefault(vshard, []).append(ValueEntry(rid, seq, ch.source_system, ch.source_ts_us, row))
            records.append(RecordEntry(rid, seq, kind, ch.cause))  # type: ignore[arg-type]
        out: list[Routed] = []
        sent = []
        for i in sorted(blocks):
            dest = stage_key(entity, "b", i)
            mid = self.mid(dest)
            out.append((dest, BlocksIn(mid, tokens, tuple(blocks[i]))))
            sent.append((mid, tokens))
        for i in sorted(values):
            out.append((stage_key(entity, "v", i), tuple(values[i])))
        out.append(self.report(tuple(received), tuple(sent), records=tuple(records)))
        return out


class ValueStage(Stage):
    """Keyed by record id: holds each record's canonical values and releases a version to the golden
    shard of its golden id once clustering has assigned that very version (never a newer version
    to an older decision: the golden record would show values clustering has not seen yet).

    State per record: ``(seq, source, source ts, row, assigned seq, assigned golden id)``.
    """

    stage = "v"
    TABLES: ClassVar[dict[str, Any]] = {
        "vals": dict[str, tuple[int, str, int, bytes | None, int, str | None]],
    }

    def __init__(self, ctx: StageContext, key: str) -> None:
        super().__init__(ctx, key)
        self.vals: dict[str, tuple[int, str, int, RowBlob | None, int, str | None]] = {}

    def upgrade(self, fmt: int) -> None:
        """Layout 1 held value tuples."""
        if fmt < 2:
            self.vals = {rid: (v[0], v[1], v[2], _blob(v[3]), v[4], v[5]) for rid, v in self.vals.items()}

    def apply(self, messages: list[Any]) -> list[Routed]:
        """Values (tuples of :class:`ValueEntry`) and assignments (tuples of :class:`Assignment`)."""
        ctx = self.context
        vals = self.vals
        out: dict[int, list[MemberValues]] = {}
        shards = ctx.shards

        def release(rid: str, seq: int, gid: str, source: str, ts: int, row: RowBlob) -> None:
            out.setdefault(shard_of(gid, shards), []).append(MemberValues(rid, seq, gid, source, ts, row))

        for m in messages:
            for e in m:
                if isinstance(e, ValueEntry):
                    cur = vals.get(e.record_id)
                    if cur is not None and cur[0] >= e.seq:
                        continue
                    a_seq, a_gid = (cur[4], cur[5]) if cur is not None else (0, None)
                    if a_seq == e.seq:
                        if e.row is None or a_gid is None:
                            vals.pop(e.record_id, None)
                            continue
                        release(e.record_id, e.seq, a_gid, e.source_system, e.source_ts_us, e.row)
                    vals[e.record_id] = (e.seq, e.source_system, e.source_ts_us, e.row, a_seq, a_gid)
                else:
                    assert isinstance(e, Assignment)
                    cur = vals.get(e.record_id)
                    if cur is None:
                        vals[e.record_id] = (0, "", 0, None, e.seq, e.golden_id)
                        continue
                    if cur[0] > e.seq or cur[4] > e.seq:
                        continue  # a newer version is already known: its assignment follows
                    if cur[0] == e.seq:
                        if e.golden_id is None or cur[3] is None:
                            del vals[e.record_id]
                            continue
                        release(e.record_id, e.seq, e.golden_id, cur[1], cur[2], cur[3])
                    vals[e.record_id] = (cur[0], cur[1], cur[2], cur[3], e.seq, e.golden_id)
        return [(stage_key(ctx.entity, "g", i), tuple(out[i])) for i in sorted(out)]


def _blob(row: object) -> RowBlob | None:
    return row if row is None or isinstance(row, bytes) else encode_row(tuple(row))  # type: ignore[arg-type]


def values_row(fields: Sequence[str], values: Mapping[str, object]) -> RowBlob:
    """A record's values in golden field order, encoded once (what the value and golden stages keep
    and ship; :func:`~.protocol.decode_row` where survivorship needs them)."""
    return encode_row(tuple(values.get(f) for f in fields))
