"""The silver writer on real Delta tables: one test (or a few) per rule of the layer."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from core.errors import InvalidInputError, TerminalError, TransientError
from sinks.delta.maintenance import MaintenancePolicy
from sinks.delta.silver import (
    ENGINES,
    SILVER_PARTITION_BY,
    SilverWriter,
    read_current,
    silver_app_id,
    silver_path,
    split_invalid,
)
from sinks.delta.silver_batch import INPUT_COLUMNS, TRUNCATE_KEY

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
SCHEMA = {
    **INPUT_COLUMNS,
    "name": pl.String,
    "email": pl.String,
    "age": pl.Int64,
}
DATA = ("name", "email", "age")


class Source:
    """Makes canonical change rows; each (topic, partition) numbers its offsets 0, 1, 2, ..."""

    def __init__(self) -> None:
        self._offsets: dict[tuple[str, int], itertools.count[int]] = {}

    def ev(
        self,
        key: str | None,
        lsn: int,
        op: str = "u",
        *,
        name: str | None = None,
        email: str | None = None,
        age: int | None = None,
        unavailable: tuple[str, ...] = (),
        tx_id: int | None = None,
        table: str = "public.customers",
        system: str = "crm",
        partition: int = 0,
        offset: int | None = None,
    ) -> dict[str, Any]:
        topic = f"{system}.{table}"
        counter = self._offsets.setdefault((topic, partition), itertools.count())
        return {
            "source_system": system,
            "source_table": table,
            "source_key": key,
            "lsn": lsn,
            "tx_id": tx_id,
            "source_ts": T0 + dt.timedelta(seconds=lsn),
            "mapping_version": "m1",
            "op": op,
            "deleted": op == "d",
            "snapshot": op == "r",
            "topic": topic,
            "partition": partition,
            "offset": next(counter) if offset is None else offset,
            "unavailable": list(unavailable),
            "name": name,
            "email": email,
            "age": age,
        }


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA)


def state(writer: SilverWriter, include_deleted: bool = True) -> dict[str, dict[str, Any]]:
    df = read_current(writer.path, include_deleted=include_deleted)
    return {r["source_key"]: r for r in df.iter_rows(named=True)}


@pytest.fixture(params=ENGINES)
def writer(tmp_path: Path, request: pytest.FixtureRequest) -> SilverWriter:
    """Every behaviour holds for both MERGE engines (the rewrite engine and delta-rs's MERGE)."""
    return SilverWriter(tmp_path, "customer", maintenance=None, engine=request.param)


@pytest.fixture
def src() -> Source:
    return Source()


# -- layout ----------------------------------------------------------------------------------------


def test_table_layout(tmp_path: Path, src: Source) -> None:
    w = SilverWriter(tmp_path, "customer", maintenance=None)
    assert w.path == silver_path(tmp_path, "customer") == tmp_path / "silver" / "customer"
    w.apply(frame(src.ev("1", 10, "c", name="Ann", age=30)))
    table = DeltaTable(str(w.path))
    assert table.metadata().partition_columns == SILVER_PARTITION_BY
    config = table.metadata().configuration
    assert config["delta.enableChangeDataFeed"] == "true"
    assert "delta.checkpointInterval" in config
    schema = pa.schema(table.schema().to_arrow())
    assert schema.field("source_ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("applied_at").type == pa.timestamp("us", tz="UTC")
    assert "timestampNtz" not in (table.protocol().writer_features or [])
    df = read_current(w.path)
    assert df.columns[:6] == ["source_system", "source_table", "source_key", "name", "email", "age"]
    assert {"deleted", "op", "lsn", "tx_id", "offset", "change_seq", "data_seq", "applied_at"} <= set(
        df.columns
    )
    row = df.row(0, named=True)
    assert (row["name"], row["deleted"], row["op"], row["lsn"]) == ("Ann", False, "c", 10)


def test_entity_names_are_identifiers(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        silver_path(tmp_path, "../x")


def test_explicit_schema_creates_all_columns(tmp_path: Path, src: Source) -> None:
    schema = pa.schema(
        [("name", pa.string()), ("email", pa.string()), ("age", pa.int64()), ("vip", pa.bool_())]
    )
    w = SilverWriter(tmp_path, "customer", schema=schema, maintenance=None)
    w.apply(frame(src.ev("1", 1, "c", name="A")))
    assert state(w)["1"]["vip"] is None
    assert pa.schema(DeltaTable(str(w.path)).schema().to_arrow()).field("vip").type == pa.bool_()


# -- ordering --------------------------------------------------------------------------------------


def test_newest_change_wins_whatever_the_arrival_order(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 20, name="new")))
    r = writer.apply(frame(src.ev("1", 10, name="old")))  # late
    assert (r.rows_applied, r.rows_ignored_stale) == (0, 1)
    assert state(writer)["1"]["name"] == "new"
    assert state(writer)["1"]["lsn"] == 20


def test_duplicated_change_is_applied_once(writer: SilverWriter, src: Source) -> None:
    e = src.ev("1", 20, name="x")
    r = writer.apply(frame(e, e))  # delivered twice in one batch (a consumer restart mid-batch)
    assert (r.rows_in, r.rows_applied, r.rows_superseded) == (2, 1, 1)
    r = writer.apply(frame(e))
    assert (r.rows_skipped_committed, r.commit_version) == (1, None)
    assert state(writer)["1"]["name"] == "x"


def test_snapshot_read_never_overwrites_newer_streamed_state(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 50, "u", name="streamed")))
    writer.apply(frame(src.ev("1", 40, "r", name="snapshot")))
    assert state(writer)["1"]["name"] == "streamed"


