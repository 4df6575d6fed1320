"""The staged resolution in real Bytewax flows (one worker, and one process with 2-3 workers)
against the single resolve operator on the same batches: same partition, same golden values.

Customers come from the demo world (three systems per person, each with its own way of writing a
customer down, as in ``test_operator``), plus updates that break and re-make matches and deletes.
"""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from cdc.demo.world import make_person
from core.golden import GoldBatch, RecordChange
from flows.resolve.operator import resolve
from flows.resolve.staged_operator import StageLogic, resolve_staged
from tests.unit.flows.resolve.test_operator import change, customer

CONFIG = Path("config")


def scenario() -> list[list[RecordChange]]:
    people = [make_person(i, 3, org_count=10) for i in range(1, 9)]
    systems = ("crm", "erp", "shop")
    batches: list[list[RecordChange]] = []
    for s_i, system in enumerate(systems):
        batches.append(
            [
                change("customer", system, i, customer(p, system), 1_000 * (s_i + 1))
                for i, p in enumerate(people)
            ]
        )
    # Person 0's shop record becomes a stranger (splits off), person 1's crm record is deleted,
    # then the stranger is corrected again (merges back).
    stranger = {
        **customer(people[0], "shop"),
        "full_name": "Zed Quill",
        "first_name": "Zed",
        "last_name": "Quill",
        "email": None,
        "street": None,
        "postal_code": None,
        "city": None,
        "birth_date": None,
    }
    batches.append(
        [change("customer", "shop", 0, stranger, 5_000), change("customer", "crm", 1, None, 5_000)]
    )
    batches.append([change("customer", "shop", 0, customer(people[0], "shop"), 6_000)])
    batches.append([change("order", "crm", 1, {"status": "open"}, 1)])
    return batches


def final_state(out: list[GoldBatch]) -> tuple[frozenset[frozenset[str]], set[tuple[Any, ...]]]:
    golden_of: dict[str, str | None] = {}
    latest: dict[str, Any] = {}
    for b in out:
        for x in b.crosswalk:
            golden_of[x.record_id] = x.golden_id
        for ch in b.changes:
            if ch.golden_id not in latest or ch.version > latest[ch.golden_id].version:
                latest[ch.golden_id] = ch
    clusters: dict[str, set[str]] = {}
    for rid, g in golden_of.items():
        if g is not None:
            clusters.setdefault(g, set()).add(rid)
    live = [c for c in latest.values() if c.kind == "UPSERT"]
    assert {c.golden_id for c in live} == set(clusters)
    for c in live:
        assert set(c.members) == clusters[c.golden_id]
    values = {
        (tuple(sorted(c.members)), tuple(sorted((k, str(v)) for k, v in c.values.items()))) for c in live
    }
    return frozenset(frozenset(m) for m in clusters.values()), values


def flow_of(
    batches: list[list[RecordChange]], staged: bool, key_groups: int = 3
) -> tuple[Dataflow, list[GoldBatch]]:
    flow = Dataflow("staged_test")
    up = op.input("in", flow, TestingSource(batches))
    out: list[GoldBatch] = []
    if staged:
        golden = resolve_staged("resolve", up, config_dir=CONFIG, key_groups=key_groups, clock=lambda: 42)
    else:
        golden = resolve("resolve", up, config_dir=CONFIG, clock=lambda: 42)
    op.output("out", golden, TestingSink(out))
    return flow, out


def reference() -> tuple[frozenset[frozenset[str]], set[tuple[Any, ...]]]:
    flow, out = flow_of(scenario(), staged=False)
    run_main(flow, epoch_interval=timedelta(0))  # type: ignore[no-untyped-call]
    return final_state(out)


def test_one_worker_gives_the_single_operators_partition_and_values() -> None:
    expected = reference()
    assert len(expected[0]) == 8  # person 1 lost its crm record, nobody else split
    flow, out = flow_of(scenario(), staged=True)
    run_main(flow, epoch_interval=timedelta(0))  # type: ignore[no-untyped-call]
    assert final_state(out) == expected
    kinds = [e.kind for b in out for e in b.lineage]
    assert kinds.count("SPLIT") == 1 and kinds.count("MERGED") == 1


@pytest.mark.parametrize("workers", [2, 3])
def test_several_workers_give_the_same_partition(workers: int) -> None:
    expected = reference()
    flow, out = flow_of(scenario(), staged=True, key_groups=5)
    cluster_main(flow, [], 0, worker_count_per_proc=workers, epoch_interval=timedelta(0))  # type: ignore[no-untyped-call]
    assert final_state(out) == expected


def test_resume_from_recovery_with_another_worker_count(tmp_path: Path) -> None:
    """Run half the batches with recovery and 2 workers, resume the rest with 3: same result."""
    expected = reference()
    init_db_dir(tmp_path, 3)
    recovery = RecoveryConfig(str(tmp_path))
    batches = scenario()
    half = 3
    out: list[GoldBatch] = []
    flow, first = flow_of(batches[:half], staged=True, key_groups=4)
    cluster_main(flow, [], 0, worker_count_per_proc=2, epoch_interval=timedelta(0), recovery_config=recovery)  # type: ignore[no-untyped-call]
    out.extend(first)
    # The resumed flow's source continues after the batches already read (TestingSource resumes by index).
    flow, second = flow_of(batches, staged=True, key_groups=4)
    cluster_main(flow, [], 0, worker_count_per_proc=3, epoch_interval=timedelta(0), recovery_config=recovery)  # type: ignore[no-untyped-call]
    out.extend(second)
    assert final_state(out) == expected


def test_stage_state_pickles_without_its_compiled_config() -> None:
    flow, out = flow_of(scenario()[:1], staged=True)
    run_main(flow, epoch_interval=timedelta(0))  # type: ignore[no-untyped-call]
    assert out
    from flows.resolve.staged_operator import _Env
    from flows.resolve.stages.simulate import build_stage

    env = _Env(CONFIG, 2, lambda: 0, 30.0)
    ctx = env.context("customer")
    assert ctx is not None
    stage = build_stage(ctx, "customer/c")
    logic = StageLogic(env, stage)
    restored = pickle.loads(pickle.dumps(logic.snapshot()))
    assert restored.ctx is None and restored.key == "customer/c"


@pytest.mark.parametrize("workers", [1, 2])
def test_the_compiled_config_is_built_once_per_worker_thread(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytewax enters Python afresh for every call from its worker threads (a ``threading.local``
    starts empty each time): the context must still be compiled once per worker, not per batch."""
    from flows.resolve.stages.context import StageContext

    built: list[str] = []
    real = StageContext.from_config_dir.__func__  # type: ignore[attr-defined]

    def counting(cls: type[StageContext], config_dir: Path, entity: str, shards: int) -> StageContext:
        built.append(entity)
        return real(cls, config_dir, entity, shards)  # type: ignore[no-any-return]

    monkeypatch.setattr(StageContext, "from_config_dir", classmethod(counting))
    batches = scenario()
    flow, out = flow_of(batches, staged=True)
    cluster_main(flow, [], 0, worker_count_per_proc=workers, epoch_interval=timedelta(0))  # type: ignore[no-untyped-call]
    assert out
    assert 1 <= len(built) <= workers, built
