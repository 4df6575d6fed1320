"""map_rows: small batches take the per-record path, larger ones the engine, with the same results."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import flows.canonical.dispatch as dispatch
from flows.canonical import SMALL_BATCH_ROWS, MappedBatch, Mapping, compile_mappings, map_batch, map_rows
from flows.canonical.sample import Change, events_frame
from sinks.delta.silver import split_invalid
from tests.unit.flows.canonical.conftest import CONFIG
from tests.unit.flows.canonical.test_demo_rows import seed

MAPPINGS = compile_mappings(CONFIG)


def _events(ident: tuple[str, str, str], n: int) -> tuple[Mapping, pl.DataFrame]:
    mapping = MAPPINGS.for_table(*ident)
    assert mapping is not None
    rows = seed(ident[0]).rows[ident[2]]
    # Every op, so deletes, updates and snapshot reads go through both paths; small tables repeat
    # their rows (later changes of the same keys).
    ops = ["r", "c", "u", "d"]
    return mapping, events_frame(mapping, [Change(ops[i % 4], rows[i % len(rows)]) for i in range(n)])


def _same(a: MappedBatch, b: MappedBatch) -> None:
    assert_frame_equal(a.records, b.records)
    assert_frame_equal(a.rejects, b.rejects)
    assert a.drift == b.drift and a.entity == b.entity


@pytest.mark.parametrize("ident", [m.ident for m in MAPPINGS], ids=lambda i: ".".join(i))
@pytest.mark.parametrize("n", [1, SMALL_BATCH_ROWS, SMALL_BATCH_ROWS + 1])
def test_map_rows_equals_the_engine_on_either_side_of_the_threshold(
    ident: tuple[str, str, str], n: int
) -> None:
    mapping, events = _events(ident, n)
    _same(map_rows(mapping, events), map_batch(mapping, events))


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    engine, reference = dispatch.map_batch, dispatch.map_batch_reference

    def spy_engine(m: Mapping, e: pl.DataFrame) -> MappedBatch:
        calls.append("engine")
        return engine(m, e)

    def spy_reference(m: Mapping, e: pl.DataFrame, **kw: Any) -> MappedBatch:
        calls.append("reference")
        return reference(m, e, **kw)

    monkeypatch.setattr(dispatch, "map_batch", spy_engine)
    monkeypatch.setattr(dispatch, "map_batch_reference", spy_reference)
    return calls


def test_small_batches_skip_the_engines_fixed_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _calls(monkeypatch)
    ident = ("shop", "public", "customers")
    map_rows(*_events(ident, 3))
    map_rows(*_events(ident, SMALL_BATCH_ROWS))
    map_rows(*_events(ident, SMALL_BATCH_ROWS + 1))
    assert calls == ["reference", "reference", "engine"]


def test_a_record_breaking_silvers_contract_comes_out_for_quarantine() -> None:
    # A change without an LSN maps on both paths; silver's split_invalid then quarantines it.
    mapping, events = _events(("shop", "public", "customers"), 1)
    bad = events.with_columns(pl.lit(None, dtype=pl.Int64).alias("lsn"))
    out = map_rows(mapping, bad)
    _same(out, map_batch(mapping, bad))
    good, invalid = split_invalid(out.records)
    assert good.height == 0
    assert invalid.get_column("reason").to_list() == ["null or negative lsn"]