@pytest.mark.parametrize("snapshot_first", [True, False])
def test_at_equal_lsn_a_streamed_change_beats_a_snapshot_read(
    writer: SilverWriter, src: Source, snapshot_first: bool
) -> None:
    snap = src.ev("1", 50, "r", name="snapshot", tx_id=9)
    streamed = src.ev("1", 50, "u", name="streamed", tx_id=1)
    for e in (snap, streamed) if snapshot_first else (streamed, snap):
        writer.apply(frame(e))
    assert state(writer)["1"]["name"] == "streamed"


def test_tx_id_then_offset_break_lsn_ties(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 50, name="tx2", tx_id=2, offset=1)))
    writer.apply(frame(src.ev("1", 50, name="tx1", tx_id=1, offset=7)))
    assert state(writer)["1"]["name"] == "tx2"
    writer.apply(frame(src.ev("2", 60, name="first", offset=10), src.ev("2", 60, name="second", offset=11)))
    assert state(writer)["2"]["name"] == "second"


def test_batch_is_folded_to_the_last_change_per_key(writer: SilverWriter, src: Source) -> None:
    r = writer.apply(
        frame(
            src.ev("1", 3, "u", name="c"),
            src.ev("1", 1, "c", name="a"),
            src.ev("2", 5, "c", name="x"),
            src.ev("1", 2, "u", name="b"),
        )
    )
    assert (r.rows_in, r.rows_applied, r.rows_superseded) == (4, 2, 2)
    assert {k: v["name"] for k, v in state(writer).items()} == {"1": "c", "2": "x"}


# -- deletes ---------------------------------------------------------------------------------------


def test_delete_leaves_a_marker_a_late_update_cannot_resurrect(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 10, "c", name="Ann", age=3)))
    writer.apply(frame(src.ev("1", 30, "d")))
    row = state(writer)["1"]
    assert (row["deleted"], row["op"], row["lsn"]) == (True, "d", 30)
    assert (row["name"], row["age"]) == ("Ann", 3)  # the last known values stay
    assert read_current(writer.path).height == 0
    writer.apply(frame(src.ev("1", 20, "u", name="late")))
    assert state(writer)["1"]["deleted"] is True
    assert read_current(writer.path).height == 0


def test_a_later_insert_revives_a_deleted_row(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 10, "c", name="Ann")))
    writer.apply(frame(src.ev("1", 30, "d")))
    writer.apply(frame(src.ev("1", 40, "c", name="Again")))
    row = state(writer)["1"]
    assert (row["deleted"], row["name"], row["lsn"]) == (False, "Again", 40)


