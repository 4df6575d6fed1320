"""Resolver.oversized_blocks: the count of block key values past the cap, kept incrementally."""

from __future__ import annotations

import pickle

from flows.resolve.resolver import Resolver
from tests.unit.flows.resolve.resolve_helpers import person, person_config


def small_blocks() -> Resolver:
    cfg = person_config()
    return Resolver(
        cfg.model_copy(update={"blocking": cfg.blocking.model_copy(update={"max_block_size": 2})})
    )


def recount(r: Resolver) -> int:
    return sum(len(b) > r.config.blocking.max_block_size for b in r.blocks.values())


def test_counts_blocks_switching_off_and_on() -> None:
    r = small_blocks()
    r.apply([(f"r{i}", person(f"name {i}", None, "1990-01-02")) for i in range(2)])
    assert r.oversized_blocks == 0
    r.upsert("r2", person("name 2", None, "1990-01-02"))  # the dob block holds 3 > 2
    assert r.oversized_blocks == recount(r) == 1 and r.stats().oversized_blocks == 1
    r.apply(
        [("r3", person("x", "berlin", "1990-01-02", "a@x.org")), ("r4", person("y", "berlin", "1990-01-02"))]
    )
    assert r.oversized_blocks == recount(r) == 1
    r.apply([("r0", None), ("r1", None), ("r3", None)])
    assert r.oversized_blocks == recount(r) == 0


def test_state_pickled_without_the_counter_recounts() -> None:
    r = small_blocks()
    r.apply([(f"r{i}", person(f"name {i}", None, "1990-01-02")) for i in range(3)])
    state = r.__getstate__()
    del state["oversized_blocks"]
    old = Resolver.__new__(Resolver)
    old.__setstate__(state)
    assert old.oversized_blocks == 1
    assert pickle.loads(pickle.dumps(r)).oversized_blocks == 1
