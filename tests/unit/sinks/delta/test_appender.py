from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from sinks.delta.appender import IdempotentAppender

SCHEMA = pa.schema([pa.field("offset", pa.int64(), nullable=False), pa.field("v", pa.string())])


def rows(offsets: range) -> pa.Table:
    return pa.table({"offset": list(offsets), "v": [f"r{o}" for o in offsets]}, schema=SCHEMA)


def test_append_records_transaction_version(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    r = app.append(rows(range(0, 10)), app_id="topic:0", version=9)
    assert r.rows_written == 10 and r.rows_skipped == 0
    assert DeltaTable(str(tmp_path / "t")).transaction_version("topic:0") == 9
    assert app.committed_version("topic:0") == 9
    assert app.committed_version("topic:1") is None


def test_replayed_batch_adds_nothing(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    app.append(rows(range(0, 10)), app_id="topic:0", version=9)
    again = app.append(rows(range(0, 10)), app_id="topic:0", version=9)
    assert again.rows_written == 0 and again.rows_skipped == 10 and again.version is None
    assert pl.read_delta(str(tmp_path / "t")).height == 10


def test_overlapping_replay_writes_only_the_new_tail(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    app.append(rows(range(0, 10)), app_id="topic:0", version=9)
    # after a crash the source resumes from an older snapshot: offsets 5..19 arrive again
    r = app.append(rows(range(5, 20)), app_id="topic:0", version=19)
    assert (r.rows_written, r.rows_skipped) == (10, 5)
    df = pl.read_delta(str(tmp_path / "t")).sort("offset")
    assert df["offset"].to_list() == list(range(20))


def test_a_fresh_appender_object_sees_earlier_commits(tmp_path: Path) -> None:
    IdempotentAppender(tmp_path / "t", SCHEMA).append(rows(range(0, 5)), app_id="a", version=4)
    r = IdempotentAppender(tmp_path / "t", SCHEMA).append(rows(range(0, 8)), app_id="a", version=7)
    assert (r.rows_written, r.rows_skipped) == (3, 5)


def test_streams_are_independent(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    app.append(rows(range(0, 5)), app_id="topic:0", version=4)
    r = app.append(rows(range(0, 5)), app_id="topic:1", version=4)
    assert r.rows_written == 5
    assert pl.read_delta(str(tmp_path / "t")).height == 10


def test_version_beyond_last_row_is_recorded(tmp_path: Path) -> None:
    """A batch whose tail held tombstones commits the batch's last offset, not the last row's."""
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    app.append(rows(range(0, 5)), app_id="p", version=7)
    r = app.append(rows(range(0, 8)), app_id="p", version=7)
    assert r.rows_written == 0


@pytest.mark.parametrize("n", [0])
def test_empty_append_is_a_no_op(tmp_path: Path, n: int) -> None:
    r = IdempotentAppender(tmp_path / "t", SCHEMA).append(rows(range(n)), app_id="p", version=3)
    assert r.rows_written == 0 and r.version is None