def test_delete_before_the_insert_arrives(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 30, "d")))
    writer.apply(frame(src.ev("1", 10, "c", name="Ann")))
    row = state(writer)["1"]
    assert row["deleted"] is True and row["lsn"] == 30
    assert row["name"] == "Ann"  # what the key held before it was deleted


def test_deleted_flag_of_a_source_soft_delete_is_kept(writer: SilverWriter, src: Source) -> None:
    e = src.ev("1", 10, "u", name="Ann")
    e["deleted"] = True  # the mapping maps a source-side "is_deleted" flag
    writer.apply(frame(e))
    assert state(writer)["1"]["deleted"] is True and state(writer)["1"]["name"] == "Ann"


# -- TOAST -----------------------------------------------------------------------------------------


def test_unavailable_fields_keep_the_prior_value(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 10, "c", name="Ann", email="a@x")))
    writer.apply(frame(src.ev("1", 20, "u", name="Anna", unavailable=("email",))))
    row = state(writer)["1"]
    assert (row["name"], row["email"], row["lsn"]) == ("Anna", "a@x", 20)


def test_unavailable_without_prior_state_is_null(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 20, "u", name="Anna", unavailable=("email",))))
    assert state(writer)["1"]["email"] is None


def test_toast_is_combined_within_a_batch(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 1, "c", name="n0", email="e0")))
    writer.apply(
        frame(
            src.ev("1", 10, "u", name="n1", email="e1"),
            src.ev("1", 20, "u", name="n2", unavailable=("email",)),
            src.ev("1", 30, "u", unavailable=("email", "name"), age=7),
        )
    )
    row = state(writer)["1"]
    assert (row["name"], row["email"], row["age"]) == ("n2", "e1", 7)


def test_a_late_change_fills_a_field_the_newer_state_never_had(writer: SilverWriter, src: Source) -> None:
    """The update arrived before the insert: its TOAST field was unknown, the insert knows it."""
    writer.apply(frame(src.ev("1", 20, "u", name="n2", unavailable=("email",))))
    writer.apply(frame(src.ev("1", 10, "c", name="n1", email="e1")))
    row = state(writer)["1"]
    assert (row["name"], row["email"], row["lsn"]) == ("n2", "e1", 20)
    # an even older change must not overwrite it
    writer.apply(frame(src.ev("1", 5, "c", name="n0", email="e0")))
    assert state(writer)["1"]["email"] == "e1"


def test_late_toast_provider_older_than_the_stored_value_is_ignored(
    writer: SilverWriter, src: Source
) -> None:
    writer.apply(frame(src.ev("1", 22, "u", name="n", email="e22")))
    writer.apply(
        frame(src.ev("1", 5, "u", email="e5"), src.ev("1", 30, "u", name="m", unavailable=("email",)))
    )
    assert state(writer)["1"]["email"] == "e22"


def test_late_change_replaces_a_kept_value_it_is_newer_than(writer: SilverWriter, src: Source) -> None:
    """email came from lsn 1 and was kept by lsn 5 (TOAST); the late lsn 3 set it in between."""
    writer.apply(frame(src.ev("1", 1, "c", name="n1", email="e1")))
    writer.apply(frame(src.ev("1", 5, "u", name="n5", unavailable=("email",))))
    writer.apply(frame(src.ev("1", 3, "u", name="n3", email="e3")))
    row = state(writer)["1"]
    assert (row["name"], row["email"], row["lsn"]) == ("n5", "e3", 5)


# -- primary-key change ----------------------------------------------------------------------------


def test_primary_key_change_moves_the_record(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 10, "c", name="Ann")))
    writer.apply(frame(src.ev("1", 20, "d", tx_id=5), src.ev("100", 20, "c", name="Ann", tx_id=5)))
    assert set(read_current(writer.path)["source_key"]) == {"100"}
    assert state(writer)["1"]["deleted"] is True


# -- truncate --------------------------------------------------------------------------------------


