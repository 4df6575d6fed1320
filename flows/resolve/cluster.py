"""Clustering one connected component of the match graph: a pure function of its edges.

The resolver keeps a graph whose nodes are records and whose edges are scored pairs (match weight
at least ``edge_floor``). Edges at or above ``threshold`` are *link* edges; steward must-links count
as link edges too. A *component* is a connected component of the link edges. Each component is
clustered on its own by :func:`cluster_component`:

1. must-link pairs are joined first (sorted by id), unless a cannot-link forbids it;
2. link edges are visited strongest first, ties broken by the two record ids, so the visiting order
   is a total order defined by the edge set alone;
3. an edge joins its two clusters A and B when no cannot-link crosses them and the mean match weight
   over all |A|x|B| cross pairs, a pair without a stored edge counting ``missing_weight``, is at
   least ``min_cluster_support`` (average linkage). A long chain of pairwise links between records
   that mostly disagree fails this test, which is what stops single-link chaining.

Nothing here looks at arrival order or at earlier results, so the partition is a function of the
current records (through their edges) and overrides only: shuffle the input, get the same entities.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

Adjacency = Mapping[str, Mapping[str, tuple[float, bytes]]]
"""record id -> neighbour id -> (match weight, comparison levels) of the pair."""


@dataclass(frozen=True, slots=True)
class MergeStep:
    """One join made while clustering a component: why two groups of records became one."""

    a: str
    b: str
    weight: float
    """Match weight of the edge visited (``inf`` for a must-link)."""
    support: float
    """Mean match weight over all cross pairs of the two groups (``inf`` for a must-link)."""
    left: tuple[str, ...]
    right: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClusterParams:
    """The clustering thresholds, in match-weight units."""

    link_weight: float
    min_support: float | None
    missing_weight: float


def cluster_component(
    nodes: Collection[str],
    adj: Adjacency,
    params: ClusterParams,
    *,
    must: Mapping[str, Collection[str]] | None = None,
    cannot: Mapping[str, Collection[str]] | None = None,
    trace: list[MergeStep] | None = None,
) -> list[tuple[str, ...]]:
    """Partition ``nodes`` into clusters (each a sorted tuple; the list sorted by first member)."""
    if len(nodes) == 2 and trace is None:
        pair = _pair(nodes, adj, params, must or {}, cannot or {})
        if pair is not None:
            return pair
    node_set = set(nodes)
    parent = {n: n for n in node_set}
    members: dict[str, list[str]] = {n: [n] for n in node_set}
    must = must or {}
    cannot = cannot or {}

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def forbidden(ra: str, rb: str) -> bool:
        small, other = (ra, rb) if len(members[ra]) <= len(members[rb]) else (rb, ra)
        for x in members[small]:
            for y in cannot.get(x, ()):
                if y in node_set and find(y) == other:
                    return True
        return False

    def join(ra: str, rb: str) -> None:
        if len(members[ra]) < len(members[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        members[ra].extend(members.pop(rb))

    forced = sorted({(min(x, y), max(x, y)) for x in node_set for y in must.get(x, ()) if y in node_set})
    for a, b in forced:
        ra, rb = find(a), find(b)
        if ra != rb and not (cannot and forbidden(ra, rb)):
            if trace is not None:
                inf = float("inf")
                trace.append(MergeStep(a, b, inf, inf, _sorted(members[ra]), _sorted(members[rb])))
            join(ra, rb)

    edges = sorted(
        (-w, a, b)
        for a in node_set
        for b, (w, _) in adj.get(a, {}).items()
        if a < b and b in node_set and w >= params.link_weight
    )
    for neg_w, a, b in edges:
        ra, rb = find(a), find(b)
        if ra == rb or (cannot and forbidden(ra, rb)):
            continue
        support = float("inf")
        if params.min_support is not None:
            support = _support(members[ra], members[rb], adj, params.missing_weight)
            if support < params.min_support:
                continue
        if trace is not None:
            trace.append(MergeStep(a, b, -neg_w, support, _sorted(members[ra]), _sorted(members[rb])))
        join(ra, rb)
    clusters = [_sorted(m) for m in members.values()]
    clusters.sort()
    return clusters


def _pair(
    nodes: Collection[str],
    adj: Adjacency,
    params: ClusterParams,
    must: Mapping[str, Collection[str]],
    cannot: Mapping[str, Collection[str]],
) -> list[tuple[str, ...]] | None:
    """The two-record case without the general machinery (same result); None when unsure."""
    a, b = sorted(nodes)
    if b in cannot.get(a, ()):
        return [(a,), (b,)]
    if b in must.get(a, ()):
        return [(a, b)]
    edge = adj.get(a, {}).get(b)
    if edge is None or edge[0] < params.link_weight:
        return None
    if params.min_support is not None and edge[0] < params.min_support:
        return [(a,), (b,)]
    return [(a, b)]


def _sorted(xs: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(xs))


def _support(
    ma: Sequence[str],
    mb: Sequence[str],
    adj: Adjacency,
    missing: float,
) -> float:
    """Mean match weight over the cross pairs of two clusters (missing edges count ``missing``)."""
    if len(ma) > len(mb):
        ma, mb = mb, ma
    other = set(mb)
    weights = [w for x in ma for y, (w, _) in adj.get(x, {}).items() if y in other]
    n = len(ma) * len(mb)
    # fsum is exactly rounded, so the result does not depend on the order edges were stored in.
    return (math.fsum(weights) + missing * (n - len(weights))) / n
