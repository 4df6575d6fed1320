"""The pair stage: combines the block shards' support claims and scores each pair once."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from flows.resolve.features import FeatureStore
from flows.resolve.stages.base import Stage
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.protocol import Edge, FeatureBlob, Features, PairsIn, Routed, decode_features

# Per pair: [support per block shard: (seq a, seq b, supported), versions scored, edge sent to
# clustering: (weight, levels + tf) or None].
_Pair = list[Any]


class PairStage(Stage):
    """Keyed by pair (its key group): a pair is a candidate while some block shard supports it.

    Every block shard sharing an active key value with both records claims the pair, but it is
    scored once per pair of record versions: a claim whose versions the pair was already scored at
    (or older ones) costs a dict lookup. Scoring is batched per activation over a scratch feature
    store (:meth:`~flows.resolve.compare.Scorer.score`: pair by pair for a few, column-wise beyond).
    The stage tells clustering when a pair becomes an edge (scores at least ``edge_floor`` while
    supported), changes score, or stops being one; a pair no block shard supports is forgotten.
    """

    stage = "p"
    TABLES: ClassVar[dict[str, Any]] = {
        "pairs": dict[
            tuple[str, str],
            tuple[dict[int, tuple[int, int, bool]], tuple[int, int] | None, tuple[float, bytes] | None],
        ],
    }

    def __init__(self, ctx: StageContext, key: str) -> None:
        super().__init__(ctx, key)
        self.pairs: dict[tuple[str, str], _Pair] = {}
        self.scored = 0
        """Pairs scored by this shard (benchmarks; the in-order resolver's ``pairs_scored``)."""
        self._store: FeatureStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_store"] = None
        return state

    def decode_table(self, name: str, table: Any) -> Any:
        """Pair entries are mutable lists."""
        return {k: list(v) for k, v in table.items()}

    def apply(self, messages: list[Any]) -> list[Routed]:
        """Apply one activation's claims; score what needs it; report edge changes."""
        ctx = self.context
        self.n += 1
        received = []
        pairs = self.pairs
        touched: dict[tuple[str, str], _Pair] = {}
        want: dict[tuple[str, str], tuple[int, int, FeatureBlob, FeatureBlob]] = {}
        for m in messages:
            assert isinstance(m, PairsIn)
            received.append((m.mid, m.tokens))
            feats = m.features
            shard = m.shard
            for a, b, sa, sb, ok in m.claims:
                key = (a, b)
                st = pairs.get(key)
                if st is None:
                    if not ok:
                        continue  # withdrawing support this shard never gave
                    st = pairs[key] = [{}, None, None]
                st[0][shard] = (sa, sb, ok)
                touched[key] = st
                if ok:
                    done = st[1]
                    if done is not None and sa <= done[0] and sb <= done[1]:
                        continue
                    got = want.get(key)
                    if got is None or (sa >= got[0] and sb >= got[1]):
                        want[key] = (sa, sb, feats[a][1], feats[b][1])
        scores = self._score(ctx, want) if want else {}
        edges: list[Edge] = []
        for key, st in touched.items():
            support = st[0]
            supported = any(v[2] for v in support.values())
            scored = scores.get(key)
            if scored is not None:
                st[1] = scored[0]
                new = scored[1] if supported else None
            else:
                new = st[2] if supported else None
            if new != st[2]:
                a, b = key
                edges.append((a, b, None, b"") if new is None else (a, b, new[0], new[1]))
                st[2] = new
            if not supported:
                del pairs[key]
        return [self.report(tuple(received), (), edges=tuple(edges))]

    def _score(
        self, ctx: StageContext, want: dict[tuple[str, str], tuple[int, int, FeatureBlob, FeatureBlob]]
    ) -> dict[tuple[str, str], tuple[tuple[int, int], tuple[float, bytes] | None]]:
        """Score the wanted pairs at the versions given: {pair: ((seq a, seq b), edge or None)}.
        Each record version's features are decoded once per activation."""
        store = self._store
        if store is None:
            store = self._store = FeatureStore(len(ctx.matching.features))
        keys = list(want)
        ra: list[int] = []
        rb: list[int] = []
        rows: dict[tuple[str, int], int] = {}
        decoded: dict[tuple[str, int], Features] = {}
        for a, b in keys:
            sa, sb, fa, fb = want[(a, b)]
            for rid, seq, f, side in ((a, sa, fa, ra), (b, sb, fb, rb)):
                row = rows.get((rid, seq))
                if row is None:
                    feats = decoded[(rid, seq)] = decode_features(f)
                    row = rows[(rid, seq)] = store.put(f"{rid}@{seq}", feats)
                side.append(row)
        levels, weights = ctx.scorer.score(
            store, np.asarray(ra, dtype=np.intp), np.asarray(rb, dtype=np.intp)
        )
        self.scored += len(keys)
        floor, scorer = ctx.floor, ctx.scorer
        out: dict[tuple[str, str], tuple[tuple[int, int], tuple[float, bytes] | None]] = {}
        for j, (key, w) in enumerate(zip(keys, weights.tolist(), strict=True)):
            sa, sb, _, _ = want[key]
            if w >= floor:
                lv = levels[j]
                tf = scorer.tf_adjustments(decoded[(key[0], sa)], lv.tolist())
                out[key] = ((sa, sb), (w, lv.tobytes() + tf))
            else:
                out[key] = ((sa, sb), None)
        for rid, seq in rows:
            store.remove(f"{rid}@{seq}")
        return out
