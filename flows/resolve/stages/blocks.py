"""The block stage: block membership per blocking key value, the cap, and support claims."""

from __future__ import annotations

from typing import Any, ClassVar

from flows.resolve.stages.base import Stage, union
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.protocol import (
    BlockEntry,
    BlocksIn,
    Claim,
    FeatureBlob,
    PairsIn,
    Routed,
    Tokens,
    encode_features,
    shard_index,
    shard_of,
    stage_key,
)


class BlockStage(Stage):
    """Keyed by blocking key value (its key group): which records hold each key value.

    A pair of records is a *candidate* when they share a key value held by at most
    ``blocking.max_block_size`` records (:mod:`flows.resolve.blocking`). Each block shard knows
    that only for its own key values, so it tells the pair stage, for every pair whose status here
    may have changed, whether it supports the pair (shares an active key value with both records
    here) at the records' versions; the pair stage combines the shards' claims. Claims are sent when
    a record arrives, changes or leaves, and for every pair of a block that crosses the cap either
    way (that is how an edge supported only by a block that grew too large disappears, as in the
    in-order resolver).

    State: ``blocks`` (key value -> members), ``members`` (record -> (seq, encoded features, its key
    values here)), ``oversized`` (key values here above the cap: the metric the resolver reports).
    Features stay encoded (:data:`~.protocol.FeatureBlob`): this stage only passes them on.
    """

    stage = "b"
    TABLES: ClassVar[dict[str, Any]] = {
        "blocks": dict[str, tuple[str, ...]],
        "members": dict[str, tuple[int, bytes, tuple[str, ...]]],
    }

    def __init__(self, ctx: StageContext, key: str) -> None:
        super().__init__(ctx, key)
        self.blocks: dict[str, tuple[str, ...]] = {}
        self.members: dict[str, tuple[int, FeatureBlob, tuple[str, ...]]] = {}
        self.oversized = 0

    def upgrade(self, fmt: int) -> None:
        """Layout 1 held feature tuples."""
        if fmt < 2:
            self.members = {
                rid: (seq, f if isinstance(f, bytes) else encode_features(f), keys)
                for rid, (seq, f, keys) in self.members.items()
            }

    def apply(self, messages: list[Any]) -> list[Routed]:
        """Apply the record versions of one activation; claims per pair shard, and the report."""
        ctx = self.context
        self.n += 1
        received = []
        token_sets: list[Tokens] = []
        latest: dict[str, BlockEntry] = {}
        for m in messages:
            assert isinstance(m, BlocksIn)
            received.append((m.mid, m.tokens))
            token_sets.append(m.tokens)
            for e in m.entries:
                cur = latest.get(e.record_id)
                if cur is None or e.seq > cur.seq:
                    latest[e.record_id] = e
        tokens = union(token_sets)
        cap = ctx.cap
        blocks, members = self.blocks, self.members
        changed: dict[str, BlockEntry] = {}
        for rid, e in latest.items():
            old = members.get(rid)
            if old is not None and old[0] >= e.seq:
                continue
            if old is None and e.features is None:
                continue
            changed[rid] = e
        # Candidates before the batch: what each changed record's support claims must withdraw.
        pairs: dict[tuple[str, str], bool | None] = {}
        for rid in changed:
            old = members.get(rid)
            if old is None:
                continue
            for k in old[2]:
                block = blocks[k]
                if len(block) <= cap:
                    for o in block:
                        if o != rid:
                            pairs[(rid, o) if rid < o else (o, rid)] = None
        before: dict[str, int] = {}
        for rid, e in changed.items():
            old = members.get(rid)
            old_keys = set(old[2]) if old is not None else set()
            new_keys = set(e.keys) if e.features is not None else set()
            for k in old_keys - new_keys:
                block = blocks[k]
                before.setdefault(k, len(block))
                if len(block) == 1:
                    del blocks[k]
                else:
                    blocks[k] = tuple(x for x in block if x != rid)
            for k in new_keys - old_keys:
                block = blocks.get(k, ())
                before.setdefault(k, len(block))
                blocks[k] = (*block, rid)
            if e.features is None or not e.keys:
                members.pop(rid, None)  # deleted, or none of its key values lives here any more
            else:
                members[rid] = (e.seq, e.features, e.keys)
        # Blocks crossing the cap change the support of every pair of their unchanged members.
        for k, size in before.items():
            now = len(blocks.get(k, ()))
            if size <= cap < now:
                self.oversized += 1
            elif now <= cap < size:
                self.oversized -= 1
            else:
                continue
            stay = [x for x in blocks.get(k, ()) if x not in changed]
            for i, a in enumerate(stay):
                for b in stay[i + 1 :]:
                    pairs.setdefault((a, b) if a < b else (b, a), None)
        # Candidates after the batch are supported here by construction.
        for rid, e in changed.items():
            if e.features is None:
                continue
            for k in e.keys:  # (empty when the record left this shard)
                block = blocks[k]
                if len(block) <= cap:
                    for o in block:
                        if o != rid:
                            pairs[(rid, o) if rid < o else (o, rid)] = True
        shards, entity, here = ctx.shards, ctx.entity, shard_index(self.key)
        claims: dict[int, list[Claim]] = {}
        feats: dict[int, dict[str, tuple[int, FeatureBlob]]] = {}
        for (a, b), known in pairs.items():
            ma, mb = members.get(a), members.get(b)
            if known is None:
                known = (
                    ma is not None
                    and mb is not None
                    and any(len(blocks[k]) <= cap for k in set(ma[2]).intersection(mb[2]))
                )
            sa = ma[0] if ma is not None else changed[a].seq
            sb = mb[0] if mb is not None else changed[b].seq
            p = shard_of(f"{a}\x00{b}", shards)
            claims.setdefault(p, []).append((a, b, sa, sb, known))
            if known:
                assert ma is not None and mb is not None
                f = feats.setdefault(p, {})
                f[a] = (sa, ma[1])
                f[b] = (sb, mb[1])
        out: list[Routed] = []
        sent = []
        for p in sorted(claims):
            dest = stage_key(entity, "p", p)
            mid = self.mid(dest)
            out.append((dest, PairsIn(mid, tokens, here, tuple(claims[p]), feats.get(p, {}))))
            sent.append((mid, tokens))
        out.append(self.report(tuple(received), tuple(sent)))
        return out
