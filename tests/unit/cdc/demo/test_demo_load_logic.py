"""Load-generator logic without a database: op mix, key pools, pacing."""

import random
from collections import Counter
from collections.abc import Sequence

import pytest

from cdc.demo.loadgen import LoadProgress, OpMix, _pace, _Runner
from cdc.demo.systems.base import KeyPool, Stmt, SystemLoad


def test_op_mix_parse_and_validation() -> None:
    assert OpMix.parse("60/35/5").weights() == (60, 35, 5)
    assert OpMix.parse("1,0,0").weights() == (1, 0, 0)
    with pytest.raises(ValueError, match="insert/update/delete"):
        OpMix.parse("60/40")
    with pytest.raises(ValueError, match="non-negative"):
        OpMix(-1, 1, 1)


def test_key_pool_pick_remove_rename_cascade() -> None:
    pool: KeyPool[int] = KeyPool()
    for k in range(10):
        pool.add(k, parent="a" if k < 5 else "b")
    pool.remove(3)
    assert 3 not in pool and len(pool) == 9
    pool.rename(4, 40)
    assert 40 in pool and pool.parent_of(40) == "a"
    pool.remove_children("a")
    assert len(pool) == 5
    assert {pool.pick(random.Random(i)) for i in range(50)} <= set(range(5, 10))
    pool.reparent_children("b", "c")
    assert pool.children_of("c") == frozenset(range(5, 10))
    assert KeyPool[int]().pick(random.Random(1)) is None


class FakeLoad(SystemLoad):
    """Inserts come in bundles of three statements (an order with two lines), like the real ones."""

    system = "fake"

    def __init__(self) -> None:
        pass

    def prepare(self) -> None:
        pass

    def insert(self, rng: random.Random) -> Sequence[Stmt]:
        return [Stmt("orders", "insert", "", ())] * 3

    def update(self, rng: random.Random) -> Sequence[Stmt]:
        return [Stmt("orders", "update", "", ())]

    def delete(self, rng: random.Random) -> Sequence[Stmt]:
        return [Stmt("orders", "delete", "", ())]


def test_statement_mix_follows_the_requested_mix_despite_bundles() -> None:
    runner = _Runner({"a": FakeLoad(), "b": FakeLoad()}, OpMix(60, 35, 5), random.Random(1))
    batch = runner.generate(10_000)
    ops = Counter(s.op for stmts in batch.values() for s in stmts)
    total = sum(ops.values())
    assert total >= 10_000
    assert ops["insert"] / total == pytest.approx(0.60, abs=0.01)
    assert ops["update"] / total == pytest.approx(0.35, abs=0.01)
    assert ops["delete"] / total == pytest.approx(0.05, abs=0.01)
    assert batch["a"] and batch["b"]


class CountingRunner:
    """Stands in for _Runner: records batch sizes and when they were sent."""

    def __init__(self) -> None:
        self.errors = 0
        self.batches: list[int] = []

    def generate(self, n: int) -> dict[str, list[Stmt]]:
        return {"x": [Stmt("t", "insert", "", ())] * n}

    def send(self, batch: dict[str, list[Stmt]]) -> int:
        n = sum(len(v) for v in batch.values())
        self.batches.append(n)
        return n


def test_pacing_hits_the_target_without_drift_or_overrun() -> None:
    runner = CountingRunner()
    reports: list[LoadProgress] = []
    elapsed = _pace(runner, rate=500, duration=1.0, tick_s=0.02, on_progress=reports.append)  # type: ignore[arg-type]
    assert sum(runner.batches) == 500
    assert 1.0 <= elapsed < 1.15
    assert max(runner.batches) <= 40  # steady small batches, no burst at the end
    assert reports[-1].done == 500 and reports[-1].target == 500


def test_unthrottled_runs_for_the_duration() -> None:
    runner = CountingRunner()
    elapsed = _pace(runner, rate=0, duration=0.3, tick_s=0.01, on_progress=None)  # type: ignore[arg-type]
    assert 0.3 <= elapsed < 0.45
    assert sum(runner.batches) > 1000