def test_truncate_soft_deletes_older_rows_of_its_table_only(writer: SilverWriter, src: Source) -> None:
    writer.apply(
        frame(
            src.ev("1", 10, "c", name="a"),
            src.ev("2", 60, "c", name="b"),
            src.ev("9", 10, "c", name="other", table="public.other"),
        )
    )
    r = writer.apply(frame(src.ev(None, 50, "t")))
    assert r.commit_version is not None
    rows = state(writer)
    assert (rows["1"]["deleted"], rows["1"]["op"], rows["1"]["lsn"]) == (True, "t", 50)
    assert rows["1"]["name"] == "a"
    assert rows["2"]["deleted"] is False  # newer than the truncate
    assert rows["9"]["deleted"] is False  # another source table
    assert TRUNCATE_KEY not in rows


def test_truncate_in_the_same_batch_as_changes(writer: SilverWriter, src: Source) -> None:
    writer.apply(
        frame(
            src.ev("1", 10, "c", name="a"),
            src.ev(None, 20, "t"),
            src.ev("2", 30, "c", name="b"),
            src.ev("3", 15, "c", name="c"),
        )
    )
    rows = state(writer)
    assert {k: r["deleted"] for k, r in rows.items()} == {"1": True, "2": False, "3": True}


def test_late_change_older_than_an_applied_truncate_stays_deleted(tmp_path: Path, src: Source) -> None:
    """The truncate came through another partition first; the insert it removed arrives later."""
    w = SilverWriter(tmp_path, "customer", maintenance=None)
    w.apply(frame(src.ev(None, 50, "t", partition=1)))
    w.apply(frame(src.ev("1", 40, "c", name="a")))
    assert state(w)["1"]["deleted"] is True
    fresh = SilverWriter(tmp_path, "customer", maintenance=None)  # a restart: the table remembers
    fresh.apply(frame(src.ev("2", 45, "c", name="b"), src.ev("3", 55, "c", name="c")))
    rows = state(fresh)
    assert (rows["2"]["deleted"], rows["2"]["op"], rows["3"]["deleted"]) == (True, "t", False)


def test_an_older_truncate_after_a_newer_one_changes_nothing(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 10, "c", name="a")))
    writer.apply(frame(src.ev(None, 50, "t")))
    writer.apply(frame(src.ev(None, 30, "t")))
    assert state(writer)["1"]["lsn"] == 50


# -- exactly once ----------------------------------------------------------------------------------


def test_replayed_batch_is_skipped_by_the_transaction_check(writer: SilverWriter, src: Source) -> None:
    batch = frame(src.ev("1", 10, "c", name="a"), src.ev("2", 11, "c", name="b"))
    first = writer.apply(batch)
    again = writer.apply(batch)
    assert (again.rows_skipped_committed, again.commit_version) == (2, None)
    assert DeltaTable(str(writer.path)).version() == first.commit_version


def test_overlapping_replay_applies_only_the_new_tail(writer: SilverWriter, src: Source) -> None:
    rows = [src.ev(str(i), 10 + i, "c", name=f"n{i}") for i in range(6)]
    writer.apply(frame(*rows[:4]))
    r = writer.apply(frame(*rows[2:]))
    assert (r.rows_skipped_committed, r.rows_applied) == (2, 2)
    assert read_current(writer.path).height == 6


def test_one_transaction_per_partition_in_one_commit(writer: SilverWriter, src: Source) -> None:
    r = writer.apply(
        frame(
            src.ev("1", 10, "c", partition=0),
            src.ev("2", 11, "c", partition=0),
            src.ev("3", 12, "c", partition=1),
            src.ev("4", 13, "c", table="public.other"),
        )
    )
    table = DeltaTable(str(writer.path))
    assert table.version() == r.commit_version
    assert table.transaction_version(silver_app_id("customer", "crm.public.customers", 0)) == 1
    assert table.transaction_version(silver_app_id("customer", "crm.public.customers", 1)) == 0
    assert table.transaction_version(silver_app_id("customer", "crm.public.other", 0)) == 0
    # a replay of partition 1 only is skipped, partition 0 moves on
    r2 = writer.apply(frame(src.ev("3", 12, "c", partition=1, offset=0), src.ev("5", 14, "c", partition=0)))
    assert (r2.rows_skipped_committed, r2.rows_applied) == (1, 1)


