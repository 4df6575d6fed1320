from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from core.errors import TerminalError
from sinks.delta.maintenance import maintain, parse_interval, table_retention


def parquet_files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*.parquet") if "_delta_log" not in p.parts}


def small_appends(path: Path, n: int, *, partitioned: bool = True) -> None:
    for i in range(n):
        batch = pa.table({"part": ["a" if i % 2 else "b"] * 10, "k": [f"{i}-{j}" for j in range(10)]})
        write_deltalake(str(path), batch, mode="append", partition_by=["part"] if partitioned else None)


def test_parse_interval() -> None:
    assert parse_interval("interval 15 minutes") == timedelta(minutes=15)
    assert parse_interval("interval 1 hour") == timedelta(hours=1)
    assert parse_interval("INTERVAL 7 days") == timedelta(days=7)
    with pytest.raises(ValueError):
        parse_interval("15 minutes")


def test_compaction_merges_small_files_per_partition(tmp_path: Path) -> None:
    small_appends(tmp_path, 20)
    before = pl.read_delta(str(tmp_path)).sort("k")
    report = maintain(tmp_path, vacuum=False)
    assert report.files_before == 20 and report.files_after == 2  # one per partition
    assert report.compaction["numFilesRemoved"] == 20
    assert pl.read_delta(str(tmp_path)).sort("k").equals(before)


def test_zorder_rewrites_on_the_given_columns(tmp_path: Path) -> None:
    small_appends(tmp_path, 6, partitioned=False)
    report = maintain(tmp_path, zorder_by=["k"], vacuum=False)
    assert report.files_after == 1 and report.compaction["numFilesRemoved"] == 6


def test_compaction_waits_for_enough_small_files(tmp_path: Path) -> None:
    small_appends(tmp_path, 4)
    report = maintain(tmp_path, compact_min_files=8, vacuum=False)
    assert report.compaction == {} and report.files_after == 4


def test_checkpoint_is_written(tmp_path: Path) -> None:
    small_appends(tmp_path, 3)
    report = maintain(tmp_path, compact=False, vacuum=False)
    assert report.checkpoint_version == 2
    assert (tmp_path / "_delta_log" / "_last_checkpoint").exists()


def test_vacuum_deletes_removed_files_past_retention_only(tmp_path: Path) -> None:
    small_appends(tmp_path, 6)
    maintain(tmp_path, vacuum=False, compact_min_files=2)  # 6 files are now removed from the table
    assert len(parquet_files(tmp_path)) == 8
    # within retention: kept (sub-hour retention keeps the versions a reader may still use)
    kept = maintain(tmp_path, compact=False, retention=timedelta(minutes=10))
    assert kept.vacuumed_files == 0 and len(parquet_files(tmp_path)) == 8
    dry = maintain(tmp_path, compact=False, retention=timedelta(0), dry_run=True)
    assert dry.vacuumed_files == 6 and len(parquet_files(tmp_path)) == 8
    done = maintain(tmp_path, compact=False, retention=timedelta(0))
    assert done.vacuumed_files == 6 and len(parquet_files(tmp_path)) == 2
    assert pl.read_delta(str(tmp_path)).height == 60


def test_sub_hour_retention_keeps_the_version_current_at_the_window_start(tmp_path: Path) -> None:
    small_appends(tmp_path, 2, partitioned=False)
    maintain(tmp_path, vacuum=False, compact_min_files=2)  # version 2: the small files are replaced
    time.sleep(1.2)
    write_deltalake(str(tmp_path), pa.table({"part": ["a"], "k": ["x"]}), mode="overwrite")  # version 3
    report = maintain(tmp_path, compact=False, retention=timedelta(seconds=1))
    # version 2 was current when the 1 s window began: its file stays, the older two go
    assert report.vacuumed_files == 2
    assert pl.read_delta(str(tmp_path), version=2).height == 20


def test_retention_defaults_to_the_table_property(tmp_path: Path) -> None:
    write_deltalake(
        str(tmp_path),
        pa.table({"k": ["a"]}),
        configuration={"delta.deletedFileRetentionDuration": "interval 2 hours"},
    )
    assert table_retention(DeltaTable(str(tmp_path))) == timedelta(hours=2)
    write_deltalake(str(tmp_path), pa.table({"k": ["b"]}), mode="overwrite")
    assert maintain(tmp_path, compact=False).vacuumed_files == 0


def test_missing_table_is_terminal(tmp_path: Path) -> None:
    with pytest.raises(TerminalError):
        maintain(tmp_path / "nope")
