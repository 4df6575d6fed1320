"""The incremental resolver: records in, entity events out, final clusters independent of order.

State (all plain dicts, picklable; compiled config is rebuilt on unpickling):

* ``features``: record id -> feature tuple (interned strings);
* ``blocks``: block key value -> member record ids (see :mod:`flows.resolve.blocking`);
* ``adj``: the match graph, record id -> neighbour -> (match weight, comparison levels), for every
  candidate pair scoring at least ``clustering.edge_floor``;
* ``golden``: record id -> golden id, golden id -> members, golden id -> birth sequence.

An upsert or delete changes the record's block memberships and edges, then re-clusters every
component (connected by link edges) that holds a changed edge or record with
:func:`flows.resolve.cluster.cluster_component`. Because candidate pairs, scores, edges and the
clustering of a component are all functions of the current records and overrides, the partition
is too; only the golden ids depend on history (the oldest id survives a merge, the larger part
keeps the id on a split).

For the dataflow the work partitions as DESIGN.md describes: blocking and scoring by block key
(a record's candidates are the members of its key values), clustering by entity type on the edge
messages alone (``cluster_component`` reads edges, never records), golden records by golden id.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from flows.resolve.blocking import BlockKeyer
from flows.resolve.cluster import ClusterParams, MergeStep, cluster_component
from flows.resolve.compare import SCALAR_MAX_PAIRS, LevelDetail, Scorer, probability, weight_of
from flows.resolve.config import MatchingConfig, Overrides
from flows.resolve.events import EntityEvent
from flows.resolve.features import FeatureExtractor, Features, FeatureStore

Edge = tuple[float, bytes]


@dataclass(frozen=True, slots=True)
class LinkExplanation:
    """Why two records scored what they did."""

    a: str
    b: str
    weight: float
    probability: float
    comparisons: tuple[LevelDetail, ...]


@dataclass(frozen=True, slots=True)
class ClusterExplanation:
    """Why the records of one golden id are together."""

    golden_id: str
    members: tuple[str, ...]
    links: tuple[LinkExplanation, ...]
    """Every stored edge inside the cluster, strongest first."""
    merges: tuple[MergeStep, ...]
    """The joins that built the cluster, in the order clustering made them."""
    must_link: tuple[tuple[str, str], ...]
    cannot_link: tuple[tuple[str, str], ...]
    """Cannot-links from a member to a record outside (what kept them apart)."""


@dataclass(frozen=True, slots=True)
class ResolverStats:
    """Counters for benchmarks and metrics."""

    records: int
    edges: int
    block_keys: int
    clusters: int
    pairs_scored: int
    largest_cluster: int
    oversized_blocks: int = 0
    """Block key values held by more than ``max_block_size`` records (they generate no pairs)."""


class Resolver:
    """Incremental entity resolution for one entity type."""

    def __init__(self, config: MatchingConfig, *, golden_prefix: str | None = None) -> None:
        self.config = config
        self.golden_prefix = golden_prefix if golden_prefix is not None else f"{config.entity}-"
        self.store = FeatureStore(len(config.features))
        self.blocks: dict[str, tuple[str, ...]] = {}
        self.adj: dict[str, dict[str, Edge]] = {}
        self.golden_of: dict[str, str] = {}
        self.golden_members: dict[str, tuple[str, ...]] = {}
        self.golden_born: dict[str, int] = {}
        self.sequence = 0
        self.must: dict[str, set[str]] = {}
        self.cannot: dict[str, set[str]] = {}
        self.pairs_scored = 0
        self.oversized_blocks = 0
        self._compile()
        for a, b in config.overrides.must_link:
            self._add_override(self.must, a, b)
        for a, b in config.overrides.cannot_link:
            self._add_override(self.cannot, a, b)

    # -- pickling: state only; compiled parts are rebuilt ------------------------------------
    def _compile(self) -> None:
        self._extract = FeatureExtractor(self.config)
        self._keys = BlockKeyer(self.config)
        self._scorer = Scorer(self.config)
        cl = self.config.clustering
        self._max_block = self.config.blocking.max_block_size
        self._floor = weight_of(cl.edge_floor)
        self._params = ClusterParams(weight_of(cl.threshold), cl.min_cluster_support, cl.missing_weight)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in ("_extract", "_keys", "_scorer", "_params"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "oversized_blocks" not in state:  # pickled before the counter existed: count once
            cap = self.config.blocking.max_block_size
            self.oversized_blocks = sum(len(b) > cap for b in self.blocks.values())
        self._compile()

    # -- public API ---------------------------------------------------------------------------
    def upsert(self, record_id: str, record: Mapping[str, object]) -> list[EntityEvent]:
        """Add or replace one record; returns the entity events it caused."""
        return self.apply([(record_id, record)])

    def delete(self, record_id: str) -> list[EntityEvent]:
        """Remove one record (unknown ids are ignored); returns the entity events it caused."""
        return self.apply([(record_id, None)])

    def upsert_many(self, items: Iterable[tuple[str, Mapping[str, object]]]) -> list[EntityEvent]:
        """Add or replace a batch of records at once (one scoring call for the whole batch)."""
        return self.apply(items)

    def apply(self, changes: Iterable[tuple[str, Mapping[str, object] | None]]) -> list[EntityEvent]:
        """Apply upserts (a record) and deletes (``None``) in one step; the last change per id wins."""
        latest: dict[str, Features | None] = {}
        for rid, rec in changes:
            latest[rid] = None if rec is None else self._extract(rec)
        return self._apply(latest)

    def add_must_link(self, a: str, b: str) -> list[EntityEvent]:
        """Steward override: ``a`` and ``b`` are the same entity (kept across re-matching)."""
        self._add_override(self.must, a, b)
        self._drop_override(self.cannot, a, b)
        return self._recluster({a, b}, set(), set())

    def add_cannot_link(self, a: str, b: str) -> list[EntityEvent]:
        """Steward override: ``a`` and ``b`` are different entities (kept across re-matching)."""
        self._add_override(self.cannot, a, b)
        self._drop_override(self.must, a, b)
        return self._recluster({a, b}, set(), set())

    def set_overrides(self, overrides: Overrides) -> list[EntityEvent]:
        """Replace every steward decision at once (say, reloaded from an overrides table)."""

        def pairs() -> set[tuple[str, str, str]]:
            return {
                (kind, x, y)
                for kind, t in (("must", self.must), ("cannot", self.cannot))
                for x, ys in t.items()
                for y in ys
            }

        before = pairs()
        self.must, self.cannot = {}, {}
        for a, b in overrides.must_link:
            self._add_override(self.must, a, b)
        for a, b in overrides.cannot_link:
            self._add_override(self.cannot, a, b)
        touched = {x for _, a, b in before ^ pairs() for x in (a, b)}
        return self._recluster(touched, set(), set())

    def remove_override(self, a: str, b: str) -> list[EntityEvent]:
        """Forget any steward decision about ``a`` and ``b``."""
        self._drop_override(self.must, a, b)
        self._drop_override(self.cannot, a, b)
        return self._recluster({a, b}, set(), set())

    def golden_id(self, record_id: str) -> str | None:
        """The golden id of a record, or None for an unknown record."""
        return self.golden_of.get(record_id)

    def members(self, golden_id: str) -> tuple[str, ...]:
        """The record ids of a golden id, sorted (empty for an unknown or retired id)."""
        return self.golden_members.get(golden_id, ())

    def clusters(self) -> dict[str, tuple[str, ...]]:
        """Every golden id and its sorted members."""
        return dict(self.golden_members)

    def partition(self) -> frozenset[frozenset[str]]:
        """The clusters as a set of sets: what order-independence promises to keep equal."""
        return frozenset(frozenset(m) for m in self.golden_members.values())

    def is_candidate_pair(self, a: str, b: str) -> bool:
        """Whether two current records share a block key value small enough to be compared."""
        fa, fb = self.store.get(a), self.store.get(b)
        if fa is None or fb is None or a == b:
            return False
        shared = set(self._keys(fa)) & set(self._keys(fb))
        return any(len(self.blocks.get(k, ())) <= self._max_block for k in shared)

    def edge(self, a: str, b: str) -> Edge | None:
        """The stored edge between two records (weight, levels), if any."""
        return self.adj.get(a, {}).get(b)

    def stats(self) -> ResolverStats:
        """Sizes of the state and work done so far."""
        edges = sum(len(v) for v in self.adj.values()) // 2
        largest = max((len(m) for m in self.golden_members.values()), default=0)
        return ResolverStats(
            len(self.store),
            edges,
            len(self.blocks),
            len(self.golden_members),
            self.pairs_scored,
            largest,
            self.oversized_blocks,
        )

    def explain_pair(self, a: str, b: str) -> LinkExplanation:
        """Score breakdown of any two current records (whether or not they are an edge)."""
        lo, hi = (a, b) if a < b else (b, a)
        fa, fb = self.store.get(lo), self.store.get(hi)
        if fa is None or fb is None:
            raise KeyError(f"unknown record {lo if fa is None else hi!r}")
        w, details = self._scorer.explain(fa, fb)
        return LinkExplanation(lo, hi, w, probability(w), tuple(details))

    def explain(self, golden_id: str) -> ClusterExplanation:
        """Why the records of ``golden_id`` were joined: their edges with breakdowns, and the merges."""
        members = self.members(golden_id)
        if not members:
            raise KeyError(f"unknown golden id {golden_id!r}")
        mset = set(members)
        links = [
            self.explain_pair(a, b)
            for a in members
            for b in sorted(self.adj.get(a, {}))
            if a < b and b in mset
        ]
        links.sort(key=lambda link: (-link.weight, link.a, link.b))
        trace: list[MergeStep] = []
        region = self._component({members[0]})
        cluster_component(region, self.adj, self._params, must=self.must, cannot=self.cannot, trace=trace)
        merges = tuple(s for s in trace if s.a in mset)
        must = tuple(
            sorted({(min(a, b), max(a, b)) for a in members for b in self.must.get(a, ()) if b in mset})
        )
        cannot = tuple(sorted((a, b) for a in members for b in self.cannot.get(a, ()) if b not in mset))
        return ClusterExplanation(golden_id, members, tuple(links), merges, must, cannot)

    # -- the algorithm --------------------------------------------------------------------------
    def _apply(self, latest: dict[str, Features | None]) -> list[EntityEvent]:
        before: dict[str, int] = {}
        dirty: dict[str, tuple[str, ...]] = {}
        seeds: set[str] = set()
        deleted: set[str] = set()
        upserted: set[str] = set()
        for rid, new in latest.items():
            old = self.store.get(rid)
            if new is not None:
                upserted.add(rid)
                if old == new:
                    continue
            elif old is None:
                continue
            old_keys = set(self._keys(old)) if old is not None else set()
            new_list = self._keys(new) if new is not None else ()
            new_keys = set(new_list)
            blocks = self.blocks
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
            if old is not None:
                seeds.add(rid)
                seeds.update(self._drop_edges(rid))
            if new is None:
                self.store.remove(rid)
                deleted.add(rid)
            else:
                self.store.put(rid, new)
                dirty[rid] = new_list

        pairs: set[tuple[str, str]] = set()
        m = self._max_block
        for k, size in before.items():
            now = len(self.blocks.get(k, ()))
            if size <= m < now:
                self.oversized_blocks += 1
                seeds.update(self._deactivate(k))
            elif now <= m < size:
                self.oversized_blocks -= 1
                members = self.blocks.get(k, ())
                for i, a in enumerate(members):
                    for b in members[i + 1 :]:
                        pairs.add((a, b) if a < b else (b, a))
        blocks = self.blocks
        for rid, keys in dirty.items():
            cands: set[str] = set()
            for k in keys:
                block = blocks[k]
                if len(block) <= m:
                    cands.update(block)
            cands.discard(rid)
            pairs.update([(rid, o) if rid < o else (o, rid) for o in cands])
        seeds.update(self._score(pairs))
        seeds.update(dirty)
        return self._recluster(seeds, deleted, upserted)

    def _score(self, pairs: set[tuple[str, str]]) -> set[str]:
        """Score candidate pairs; store the edges at or above the floor; return their endpoints."""
        if not pairs:
            return set()
        ordered = list(pairs)
        row = self.store.row_of
        ra = [row[a] for a, _ in ordered]
        rb = [row[b] for _, b in ordered]
        self.pairs_scored += len(ordered)
        floor = self._floor
        edges: list[tuple[tuple[str, str], float, bytes]]
        if len(ordered) > SCALAR_MAX_PAIRS:
            # Column-wise; only the pairs that become edges are turned into Python objects.
            lv, w = self._scorer.score_vectorised(
                self.store, np.asarray(ra, dtype=np.intp), np.asarray(rb, dtype=np.intp)
            )
            keep = np.flatnonzero(w >= floor)
            width = lv.shape[1]
            raw = lv[keep].tobytes()
            edges = [
                (ordered[i], weight, raw[k * width : (k + 1) * width])
                for k, (i, weight) in enumerate(zip(keep.tolist(), w[keep].tolist(), strict=True))
            ]
        else:
            scored = self._scorer.score_list(self.store, ra, rb)
            edges = [
                (p, weight, bytes(levels))
                for p, (levels, weight) in zip(ordered, scored, strict=True)
                if weight >= floor
            ]
        touched: set[str] = set()
        adj = self.adj
        for (a, b), weight, levels in edges:
            edge = (weight, levels)
            adj.setdefault(a, {})[b] = edge
            adj.setdefault(b, {})[a] = edge
            touched.add(a)
            touched.add(b)
        return touched

    def _drop_edges(self, rid: str) -> list[str]:
        nbrs = self.adj.pop(rid, {})
        for other in nbrs:
            del self.adj[other][rid]
            if not self.adj[other]:
                del self.adj[other]
        return list(nbrs)

    def _deactivate(self, key: str) -> set[str]:
        """A block grew past the cap: drop the edges no other active block supports."""
        members = self.blocks[key]
        mset = set(members)
        cap = self._max_block
        active: dict[str, set[str]] = {}
        for rid in members:
            feats = self.store.get(rid)
            keys = self._keys(feats) if feats is not None else ()
            active[rid] = {k for k in keys if k != key and len(self.blocks.get(k, ())) <= cap}
        touched: set[str] = set()
        for a in members:
            for b in [b for b in self.adj.get(a, ()) if b in mset and a < b]:
                if not active[a] & active[b]:
                    for x, y in ((a, b), (b, a)):
                        nbrs = self.adj[x]
                        del nbrs[y]
                        if not nbrs:
                            del self.adj[x]
                    touched.update((a, b))
        return touched

    def _component(self, seeds: Iterable[str]) -> set[str]:
        """Records connected to ``seeds`` by link edges or must-links."""
        return component(seeds, self.adj, self.must, self.store, self._params.link_weight)

    def _recluster(self, seeds: set[str], deleted: set[str], upserted: set[str]) -> list[EntityEvent]:
        """Re-cluster every component holding a seed, and every component sharing an old cluster with
        one of those, so that old clusters are either wholly re-clustered or untouched."""
        store, members, golden_of = self.store, self.golden_members, self.golden_of
        pending = {s for s in seeds if s in store}
        for r in deleted:
            pending.update(x for x in members.get(golden_of.get(r, ""), ()) if x in store)
        region, comps = closure(
            pending, self.adj, self.must, self.store, self.golden_of, self.golden_members, self._params
        )
        clusters = cluster_components(comps, self.adj, self._params, self.must, self.cannot)
        return self._assign(clusters, region, deleted, upserted)

    def mint(self) -> str:
        """A new golden id (the next in this entity's sequence)."""
        return self._mint()

    def _mint(self) -> str:
        self.sequence += 1
        gid = f"{self.golden_prefix}{self.sequence:08d}"
        self.golden_born[gid] = self.sequence
        return gid

    def _assign(
        self, clusters: list[tuple[str, ...]], region: set[str], deleted: set[str], upserted: set[str]
    ) -> list[EntityEvent]:
        return assign_golden(self, clusters, region, deleted, upserted)

    # -- overrides --------------------------------------------------------------------------
    @staticmethod
    def _add_override(table: dict[str, set[str]], a: str, b: str) -> None:
        if a == b:
            return
        table.setdefault(a, set()).add(b)
        table.setdefault(b, set()).add(a)

    @staticmethod
    def _drop_override(table: dict[str, set[str]], a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            s = table.get(x)
            if s is not None:
                s.discard(y)
                if not s:
                    del table[x]


# -- clustering and golden-id bookkeeping shared with the staged cluster step ------------------------


class GoldenIds(Protocol):
    """The record -> golden id bookkeeping :func:`assign_golden` updates."""

    golden_of: dict[str, str]
    golden_members: dict[str, tuple[str, ...]]
    golden_born: dict[str, int]

    def mint(self) -> str:
        """A new golden id, younger than every existing one."""
        ...


def component(
    seeds: Iterable[str],
    adj: Mapping[str, Mapping[str, Edge]],
    must: Mapping[str, Collection[str]],
    live: Container[str],
    link_weight: float,
) -> set[str]:
    """Live records connected to ``seeds`` by link edges or must-links."""
    seen: set[str] = set()
    stack = [s for s in seeds if s in live]
    while stack:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        for y, (w, _) in adj.get(x, {}).items():
            if w >= link_weight and y not in seen and y in live:
                stack.append(y)
        for y in must.get(x, ()):
            if y not in seen and y in live:
                stack.append(y)
    return seen


def closure(
    pending: set[str],
    adj: Mapping[str, Mapping[str, Edge]],
    must: Mapping[str, Collection[str]],
    live: Container[str],
    golden_of: Mapping[str, str],
    members: Mapping[str, tuple[str, ...]],
    params: ClusterParams,
) -> tuple[set[str], list[set[str]]]:
    """The region to re-cluster for ``pending`` (live seeds): their components, and the components of
    every record sharing an old cluster with one of those, until closed (so that old clusters are
    either wholly re-clustered or untouched). Returns the region and its components."""
    region: set[str] = set()
    comps: list[set[str]] = []
    while pending:
        for start in sorted(pending):
            if start in region:
                continue
            comp = component((start,), adj, must, live, params.link_weight)
            region |= comp
            comps.append(comp)
        pending = {
            x for r in region for x in members.get(golden_of.get(r, ""), ()) if x not in region and x in live
        }
    return region, comps


def cluster_components(
    comps: Iterable[set[str]],
    adj: Mapping[str, Mapping[str, Edge]],
    params: ClusterParams,
    must: Mapping[str, Collection[str]],
    cannot: Mapping[str, Collection[str]],
) -> list[tuple[str, ...]]:
    """:func:`~flows.resolve.cluster.cluster_component` of each component, all clusters sorted."""
    out: list[tuple[str, ...]] = []
    for comp in comps:
        if len(comp) == 1:
            out.append((next(iter(comp)),))
        else:
            out.extend(cluster_component(comp, adj, params, must=must, cannot=cannot))
    out.sort()
    return out


def assign_golden(
    ids: GoldenIds,
    clusters: list[tuple[str, ...]],
    region: set[str],
    deleted: set[str],
    upserted: set[str],
) -> list[EntityEvent]:
    """Give the re-clustered ``region`` its golden ids and return the entity events.

    The oldest golden id claiming a cluster survives (MERGED names the others); an old id whose
    records spread over several clusters keeps the cluster holding most of them (SPLIT names the new
    ids); an id with no records left is RETIRED. ``deleted`` records leave (REMOVED); every record
    of ``upserted`` gets an ASSIGNED event, moved or not.
    """
    old_ids = sorted({ids.golden_of[r] for r in region | deleted if r in ids.golden_of})
    index = {r: i for i, c in enumerate(clusters) for r in c}
    claims: dict[int, list[str]] = {}
    spread: dict[str, list[int]] = {}
    retired: list[str] = []
    for g in old_ids:
        counts: dict[int, int] = {}
        for r in ids.golden_members[g]:
            i = index.get(r)
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        if not counts:
            retired.append(g)
            continue
        best = min(counts, key=lambda i: (-counts[i], clusters[i][0]))
        claims.setdefault(best, []).append(g)
        spread[g] = sorted(counts)
    born = ids.golden_born
    new_id: dict[int, str] = {}
    events: list[EntityEvent] = []
    merged: list[EntityEvent] = []
    for i in range(len(clusters)):
        gs = sorted(claims.get(i, ()), key=lambda g: born[g])
        if gs:
            new_id[i] = gs[0]
            if len(gs) > 1:
                merged.append(EntityEvent("MERGED", gs[0], others=tuple(gs[1:])))
        else:
            new_id[i] = ids.mint()
    for g, parts in spread.items():
        others = tuple(sorted({new_id[i] for i in parts} - {g}))
        if len(parts) > 1 and others:
            events.append(EntityEvent("SPLIT", g, others=others))
    events.extend(merged)
    for g in retired:
        events.append(EntityEvent("RETIRED", g))
    # Rewrite membership for everything in the region.
    moved = region | deleted
    for g in old_ids:
        kept = tuple(r for r in ids.golden_members.pop(g) if r not in moved)
        if kept:
            ids.golden_members[g] = kept
    per_record: list[EntityEvent] = []
    for r in sorted(deleted):
        g_old = ids.golden_of.pop(r, None)
        if g_old is not None:
            per_record.append(EntityEvent("REMOVED", g_old, record_id=r))
    for i, c in enumerate(clusters):
        g = new_id[i]
        prior = ids.golden_members.get(g, ())
        ids.golden_members[g] = tuple(sorted((*prior, *c))) if prior else c
        for r in c:
            prev = ids.golden_of.get(r)
            if prev != g or r in upserted:
                per_record.append(EntityEvent("ASSIGNED", g, record_id=r, previous_golden_id=prev))
            ids.golden_of[r] = g
    for g in old_ids:
        if g not in ids.golden_members:
            born.pop(g, None)
    for r in sorted(upserted - region):
        same = ids.golden_of.get(r)
        if same is not None:
            per_record.append(EntityEvent("ASSIGNED", same, record_id=r, previous_golden_id=same))
    per_record.sort(key=lambda e: (e.record_id or "", e.kind))
    events.extend(per_record)
    return events