def test_a_new_writer_object_sees_committed_transactions(tmp_path: Path, src: Source) -> None:
    batch = frame(src.ev("1", 10, "c", name="a"))
    SilverWriter(tmp_path, "customer", maintenance=None).apply(batch)
    r = SilverWriter(tmp_path, "customer", maintenance=None).apply(batch)
    assert r.rows_skipped_committed == 1


def test_sequence_guard_stops_a_replay_that_got_past_the_transaction_check(
    writer: SilverWriter, src: Source
) -> None:
    writer.apply(frame(src.ev("1", 20, "u", name="new", partition=0)))
    # the same old change re-published on another partition: no transaction covers it
    r = writer.apply(frame(src.ev("1", 10, "u", name="old", partition=3)))
    assert r.rows_ignored_stale == 1 and state(writer)["1"]["name"] == "new"


# -- concurrency and errors ------------------------------------------------------------------------


def test_conflicting_concurrent_commit_is_retried(tmp_path: Path, src: Source, monkeypatch: Any) -> None:
    a = SilverWriter(tmp_path, "customer", maintenance=None, sleep=lambda _s: None)
    b = SilverWriter(tmp_path, "customer", maintenance=None)
    a.apply(frame(src.ev("1", 1, "c", name="a1", partition=0), src.ev("2", 2, "c", name="b1", partition=1)))
    real_merge = SilverWriter._merge
    calls = {"n": 0}

    def racing_merge(self: SilverWriter, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # another worker commits between our read and our commit
            b.apply(frame(src.ev("2", 5, "u", name="b2", partition=1)))
        return real_merge(self, *args)

    monkeypatch.setattr(SilverWriter, "_merge", racing_merge)
    r = a.apply(frame(src.ev("1", 6, "u", name="a2", partition=0)))
    assert r.attempts == 2
    assert {k: v["name"] for k, v in state(a).items()} == {"1": "a2", "2": "b2"}


def test_writers_of_different_source_tables_do_not_conflict(tmp_path: Path, src: Source) -> None:
    a = SilverWriter(tmp_path, "customer", maintenance=None)
    b = SilverWriter(tmp_path, "customer", maintenance=None)
    a.apply(frame(src.ev("1", 1, "c", table="public.a")))
    b.apply(frame(src.ev("1", 1, "c", table="public.b")))
    a_table = a._open({})  # a's table object is now one version behind
    a_table_version = a_table.version()
    r = b.apply(frame(src.ev("1", 2, "u", table="public.b")))
    assert r.attempts == 1
    r = a.apply(frame(src.ev("1", 3, "u", table="public.a")))
    assert r.attempts == 1 and r.commit_version is not None and r.commit_version > a_table_version


def test_persistent_conflicts_raise_transient(writer: SilverWriter, src: Source, monkeypatch: Any) -> None:
    def always_conflict(self: SilverWriter, *args: Any) -> Any:
        raise CommitFailedError("a concurrent transaction")

    writer.apply(frame(src.ev("1", 1, "c")))
    monkeypatch.setattr(SilverWriter, "_merge", always_conflict)
    w = SilverWriter(
        writer.path.parent.parent, "customer", maintenance=None, max_attempts=3, sleep=lambda _s: None
    )
    with pytest.raises(TransientError, match="3 attempts"):
        w.apply(frame(src.ev("1", 2, "u")))


def test_contract_violations_are_terminal(writer: SilverWriter, src: Source) -> None:
    with pytest.raises(TerminalError, match="lsn"):
        writer.apply(frame(src.ev("1", 1, "c")).drop("lsn"))
    naive = frame(src.ev("1", 1, "c")).with_columns(pl.col("source_ts").dt.replace_time_zone(None))
    with pytest.raises(TerminalError, match="naive"):
        writer.apply(naive)
    with pytest.raises(TerminalError, match="not allowed"):
        writer.apply(frame(src.ev("1", 1, "c")).with_columns(pl.lit(1).alias("seq__x")))


def test_bad_rows_raise_invalid_input_and_can_be_split_off(writer: SilverWriter, src: Source) -> None:
    batch = frame(src.ev("1", 1, "c"), src.ev(None, 2, "u"), src.ev("3", 3, "x"))
    with pytest.raises(InvalidInputError, match="source_key"):
        writer.apply(batch)
    good, bad = split_invalid(batch)
    assert good["source_key"].to_list() == ["1"]
    assert bad["reason"].to_list() == ["null source_key on a change that is not a truncate", "unknown op"]
    assert writer.apply(good).rows_applied == 1


# -- schema changes --------------------------------------------------------------------------------


def test_new_data_column_is_added_and_absent_columns_keep_their_values(
    writer: SilverWriter, src: Source
) -> None:
    writer.apply(frame(src.ev("1", 1, "c", name="a", email="e", age=1)))
    later = frame(src.ev("1", 2, "u", name="b"), src.ev("2", 3, "c", name="z")).drop("email")
    later = later.with_columns(pl.lit("gold").alias("tier"))
    writer.apply(later)
    rows = state(writer)
    assert (rows["1"]["name"], rows["1"]["email"], rows["1"]["tier"]) == ("b", "e", "gold")
    assert (rows["2"]["email"], rows["2"]["tier"]) == (None, "gold")


def test_data_types_follow_the_table(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 1, "c", age=1)))
    writer.apply(frame(src.ev("1", 2, "u", age=2)).with_columns(pl.col("age").cast(pl.Int16)))
    assert state(writer)["1"]["age"] == 2
    bad = frame(src.ev("1", 3, "u")).with_columns(pl.lit("not a number").alias("age"))
    with pytest.raises(TerminalError):
        writer.apply(bad)


