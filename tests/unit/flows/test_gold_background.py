"""The gold step of the ingest flow: batches combined on a writer thread, durable at each snapshot.

The batches come from the real resolver (GoldenBook), so they carry what a live flow sends: merges,
splits, deletes and edits with their links, crosswalk and lineage.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from core.golden import GoldBatch, combine_batches
from flows.engine.background import BackgroundWriter, _WriteBehind, write_in_background
from flows.ingest import GoldApply
from sinks.delta.gold import read_crosswalk, read_golden, read_history, read_lineage, read_links
from tests.unit.flows.resolve.test_golden import (
    A2,
    ANNA,
    ANNA_ELSEWHERE,
    ANNA_ERP,
    ANNA_SHOP,
    PIOTR,
    A,
    B,
    book,
    change,
)

P = "shop:public.people:9"


def resolver_batches() -> list[GoldBatch]:
    """Creates, a merge, a split, an edit and a delete of an emptied golden id, in that order."""
    b = book()
    steps = [
        [change(A, ANNA)],
        [change(B, ANNA_ELSEWHERE), change(P, PIOTR)],
        [change(B, ANNA_SHOP, ts=3_000), change(A2, ANNA_ERP)],  # B joins A: MERGED
        [change(B, ANNA_ELSEWHERE, ts=5_000)],  # B leaves again: SPLIT
        [change(A2, {**ANNA_ERP, "email": "anna@new.org"}, ts=6_000)],
        [change(P, None, ts=7_000)],  # Piotr's only record deleted: his id is retired
    ]
    return [b.apply(s, now_us=i + 1) for i, s in enumerate(steps)]


def tables(root: Path) -> dict[str, list[str]]:
    """Every gold table's rows, sorted, as comparable tuples."""
    frames = {
        "golden": read_golden(root, "person"),
        "history": read_history(root, "person"),
        "crosswalk": read_crosswalk(root, "person"),
        "links": read_links(root, "person"),
        "lineage": read_lineage(root, "person"),
    }
    # nested columns (provenance, comparisons) compare through their repr
    return {name: sorted(repr(row) for row in frame.to_dicts()) for name, frame in frames.items()}


def test_combined_batches_write_the_same_gold_tables_as_one_by_one(tmp_path: Path) -> None:
    batches = resolver_batches()
    assert any(b.lineage for b in batches) and any(c.kind == "RETIRED" for b in batches for c in b.changes)
    one_by_one = GoldApply(tmp_path / "a", "person")
    for b in batches:
        one_by_one([b])
    expected = tables(tmp_path / "a")
    assert expected["lineage"] and expected["links"]
    for groups, name in (
        ([batches], "b"),
        ([batches[:3], batches[3:]], "c"),
        ([batches[:1], batches[1:5], batches[5:]], "d"),
    ):
        apply = GoldApply(tmp_path / name, "person")
        for g in groups:
            apply(g)
        assert tables(tmp_path / name) == expected, name


def test_combining_keeps_the_last_link_set_of_each_golden_id() -> None:
    batches = resolver_batches()
    combined = combine_batches(batches)
    merged_at, split_at = batches[2], batches[3]
    survivor = next(c.golden_id for c in merged_at.changes if c.merged_from)
    # after the split only A-A2 is linked in the survivor, and never the merge's links to B
    pairs = {(lk.a, lk.b) for lk in combined.links if lk.golden_id == survivor}
    assert pairs == {(lk.a, lk.b) for lk in split_at.links if lk.golden_id == survivor} == {(A, A2)}
    assert len(combined.changes) == sum(len(b.changes) for b in batches)
    assert combined.lineage == tuple(e for b in batches for e in b.lineage)
    with pytest.raises(ValueError, match="at least one"):
        combine_batches([])
    with pytest.raises(ValueError, match="cannot combine"):
        combine_batches([GoldBatch("person"), GoldBatch("customer")])


