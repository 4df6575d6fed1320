"""Folding a batch for the silver MERGE: pure polars, no Delta."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.delta.silver_batch import (
    DATA_SEQ,
    SEQ,
    TRUNCATE_KEY,
    fold,
    helper_provider,
    latest_truncates,
    normalize,
    sequence,
)
from sinks.delta.silver_merge import clauses, lit, missing_columns, scope

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def row(key: str | None, lsn: int, op: str = "u", offset: int = 0, **data: Any) -> dict[str, Any]:
    return {
        "source_system": "crm",
        "source_table": data.pop("table", "public.c"),
        "source_key": key,
        "lsn": lsn,
        "tx_id": data.pop("tx_id", None),
        "source_ts": T0,
        "mapping_version": "m",
        "op": op,
        "deleted": op == "d",
        "snapshot": op == "r",
        "topic": "t",
        "partition": 0,
        "offset": offset,
        "unavailable": data.pop("unavailable", []),
        "name": data.get("name"),
        "email": data.get("email"),
    }


def prepared(*rows: dict[str, Any]) -> pl.DataFrame:
    df = pl.DataFrame(
        list(rows),
        schema_overrides={
            "source_ts": pl.Datetime("us", "UTC"),
            "partition": pl.Int32,
            "unavailable": pl.List(pl.String),
            "name": pl.String,
            "email": pl.String,
            "source_key": pl.String,
            "tx_id": pl.Int64,
        },
    )
    return normalize(df).with_columns(sequence().alias(SEQ))


changes = st.tuples(
    st.integers(0, 2**62),
    st.sampled_from(["u", "r"]),
    st.one_of(st.none(), st.integers(0, 2**40)),
    st.integers(0, 2**62),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, min_size=2, max_size=20))
def test_sequence_strings_sort_like_lsn_streamed_txid_offset(
    values: list[tuple[int, str, int | None, int]],
) -> None:
    df = pl.DataFrame(
        {
            "lsn": [v[0] for v in values],
            "op": [v[1] for v in values],
            "snapshot": [v[1] == "r" for v in values],
            "tx_id": pl.Series([v[2] for v in values], dtype=pl.Int64),
            "offset": [v[3] for v in values],
        }
    )
    seqs = df.select(sequence()).to_series().to_list()
    keys = [(v[0], v[1] != "r", -1 if v[2] is None else v[2], v[3]) for v in values]
    assert sorted(range(len(values)), key=lambda i: seqs[i]) == sorted(
        range(len(values)), key=lambda i: keys[i]
    )
    assert {len(s) for s in seqs} == {61}


def test_fold_keeps_the_newest_change_per_key_and_counts_the_rest() -> None:
    f = fold(
        prepared(row("1", 5, name="b", offset=2), row("1", 3, name="a", offset=1), row("2", 1, name="x")),
        applied_at=T0,
    )
    rows = {r["source_key"]: r for r in f.rows.iter_rows(named=True)}
    assert (rows["1"]["name"], rows["1"]["lsn"], rows["2"]["name"]) == ("b", 5, "x")
    assert f.superseded == 1 and f.partial == frozenset() and f.sweeps == ()


def test_fold_takes_each_field_from_the_newest_change_that_carried_it() -> None:
    f = fold(
        prepared(
            row("1", 1, "c", name="n1", email="e1", offset=1),
            row("1", 2, "u", name="n2", unavailable=["email"], offset=2),
            row("1", 3, "d", offset=3),
        ),
        applied_at=T0,
    )
    r = f.rows.row(0, named=True)
    assert (r["op"], r["deleted"], r["name"], r["email"]) == ("d", True, "n2", "e1")
    assert r[DATA_SEQ] < r[SEQ]  # the update's sequence, older than the delete
    i = f.data.index("email")
    assert f.partial == frozenset({i}) and r[helper_provider(i)] < r[DATA_SEQ]


def test_fold_marks_fields_no_change_carried() -> None:
    f = fold(prepared(row("1", 2, "u", name="n", unavailable=["email"])), applied_at=T0)
    r = f.rows.row(0, named=True)
    assert r["email"] is None and r[helper_provider(f.data.index("email"))] == ""


def test_truncate_becomes_the_watermark_row_and_deletes_older_keys_of_the_batch() -> None:
    f = fold(
        prepared(
            row("1", 1, "c", name="a", offset=1),
            row(None, 5, "t", offset=2),
            row("2", 9, "c", name="b", offset=3),
            row("3", 2, "c", name="c", offset=4, table="public.other"),
        ),
        applied_at=T0,
    )
    rows = {(r["source_table"], r["source_key"]): r for r in f.rows.iter_rows(named=True)}
    assert rows[("public.c", TRUNCATE_KEY)]["op"] == "t"
    assert (
        rows[("public.c", "1")]["op"],
        rows[("public.c", "1")]["lsn"],
        rows[("public.c", "1")]["name"],
    ) == (
        "t",
        5,
        "a",
    )
    assert rows[("public.c", "2")]["op"] == "c"
    assert rows[("public.other", "3")]["op"] == "c"
    assert [t.table for t in f.sweeps] == [("crm", "public.c")]


def test_a_remembered_truncate_deletes_late_keys_without_a_new_sweep() -> None:
    remembered = latest_truncates(prepared(row(None, 50, "t", offset=9)))
    f = fold(
        prepared(row("1", 40, "c", name="a"), row("2", 60, "c", name="b")),
        applied_at=T0,
        remembered=remembered,
    )
    ops = {r["source_key"]: r["op"] for r in f.rows.iter_rows(named=True)}
    assert ops == {"1": "t", "2": "c"} and f.sweeps == ()
    older = fold(prepared(row(None, 30, "t")), applied_at=T0, remembered=remembered)
    assert older.sweeps == ()  # the table already applied a newer truncate


def test_scope_limits_the_merge_to_partitions_and_key_ranges() -> None:
    f = fold(prepared(row("10", 1), row("12", 2), row("5", 3, table="public.other")), applied_at=T0)
    assert scope(f) == (
        "(t.source_system = 'crm' AND t.source_table = 'public.c' AND t.source_key >= '10'"
        " AND t.source_key <= '12') OR (t.source_system = 'crm' AND t.source_table = 'public.other'"
        " AND t.source_key >= '5' AND t.source_key <= '5')"
    )
    truncated = fold(prepared(row("10", 1), row(None, 2, "t")), applied_at=T0)
    assert scope(truncated) == "(t.source_system = 'crm' AND t.source_table = 'public.c')"


def test_literals_are_escaped() -> None:
    assert lit("o'neil") == "'o''neil'"


def test_clauses_reference_provenance_only_where_needed() -> None:
    f = fold(prepared(row("1", 1, name="a", unavailable=["email"])), applied_at=T0)
    assert missing_columns(f, {"name": 0, "email": 0}, set()) == {"seq__email": pl.String()}
    c = clauses(f, {"name": 0, "email": 0}, {"email"})
    assert "seq__email" in c.update["`email`"] and "seq__" not in c.update["`name`"]
    assert "`seq__email`" in c.insert and "`seq__name`" not in c.insert