def test_decimal_and_date_columns_keep_their_values(writer: SilverWriter, src: Source) -> None:
    money = pl.Decimal(38, 3)
    extra = {"amount": money, "due": pl.Date()}
    first = frame(src.ev("1", 1, "c", name="a"), src.ev("2", 2, "c", name="b")).with_columns(
        pl.Series("amount", [Decimal("12.500"), None], money), pl.Series("due", [dt.date(2024, 5, 1), None])
    )
    writer.apply(first)
    writer.apply(
        frame(src.ev("1", 3, "u", name="a2")).with_columns(
            pl.Series("amount", [Decimal("-0.125")], money), pl.Series("due", [dt.date(2025, 1, 31)])
        )
    )
    got = read_current(writer.path).select("source_key", *extra).sort("source_key")
    assert got.schema == pl.Schema({"source_key": pl.String(), **extra})
    assert got.rows() == [("1", Decimal("-0.125"), dt.date(2025, 1, 31)), ("2", None, None)]


def test_other_time_zones_are_stored_as_utc(writer: SilverWriter, src: Source) -> None:
    batch = frame(src.ev("1", 1, "c")).with_columns(
        pl.lit(dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)).dt.convert_time_zone("Europe/Berlin").alias("seen")
    )
    writer.apply(batch)
    assert state(writer)["1"]["seen"] == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)


# -- change data feed, maintenance -----------------------------------------------------------------


def test_change_data_feed_records_updates(writer: SilverWriter, src: Source) -> None:
    writer.apply(frame(src.ev("1", 1, "c", name="a")))
    writer.apply(frame(src.ev("1", 2, "u", name="b")))
    cdf = pl.DataFrame(DeltaTable(str(writer.path)).load_cdf(starting_version=0).read_all())
    kinds = sorted(cdf["_change_type"].to_list())
    assert kinds == ["insert", "update_postimage", "update_preimage"]


def test_automatic_maintenance_runs_after_enough_commits(tmp_path: Path, src: Source) -> None:
    w = SilverWriter(tmp_path, "customer", maintenance=MaintenancePolicy(every_commits=3))
    results = [w.apply(frame(src.ev(str(i), i, "c"))) for i in range(3)]
    assert [r.maintenance is not None for r in results] == [False, False, True]
    assert (w.path / "_delta_log" / "_last_checkpoint").exists()
    assert read_current(w.path).height == 3


def test_empty_batch_is_a_no_op(writer: SilverWriter) -> None:
    r = writer.apply(pl.DataFrame(schema=SCHEMA))
    assert (r.rows_in, r.commit_version) == (0, None)


