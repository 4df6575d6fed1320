"""The staged resolution against the in-order resolver, under any interleaving of its messages.

Random record sets (the scenarios of ``test_resolve_property``: histories of updates, deletes and
re-creations, steward overrides, a small block cap so blocks switch off and on) are fed as input
batches to the stage functions, with 1-3 key groups per stage and the inter-stage messages delivered
in random interleavings (in order per sender and receiver, as Bytewax delivers them; in any order
across senders).

* one batch at a time: after every batch the partition, the golden ids and the MERGED/SPLIT
  lineage equal those of :class:`~flows.resolve.golden.GoldenBook` applying the same batch in one
  step, so a batch whose in-order application has no lineage has none staged (no spurious SPLIT
  followed by a MERGED);
* all batches in flight at once, from up to three upstream workers: the final partition is the
  from-scratch reference on the final records, and the golden records hold the values the
  in-order book gives the same clusters.

In both, every stage ends idle: nothing held, no golden update waiting for values.
"""

from __future__ import annotations

import os
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.golden import Cause, GoldBatch, RecordChange
from flows.resolve.golden import GoldenBook
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.golden import GoldenStage
from flows.resolve.stages.simulate import StagedResolver
from tests.unit.flows.resolve.test_golden import FIELDS, SURVIVORSHIP
from tests.unit.flows.resolve.test_resolve_property import config, interleave, reference_partition, scenarios

EXAMPLES = int(os.environ.get("STAGED_EXAMPLES", "60"))


def change(rid: str, values: dict[str, Any] | None, ts: int) -> RecordChange:
    system = ("crm", "erp", "shop")[int(rid[1:]) % 3]
    return RecordChange("person", rid, system, values, ts, Cause(rid, ts, ts, "t", 0, ts))


def batches_of(changes: list[tuple[str, Any]], rng: random.Random) -> list[list[RecordChange]]:
    out: list[list[RecordChange]] = []
    i = 0
    ts = 1_000
    while i < len(changes):
        size = rng.randint(1, 5)
        batch = []
        for rid, rec in changes[i : i + size]:
            ts += 1
            batch.append(change(rid, rec, ts))
        out.append(batch)
        i += size
    return out


def lineage(batches: list[GoldBatch]) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted((e.kind, e.golden_id, tuple(sorted(e.others))) for b in batches for e in b.lineage)


def golden_rows(sim: StagedResolver) -> dict[frozenset[str], tuple[Any, ...]]:
    members = sim.cluster.golden_members
    out = {}
    for st_ in sim.stages.values():
        if isinstance(st_, GoldenStage):
            for gid in st_.gold:
                out[frozenset(members[gid])] = st_.row(gid)
    return out


def assert_idle(sim: StagedResolver) -> None:
    assert sim.cluster.idle(), (sim.cluster.protocol.balance, sim.cluster.changed, sim.cluster.seeds)
    assert not sim.cluster.protocol.holds
    for st_ in sim.stages.values():
        if isinstance(st_, GoldenStage):
            assert not st_.pending, f"{st_.key} waits: {st_.pending}"


@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenarios(), st.randoms(use_true_random=False), st.integers(1, 3))
def test_batch_by_batch_equals_the_in_order_book(scenario: Any, rng: random.Random, shards: int) -> None:
    final, histories, overrides, max_block = scenario
    cfg = config(max_block, overrides)
    batches = batches_of(interleave(histories, rng), rng)
    book = GoldenBook(cfg, SURVIVORSHIP, fields=FIELDS)
    sim = StagedResolver(StageContext(cfg, SURVIVORSHIP, shards, fields=FIELDS), rng=rng)
    source = {rid: rng.randrange(3) for rid in final} | {h[0][0]: rng.randrange(3) for h in histories}
    for batch in batches:
        expected = book.apply(batch, now_us=0)
        # one input batch may come from several upstream workers only if split by record: keep it one
        sim.submit(batch, source=source[batch[0].record_id])
        got = sim.run()
        assert sim.cluster.partition() == book.resolver.partition()
        assert sim.cluster.golden_of == book.resolver.golden_of
        assert lineage(got) == lineage([expected])
        assert_idle(sim)
    assert sim.cluster.partition() == reference_partition(cfg, final)
    assert golden_rows(sim) == {
        frozenset(book.resolver.members(g)): tuple(book.golden(g).values.values())  # type: ignore[union-attr]
        for g in book.golden_ids()
    }


@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenarios(), st.randoms(use_true_random=False), st.integers(1, 3))
def test_all_batches_in_flight_at_once_reach_the_same_partition(
    scenario: Any, rng: random.Random, shards: int
) -> None:
    final, histories, overrides, max_block = scenario
    cfg = config(max_block, overrides)
    # Each record's changes come from one upstream worker (its Kafka partition), in order.
    source = {h[0][0]: rng.randrange(3) for h in histories}
    per_source: dict[int, list[tuple[str, Any]]] = {}
    for rid, rec in interleave(histories, rng):
        per_source.setdefault(source[rid], []).append((rid, rec))
    sim = StagedResolver(StageContext(cfg, SURVIVORSHIP, shards, fields=FIELDS), rng=rng)
    book = GoldenBook(cfg, SURVIVORSHIP, fields=FIELDS)
    for s, changes in sorted(per_source.items()):
        for batch in batches_of(changes, rng):
            sim.submit(batch, source=s)
            book.apply(batch, now_us=0)
        if rng.random() < 0.3:
            sim.run()
    sim.run()
    assert_idle(sim)
    assert sim.cluster.partition() == reference_partition(cfg, final)
    assert set(sim.cluster.golden_of) == set(final)
    assert golden_rows(sim) == {
        frozenset(book.resolver.members(g)): tuple(book.golden(g).values.values())  # type: ignore[union-attr]
        for g in book.golden_ids()
    }