def test_writer_applies_in_order_and_combines_what_queued_up() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def apply(items: list[int]) -> None:
        gate.wait(5)
        seen.append(items)

    w: BackgroundWriter[int] = BackgroundWriter(apply, name="t")
    for i in range(5):
        w.submit(i)
    gate.set()
    w.flush()
    assert [i for items in seen for i in items] == [0, 1, 2, 3, 4]
    assert len(seen) < 5  # the first write held the thread: the rest went in together


def test_min_interval_spaces_writes_and_flush_does_not_wait_for_it() -> None:
    starts: list[tuple[float, list[int]]] = []

    def apply(items: list[int]) -> None:
        starts.append((time.monotonic(), items))

    w: BackgroundWriter[int] = BackgroundWriter(apply, name="t", min_interval_s=1.0)
    w.submit(0)
    deadline = time.monotonic() + 5
    while not starts and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(1, 4):  # arrive while the interval runs: written together, not before it ends
        w.submit(i)
        time.sleep(0.05)
    while len(starts) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [items for _t, items in starts] == [[0], [1, 2, 3]]
    assert starts[1][0] - starts[0][0] >= 0.95
    # a flush (end of input) writes what waits now instead of after the interval
    w.submit(4)
    t0 = time.monotonic()
    w.flush()
    assert starts[-1][1] == [4] and time.monotonic() - t0 < 0.8


def test_a_failed_write_stops_the_writer_and_surfaces_at_flush_and_submit() -> None:
    calls: list[list[int]] = []

    def apply(items: list[int]) -> None:
        calls.append(items)
        raise OSError("disk full")

    w: BackgroundWriter[int] = BackgroundWriter(apply, name="t")
    w.submit(1)
    with pytest.raises(RuntimeError, match="disk full"):
        w.flush()
    with pytest.raises(RuntimeError, match="disk full"):
        w.submit(2)
    assert calls == [[1]]  # nothing after the failure is applied (or skipped silently)


def test_flush_waits_for_the_write_in_progress() -> None:
    done: list[int] = []

    def apply(items: list[int]) -> None:
        time.sleep(0.2)
        done.extend(items)

    w: BackgroundWriter[int] = BackgroundWriter(apply, name="t")
    w.submit(7)
    w.flush()
    assert done == [7]


def test_dataflow_step_writes_every_item_by_the_end_of_each_epoch() -> None:
    written: dict[str, list[int]] = {}
    lock = threading.Lock()

    def make(first: tuple[str, int]) -> BackgroundWriter[tuple[str, int]]:
        def apply(items: list[tuple[str, int]]) -> None:
            time.sleep(0.01)
            with lock:
                for k, v in items:
                    written.setdefault(k, []).append(v)

        return BackgroundWriter(apply, name=first[0])

    items = [("a", i) if i % 3 else ("b", i) for i in range(60)]
    flow = Dataflow("bg")
    up = op.input("in", flow, TestingSource(items, batch_size=7))
    out = write_in_background("gold", up, lambda x: x[0], make)
    captured: list[object] = []
    op.output("out", out, TestingSink(captured))
    run_main(flow, epoch_interval=timedelta(milliseconds=1))
    assert written["a"] == [v for k, v in items if k == "a"]
    assert written["b"] == [v for k, v in items if k == "b"]
    assert captured == []


def test_snapshot_is_what_is_not_written_yet_and_a_resume_writes_it_again() -> None:
    done: list[int] = []
    gate = threading.Event()

    def make(_first: int) -> BackgroundWriter[int]:
        def apply(items: list[int]) -> None:
            gate.wait(5)
            done.extend(items)

        return BackgroundWriter(apply, name="t")

    logic = _WriteBehind(make, None)
    out, discard = logic.on_batch([1, 2])
    assert list(out) == [] and discard is False  # the worker did not wait for the write
    logic.on_batch([3])
    snap = logic.snapshot()
    assert snap == [1, 2, 3] and done == []
    gate.set()
    logic.on_eof()
    assert done == [1, 2, 3] and logic.snapshot() == [] and snap == [1, 2, 3]

    # a crash after that snapshot: the step resumes from it and writes those items again
    again = _WriteBehind(make, snap)
    again.on_batch([4])
    again.on_eof()
    assert done == [1, 2, 3, 1, 2, 3, 4]