# -- the rewrite engine ----------------------------------------------------------------------------


def live_files(path: Path) -> set[str]:
    return {str(p) for p in DeltaTable(str(path)).get_add_actions(flatten=True).column("path").to_pylist()}


def test_the_rewrite_engine_replaces_only_files_with_a_changed_row(tmp_path: Path, src: Source) -> None:
    w = SilverWriter(tmp_path, "customer", maintenance=None)
    w.apply(frame(src.ev("1", 1, "c", name="a"), src.ev("5", 2, "c", name="b")))
    first = live_files(w.path)
    w.apply(frame(src.ev("3", 3, "c", name="c"), src.ev("7", 4, "c", name="d")))
    second = live_files(w.path) - first
    assert len(first) == len(second) == 1
    # key 5 may be in either file by their key ranges (1-5, 3-7): both are read, only the first changes
    w.apply(frame(src.ev("5", 5, "u", name="b2")))
    now = live_files(w.path)
    assert second <= now and not first & now
    assert {k: v["name"] for k, v in state(w).items()} == {"1": "a", "3": "c", "5": "b2", "7": "d"}
    cdf = pl.DataFrame(DeltaTable(str(w.path)).load_cdf(starting_version=3).read_all())
    assert sorted(zip(cdf["_change_type"], cdf["name"], strict=True)) == [
        ("update_postimage", "b2"),
        ("update_preimage", "b"),
    ]


def test_a_table_the_rewrite_engine_cannot_write_goes_through_delta_rs(
    tmp_path: Path, src: Source, caplog: pytest.LogCaptureFixture
) -> None:
    w = SilverWriter(tmp_path, "customer", maintenance=None)
    odd = "public.odd name"  # a partition directory name that needs escaping
    w.apply(frame(src.ev("1", 1, "c", name="a", table=odd)))
    w.apply(frame(src.ev("1", 2, "u", name="b", table=odd), src.ev("2", 3, "c", name="c")))
    assert "not the rewrite engine" in caplog.text and "needs escaping" in caplog.text
    history = DeltaTable(str(w.path)).history()
    assert {h["engineInfo"] for h in history if h["operation"] == "MERGE"} == {"delta-rs:py-1.6.6"}
    rows = read_current(w.path).select("source_table", "source_key", "name").sort("source_key").rows()
    assert rows == [(odd, "1", "b"), ("public.customers", "2", "c")]


def test_the_rewrite_engine_commits_as_merge_with_its_metrics(tmp_path: Path, src: Source) -> None:
    w = SilverWriter(tmp_path, "customer", maintenance=None)
    w.apply(frame(src.ev("1", 1, "c", name="a")))
    r = w.apply(frame(src.ev("1", 2, "u", name="b"), src.ev("2", 3, "c", name="c")))
    last = DeltaTable(str(w.path)).history(1)[0]
    assert last["operation"] == "MERGE" and last["engineInfo"] == "goldstream"
    metrics = last["operationMetrics"]
    assert (metrics["num_target_rows_updated"], metrics["num_target_rows_inserted"]) == (1, 1)
    assert last["goldstream.offsets"] == f"{silver_app_id('customer', 'crm.public.customers', 0)}@2"
    assert set(r.steps) == {"prepare", "read", "merge", "write", "commit"}


def test_a_file_the_rewrite_engine_cannot_read_locally_falls_back_before_writing(
    tmp_path: Path, src: Source, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    w = SilverWriter(tmp_path, "customer", maintenance=None)
    w.apply(frame(src.ev("1", 1, "c", name="a")))

    def remote(*_args: Any) -> pl.DataFrame:
        raise ValueError("not a local file: s3://bucket/part.parquet")

    monkeypatch.setattr(SilverWriter, "_read_files", remote)
    w.apply(frame(src.ev("1", 2, "u", name="b")))
    assert "s3://bucket" in caplog.text
    assert DeltaTable(str(w.path)).history(1)[0]["engineInfo"].startswith("delta-rs")
    assert state(w)["1"]["name"] == "b"
