"""The cluster stage: one per entity, acting on edge messages and record versions only."""

from __future__ import annotations

from typing import Any, ClassVar

from core.golden import Cause
from flows.resolve.config import Overrides
from flows.resolve.events import EntityEvent
from flows.resolve.resolver import assign_golden, closure, cluster_components
from flows.resolve.stages.base import Stage
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.protocol import (
    Assignment,
    Completeness,
    GoldenUpdate,
    LinkEdge,
    RecordEntry,
    Report,
    Routed,
    shard_of,
    stage_key,
)


def _add(table: dict[str, set[str]], a: str, b: str) -> None:
    if a != b:
        table.setdefault(a, set()).add(b)
        table.setdefault(b, set()).add(a)


class ClusterStage(Stage):
    """Keyed by entity type: the match graph, the clusters and their golden ids.

    It never sees a record's values or features: its inputs are the reports of the other stages
    (record versions from the record stage, edge changes from the pair stage, message receipts from
    all) and its state is the edge set, which records are live (with their version), the golden-id
    bookkeeping and the steward overrides. Edge changes are applied as they come; re-clustering
    (:func:`~flows.resolve.resolver.closure`, :func:`~flows.resolve.cluster.cluster_component`,
    :func:`~flows.resolve.resolver.assign_golden`, exactly the in-order resolver's functions) waits
    until the region holds no record an incomplete token touched (:class:`.protocol.Completeness`).
    Because the edges, the live records and the overrides end up the same whatever the arrival
    order, so does the partition; golden ids follow the in-order resolver's rules.

    Output: an :class:`Assignment` per record version settled (to the value stage) and a
    :class:`GoldenUpdate` per golden id whose membership, members' versions or links changed (to
    the golden stage).
    """

    stage = "c"
    TABLES: ClassVar[dict[str, Any]] = {
        "adj": dict[str, dict[str, tuple[float, bytes]]],
        "live": dict[str, int],
        "golden_of": dict[str, str],
        "golden_members": dict[str, tuple[str, ...]],
        "golden_born": dict[str, int],
    }

    def __init__(self, ctx: StageContext, key: str) -> None:
        super().__init__(ctx, key)
        self.adj: dict[str, dict[str, tuple[float, bytes]]] = {}
        self.live: dict[str, int] = {}
        self.golden_of: dict[str, str] = {}
        self.golden_members: dict[str, tuple[str, ...]] = {}
        self.golden_born: dict[str, int] = {}
        self.sequence = 0
        self.golden_prefix = ctx.golden_prefix
        self.must: dict[str, set[str]] = {}
        self.cannot: dict[str, set[str]] = {}
        for a, b in ctx.overrides.must_link:
            _add(self.must, a, b)
        for a, b in ctx.overrides.cannot_link:
            _add(self.cannot, a, b)
        self.protocol = Completeness()
        self.seeds: set[str] = set()
        """Records whose component must be re-clustered (edges or features changed)."""
        self.changed: dict[str, RecordEntry] = {}
        """Record versions not yet settled."""
        self.relink: set[str] = set()
        """Records whose edges changed since their cluster's links were last sent."""

    # -- golden ids (flows.resolve.resolver.GoldenIds) -----------------------------------------
    def mint(self) -> str:
        """A new golden id."""
        self.sequence += 1
        gid = f"{self.golden_prefix}{self.sequence:08d}"
        self.golden_born[gid] = self.sequence
        return gid

    def partition(self) -> frozenset[frozenset[str]]:
        """The current clusters as a set of sets."""
        return frozenset(frozenset(m) for m in self.golden_members.values())

    def idle(self) -> bool:
        """Whether nothing waits: no incomplete token, no unsettled record or seed."""
        return not (self.protocol.pending() or self.changed or self.seeds)

    # -- input ------------------------------------------------------------------------------------
    def apply(self, messages: list[Any]) -> list[Routed]:
        """Apply one activation's reports, then re-cluster what is complete."""
        proto = self.protocol
        adj, live, changed, seeds = self.adj, self.live, self.changed, self.seeds
        tokens: set[str] = set()
        for rep in messages:
            assert isinstance(rep, Report)
            toks = proto.note(rep)
            tokens.update(toks)
            touched: set[str] = set()
            for e in rep.records:
                rid = e.record_id
                prev = changed.get(rid)
                if prev is not None and prev.seq >= e.seq:
                    continue
                if e.kind == "delete":
                    live.pop(rid, None)
                else:
                    live[rid] = e.seq
                if prev is not None and prev.kind == "upsert" and e.kind == "same":
                    # the unsettled earlier version changed features: the record still re-matches
                    e = RecordEntry(rid, e.seq, "upsert", e.cause)
                changed[rid] = e
                if e.kind != "same":
                    seeds.add(rid)
                touched.add(rid)
            for a, b, w, lv in rep.edges:
                if w is None:
                    for x, y in ((a, b), (b, a)):
                        nbrs = adj.get(x)
                        if nbrs is not None and nbrs.pop(y, None) is not None and not nbrs:
                            del adj[x]
                else:
                    edge = (w, lv)
                    adj.setdefault(a, {})[b] = edge
                    adj.setdefault(b, {})[a] = edge
                seeds.add(a)
                seeds.add(b)
                self.relink.add(a)
                self.relink.add(b)
                touched.add(a)
                touched.add(b)
            proto.hold(toks, touched)
        proto.complete(tokens)
        return self.settle()

    def set_overrides(self, overrides: Overrides) -> list[Routed]:
        """Replace every steward decision (the matching config's own included) and re-cluster what
        they touch."""

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
            _add(self.must, a, b)
        for a, b in overrides.cannot_link:
            _add(self.cannot, a, b)
        self.seeds.update(x for _, a, b in before ^ pairs() for x in (a, b) if x in self.live)
        return self.settle()

    # -- re-clustering ------------------------------------------------------------------------------
    def settle(self) -> list[Routed]:
        """Re-cluster every region free of held records; settle the record versions there."""
        ctx = self.context
        holds = self.protocol.holds
        live, members, golden_of = self.live, self.golden_members, self.golden_of
        ready = {r: e for r, e in self.changed.items() if r not in holds}
        deleted = {r for r, e in ready.items() if e.kind == "delete"}
        pending = {s for s in self.seeds if s not in holds and s in live}
        for d in deleted:
            pending.update(x for x in members.get(golden_of.get(d, ""), ()) if x in live)
        region: set[str] = set()
        comps: list[set[str]] = []
        deferred: set[str] = set()
        for s in sorted(pending):
            if s in region or s in deferred:
                continue
            reg, cs = closure({s}, self.adj, self.must, live, golden_of, members, ctx.params)
            if any(r in holds for r in reg):
                deferred |= reg
            else:
                region |= reg
                comps.extend(cs)
        deleted = {
            d for d in deleted if not any(x in deferred for x in members.get(golden_of.get(d, ""), ()))
        }
        upserted = {r for r, e in ready.items() if e.kind != "delete" and r not in deferred}
        if not (region or deleted or upserted):
            self.seeds = {s for s in self.seeds if s in holds or s in deferred}
            return []
        clusters = cluster_components(comps, self.adj, ctx.params, self.must, self.cannot)
        events = assign_golden(self, clusters, region, deleted, upserted)
        settled = {r: ready[r] for r in deleted | upserted}
        relinked = self.relink & region
        out = self._emit(events, settled, relinked)
        for r in settled:
            del self.changed[r]
        self.relink -= relinked
        self.seeds = {s for s in self.seeds if s in holds or s in deferred}
        return out

    def _emit(
        self, events: list[EntityEvent], settled: dict[str, RecordEntry], relinked: set[str]
    ) -> list[Routed]:
        """Assignments for the value stage and golden updates for the golden stage."""
        ctx = self.context
        live, members_of = self.live, self.golden_members
        touched: set[str] = set()
        moved_in: dict[str, list[str]] = {}
        moved_out: dict[str, list[str]] = {}
        removed: dict[str, list[str]] = {}
        merged_from: dict[str, tuple[str, ...]] = {}
        merged_into: dict[str, str] = {}
        split_from: dict[str, str] = {}
        lineage: dict[str, list[tuple[Any, tuple[str, ...]]]] = {}
        groups: list[tuple[str, ...]] = []
        cause: dict[str, Cause] = {}
        assignments: list[Assignment] = []

        def blame(gid: str | None, rid: str | None) -> None:
            # The latest of the settled changes that touched a golden id is its cause.
            e = settled.get(rid) if rid is not None else None
            if gid is None or e is None:
                return
            c = cause.get(gid)
            if c is None or e.cause.source_ts_us > c.source_ts_us:
                cause[gid] = e.cause

        for e in events:
            g = e.golden_id
            touched.add(g)
            touched.update(e.others)
            if e.kind == "MERGED":
                merged_from[g] = e.others
                for o in e.others:
                    merged_into[o] = g
                lineage.setdefault(g, []).append(("MERGED", e.others))
                groups.append((g, *e.others))
            elif e.kind == "SPLIT":
                for o in e.others:
                    split_from[o] = g
                lineage.setdefault(g, []).append(("SPLIT", e.others))
                groups.append((g, *e.others))
            elif e.kind == "ASSIGNED":
                rid = e.record_id or ""
                if e.previous_golden_id != g:
                    moved_in.setdefault(g, []).append(rid)
                    if e.previous_golden_id is not None:
                        touched.add(e.previous_golden_id)
                        moved_out.setdefault(e.previous_golden_id, []).append(rid)
                assignments.append(Assignment(rid, live[rid], g))
                blame(g, rid)
                blame(e.previous_golden_id, rid)
            elif e.kind == "REMOVED":
                removed.setdefault(g, []).append(e.record_id or "")
                blame(g, e.record_id)
        for rid, entry in settled.items():
            if entry.kind == "delete":
                assignments.append(Assignment(rid, entry.seq, None))
        # Golden ids only reached through a merge or split inherit the cause of the other side.
        for group in groups:
            known = next((cause[g] for g in group if g in cause), None)
            if known is not None:
                for g in group:
                    cause.setdefault(g, known)
        for r in relinked:
            owner = self.golden_of.get(r)
            if owner is not None:
                touched.add(owner)
        updates: dict[int, list[GoldenUpdate]] = {}
        adj = self.adj
        for gid in sorted(touched):
            members = members_of.get(gid, ())
            relink = bool(
                gid in moved_in
                or gid in moved_out
                or gid in removed
                or gid in lineage
                or any(m in relinked for m in members)
            )
            links: list[LinkEdge] = []
            best: list[float | None] = []
            if relink and len(members) > 1:
                mset = set(members)
                for a in members:
                    top: float | None = None
                    for b, (w, lv) in adj.get(a, {}).items():
                        if b in mset:
                            if a < b:
                                links.append((a, b, w, lv))
                            if top is None or w > top:
                                top = w
                    best.append(top)
                links.sort(key=lambda x: (-x[2], x[0], x[1]))
            elif relink:
                best = [None] * len(members)
            upd = GoldenUpdate(
                gid,
                tuple((m, live[m]) for m in members),
                moved_in=tuple(moved_in.get(gid, ())),
                moved_out=tuple(moved_out.get(gid, ())),
                removed=tuple(removed.get(gid, ())),
                merged_from=merged_from.get(gid, ()),
                merged_into=merged_into.get(gid),
                split_from=split_from.get(gid),
                lineage=tuple(lineage.get(gid, ())),
                relinked=relink,
                links=tuple(links),
                best=tuple(best),
                cause=cause.get(gid),
            )
            updates.setdefault(shard_of(gid, ctx.shards), []).append(upd)
        out: list[Routed] = []
        by_value: dict[int, list[Assignment]] = {}
        for asg in assignments:
            by_value.setdefault(shard_of(asg.record_id, ctx.shards), []).append(asg)
        for i in sorted(by_value):
            out.append((stage_key(ctx.entity, "v", i), tuple(by_value[i])))
        for i in sorted(updates):
            out.append((stage_key(ctx.entity, "g", i), tuple(updates[i])))
        return out
