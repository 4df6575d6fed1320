"""Order independence: any arrival order of the same changes gives the same entities.

Random record sets, each record with a history of earlier versions (updates) or ending in a delete,
are streamed in random interleavings (each record's own history stays in order, as a source
guarantees per key), one change at a time or in batches. The final partition must equal a
from-scratch computation on the final records only: batch blocking, scoring and clustering of each
connected component. A small block size cap exercises blocks switching off and on.
"""

import random
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.resolve.blocking import BlockKeyer, candidate_pairs
from flows.resolve.cluster import ClusterParams, cluster_component
from flows.resolve.compare import Scorer, weight_of
from flows.resolve.config import MatchingConfig, Overrides
from flows.resolve.features import FeatureExtractor, FeatureStore
from flows.resolve.resolver import Resolver
from tests.unit.flows.resolve.resolve_helpers import person_config

_names = st.sampled_from(
    ["anna weber", "anna webber", "ana weber", "anna web", "jo lee", "joe lee", "jo li", None]
)
_cities = st.sampled_from(["berlin", "bern", None])
_dates = st.sampled_from(["1990-01-02", "1990-01-03", "1991-01-02", None])
_emails = st.sampled_from(["a@x.org", "b@x.org", "c@x.org", None])
_records = st.builds(
    lambda n, c, d, e: {"name": n, "city": c, "dob": d, "email": e}, _names, _cities, _dates, _emails
)


def config(max_block: int, overrides: Overrides) -> MatchingConfig:
    base = person_config()
    blocking = base.blocking.model_copy(update={"max_block_size": max_block})
    return base.model_copy(update={"blocking": blocking, "overrides": overrides})


def reference_partition(cfg: MatchingConfig, records: dict[str, dict[str, Any]]) -> frozenset[frozenset[str]]:
    """The definition, computed from scratch on the final records."""
    ids = sorted(records)
    ext, keyer, scorer = FeatureExtractor(cfg), BlockKeyer(cfg), Scorer(cfg)
    feats = [ext(records[i]) for i in ids]
    store = FeatureStore(len(cfg.features))
    for i, f in zip(ids, feats, strict=True):
        store.put(i, f)
    pairs = candidate_pairs([keyer(f) for f in feats], cfg.blocking.max_block_size)
    adj: dict[str, dict[str, tuple[float, bytes]]] = {}
    if len(pairs):
        ra = np.array([store.row(ids[a]) for a in pairs[:, 0]])
        rb = np.array([store.row(ids[b]) for b in pairs[:, 1]])
        _, w = scorer.score(store, ra, rb)
        floor = weight_of(cfg.clustering.edge_floor)
        for (a, b), x in zip(pairs.tolist(), w.tolist(), strict=True):
            if x >= floor:
                adj.setdefault(ids[a], {})[ids[b]] = (x, b"")
                adj.setdefault(ids[b], {})[ids[a]] = (x, b"")
    cl = cfg.clustering
    params = ClusterParams(weight_of(cl.threshold), cl.min_cluster_support, cl.missing_weight)
    must: dict[str, set[str]] = {}
    cannot: dict[str, set[str]] = {}
    for table, pairs_ in ((must, cfg.overrides.must_link), (cannot, cfg.overrides.cannot_link)):
        for a, b in pairs_:
            table.setdefault(a, set()).add(b)
            table.setdefault(b, set()).add(a)
    # connected components of link edges and must-links
    seen: set[str] = set()
    out: list[frozenset[str]] = []
    for start in ids:
        if start in seen:
            continue
        comp, stack = set(), [start]
        while stack:
            x = stack.pop()
            if x in comp:
                continue
            comp.add(x)
            stack += [y for y, (w, _) in adj.get(x, {}).items() if w >= params.link_weight]
            stack += [y for y in must.get(x, ()) if y in records]
        seen |= comp
        out += [frozenset(c) for c in cluster_component(comp, adj, params, must=must, cannot=cannot)]
    return frozenset(out)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[tuple[str, Any]]], Overrides, int]:
    n = draw(st.integers(2, 14))
    ids = [f"r{i:02d}" for i in range(n)]
    histories: dict[str, list[tuple[str, Any]]] = {}
    final: dict[str, Any] = {}
    for rid in ids:
        versions = draw(st.lists(_records, min_size=1, max_size=3))
        deleted = draw(st.booleans()) and draw(st.booleans())
        steps: list[tuple[str, Any]] = [(rid, v) for v in versions]
        if deleted:
            steps.append((rid, None))
            if draw(st.booleans()):
                steps.append((rid, versions[0]))  # re-created after the delete
        histories[rid] = steps
        if steps[-1][1] is not None:
            final[rid] = steps[-1][1]
    pick = st.sampled_from(ids)
    must = draw(st.lists(st.tuples(pick, pick), max_size=2))
    cannot = draw(st.lists(st.tuples(pick, pick), max_size=2))
    overrides = Overrides(
        must_link=tuple((a, b) for a, b in must if a != b),
        cannot_link=tuple((a, b) for a, b in cannot if a != b and (a, b) not in must and (b, a) not in must),
    )
    max_block = draw(st.sampled_from([2, 3, 50]))
    return final, list(histories.values()), overrides, max_block


def interleave(histories: list[list[tuple[str, Any]]], rng: random.Random) -> list[tuple[str, Any]]:
    queues = [list(h) for h in histories]
    out = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        out.append(q.pop(0))
    return out


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_partition(scenario: Any, rng: random.Random) -> None:
    final, histories, overrides, max_block = scenario
    cfg = config(max_block, overrides)
    expected = reference_partition(cfg, final)
    for attempt in range(3):
        changes = interleave(histories, rng)
        resolver = Resolver(cfg)
        if attempt == 2:
            size = rng.randint(2, 5)
            for i in range(0, len(changes), size):
                resolver.apply(changes[i : i + size])
        else:
            for rid, rec in changes:
                if rec is None:
                    resolver.delete(rid)
                else:
                    resolver.upsert(rid, rec)
        assert resolver.partition() == expected
        assert set(resolver.golden_of) == set(final)
        assert sorted(r for m in resolver.clusters().values() for r in m) == sorted(final)
