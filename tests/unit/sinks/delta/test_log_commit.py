"""The Delta commit writer of the silver rewrite engine: statistics, put-if-absent, checkpoints, and
which tables it refuses. (That its commits read back like delta-rs's MERGE, rows and change data
feed, is the property test in ``test_silver_property.py``.)"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from sinks.delta.log_commit import (
    STATS_STRING_CHARS,
    CommitConflictError,
    commit,
    file_path,
    partition_dir,
    stats_json,
    unsupported_reason,
    write_file,
)

UTC = dt.UTC


def make_table(path: Path, **configuration: str) -> DeltaTable:
    frame = pl.DataFrame({"part": ["a"], "key": ["1"], "n": [1]})
    write_deltalake(str(path), frame.to_arrow(), partition_by=["part"], configuration=configuration or None)
    return DeltaTable(str(path))


def empty_commit(table: DeltaTable, *, read_version: int) -> int:
    """A commit without actions (a version of its own)."""
    return commit(
        table,
        [],
        read_version=read_version,
        operation="WRITE",
        parameters={},
        metrics={},
        app_transactions=[],
        custom_metadata={},
    )


def test_statistics_bound_every_value_and_count_nulls() -> None:
    long = "x" * (STATS_STRING_CHARS + 5)
    frame = pl.DataFrame(
        {
            "s": ["b", "a", None],
            "long": [long, "y", None],
            "i": [3, None, -2],
            "d": [dt.date(2024, 5, 1), dt.date(2023, 1, 2), None],
            "ts": [
                dt.datetime(2024, 1, 1, 0, 0, 0, 1500, tzinfo=UTC),
                dt.datetime(2024, 1, 1, 0, 0, 0, 2500, tzinfo=UTC),
                None,
            ],
            "flag": [True, False, None],
            "tags": [["a"], [], None],
            "money": [Decimal("1.250"), None, Decimal("-3.000")],
        },
        schema_overrides={"money": pl.Decimal(38, 3)},
    )
    stats = json.loads(stats_json(frame, frame.columns))
    assert stats["numRecords"] == 3
    lo, hi, nulls = stats["minValues"], stats["maxValues"], stats["nullCount"]
    assert (lo["s"], hi["s"]) == ("a", "b")
    # a string longer than the limit: a prefix is still a lower bound; no upper bound is written
    assert lo["long"] == long[:STATS_STRING_CHARS] and hi["long"] == "y"
    assert (lo["i"], hi["i"]) == (-2, 3)
    assert (lo["d"], hi["d"]) == ("2023-01-02", "2024-05-01")
    # the log keeps milliseconds: 1.5 ms rounds down for the minimum, 2.5 ms up for the maximum
    assert (lo["ts"], hi["ts"]) == ("2024-01-01T00:00:00.001Z", "2024-01-01T00:00:00.003Z")
    assert (lo["flag"], hi["flag"]) == (False, True)
    assert "tags" not in lo and "tags" not in nulls  # nested: no statistics, as delta-rs
    assert "money" not in lo and "money" not in hi  # decimals: null counts only, no float rounding
    assert nulls == {"s": 1, "long": 1, "i": 1, "d": 1, "ts": 1, "flag": 1, "money": 1}


def test_a_long_maximum_is_left_out() -> None:
    long = "z" * (STATS_STRING_CHARS + 1)
    stats = json.loads(stats_json(pl.DataFrame({"s": ["a", long]}), ["s"]))
    assert stats["minValues"] == {"s": "a"} and stats["maxValues"] == {}


def test_committed_files_are_read_by_delta_readers(tmp_path: Path) -> None:
    table = make_table(tmp_path / "t")
    rows = pl.DataFrame({"key": ["2", "3"], "n": [2, 3]})
    added = write_file(
        tmp_path / "t", rows, {"part": "b"}, "part=b", change_data=False, stats_columns=["key", "n"]
    )
    version = commit(
        table,
        [added.add(0)],
        read_version=table.version(),
        operation="WRITE",
        parameters={},
        metrics={},
        app_transactions=[("app", 7)],
        custom_metadata={"who": "test"},
    )
    assert version == 1
    fresh = DeltaTable(str(tmp_path / "t"))
    assert fresh.version() == 1 and fresh.transaction_version("app") == 7
    read = pl.read_delta(str(tmp_path / "t")).sort("key")
    assert read.to_dicts() == [
        {"part": "a", "key": "1", "n": 1},
        {"part": "b", "key": "2", "n": 2},
        {"part": "b", "key": "3", "n": 3},
    ]
    assert fresh.history(1)[0]["who"] == "test"
    # delta-rs reads our statistics (what file pruning, ours included, goes by)
    actions = pl.from_arrow(pa.table(fresh.get_add_actions(flatten=True)))
    assert isinstance(actions, pl.DataFrame)
    ours = actions.filter(pl.col("path") == added.path)
    assert ours.select("num_records", "min.key", "max.key").row(0) == (2, "2", "3")


def test_a_version_another_writer_took_is_a_conflict(tmp_path: Path) -> None:
    table = make_table(tmp_path / "t")
    stale = DeltaTable(str(tmp_path / "t"))
    write_deltalake(
        str(tmp_path / "t"), pl.DataFrame({"part": ["a"], "key": ["9"], "n": [9]}).to_arrow(), mode="append"
    )
    with pytest.raises(CommitConflictError, match="version 1"):
        empty_commit(stale, read_version=table.version())
    log = sorted(p.name for p in (tmp_path / "t" / "_delta_log").iterdir())
    assert log == ["00000000000000000000.json", "00000000000000000001.json"]  # no temp file left
    assert pl.read_delta(str(tmp_path / "t")).height == 2  # the other commit is intact


def test_a_checkpoint_is_written_at_the_interval(tmp_path: Path) -> None:
    table = make_table(tmp_path / "t", **{"delta.checkpointInterval": "2"})
    for _ in range(2):
        empty_commit(table, read_version=table.version())
    assert table.version() == 2
    assert json.loads((tmp_path / "t" / "_delta_log" / "_last_checkpoint").read_text())["version"] == 2


def test_tables_with_features_it_does_not_honour_are_refused(tmp_path: Path) -> None:
    assert unsupported_reason(make_table(tmp_path / "plain")) is None
    assert unsupported_reason(make_table(tmp_path / "cdf", **{"delta.enableChangeDataFeed": "true"})) is None
    assert "append-only" in str(
        unsupported_reason(make_table(tmp_path / "ao", **{"delta.appendOnly": "true"}))
    )
    constrained = make_table(tmp_path / "ck")
    constrained.alter.add_constraint({"positive": "n > 0"})
    assert unsupported_reason(DeltaTable(str(tmp_path / "ck"))) is not None


def test_file_paths_of_actions_are_decoded_relative_or_absolute(tmp_path: Path) -> None:
    assert file_path(tmp_path, "a=x%20y/part.parquet") == tmp_path / "a=x y" / "part.parquet"
    assert file_path(tmp_path, "file:///data/t/part%2D1.parquet") == Path("/data/t/part-1.parquet")
    with pytest.raises(ValueError, match="not a local file"):
        file_path(tmp_path, "s3://bucket/part.parquet")


def test_partition_values_that_need_escaping_are_not_written() -> None:
    assert partition_dir({"a": "crm", "b": "public.contacts"}, ["a", "b"]) == "a=crm/b=public.contacts"
    assert partition_dir({"a": "crm", "b": "odd name"}, ["a", "b"]) is None
    assert partition_dir({"a": "x/y"}, ["a"]) is None
