"""Behaviour pinned for the hot-path change made while benchmarking (IdempotentAppender's filter skip).

The appender skips the offset filter (a copy of the whole batch) when every row is newer than the
committed version; these cases check that the rows written and skipped are exactly as before.
"""

from pathlib import Path

import polars as pl
import pyarrow as pa

from sinks.delta.appender import IdempotentAppender

SCHEMA = pa.schema([pa.field("offset", pa.int64(), nullable=False), pa.field("v", pa.string())])
NULLABLE = pa.schema([pa.field("offset", pa.int64()), pa.field("v", pa.string())])


def rows(offsets: list[int | None], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.table({"offset": offsets, "v": [f"r{o}" for o in offsets]}, schema=schema)


def test_consecutive_batches_are_written_whole(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    app.append(rows(list(range(0, 10))), app_id="p", version=9)
    r = app.append(rows(list(range(10, 25))), app_id="p", version=24)
    assert (r.rows_written, r.rows_skipped) == (15, 0)
    assert pl.read_delta(str(tmp_path / "t"))["offset"].sort().to_list() == list(range(25))


def test_a_gap_after_the_committed_version_is_still_written_whole(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    app.append(rows([0, 1]), app_id="p", version=5)  # offsets 2..5 were tombstones
    r = app.append(rows([6, 7]), app_id="p", version=7)
    assert (r.rows_written, r.rows_skipped) == (2, 0)


def test_unordered_batch_with_one_old_row_is_filtered(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    app.append(rows([0, 1, 2]), app_id="p", version=2)
    r = app.append(rows([5, 2, 6]), app_id="p", version=6)
    assert (r.rows_written, r.rows_skipped) == (2, 1)
    assert sorted(pl.read_delta(str(tmp_path / "t"))["offset"].to_list()) == [0, 1, 2, 5, 6]


def test_null_offsets_are_dropped_as_before(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", NULLABLE)
    app.append(rows([0, 1], NULLABLE), app_id="p", version=1)
    r = app.append(rows([2, None, 3], NULLABLE), app_id="p", version=3)
    assert (r.rows_written, r.rows_skipped) == (2, 1)
    assert sorted(pl.read_delta(str(tmp_path / "t"))["offset"].to_list()) == [0, 1, 2, 3]
