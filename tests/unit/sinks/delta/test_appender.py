from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from core.errors import TransientError
from sinks.delta.appender import APPEND_MAINTENANCE, IdempotentAppender
from sinks.delta.maintenance import MaintenancePolicy

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


# -- automatic maintenance ------------------------------------------------------------------------

PARTED = pa.schema(
    [pa.field("offset", pa.int64(), nullable=False), pa.field("day", pa.string()), pa.field("v", pa.string())]
)


def parted_rows(offsets: range, days: list[str]) -> pa.Table:
    return pa.table(
        {
            "offset": list(offsets),
            "day": [days[o % len(days)] for o in offsets],
            "v": [f"r{o}" for o in offsets],
        },
        schema=PARTED,
    )


def test_default_policy_is_on_and_leaves_small_tables_alone(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA)
    assert app.maintenance == APPEND_MAINTENANCE
    results = [app.append(rows(range(i * 10, i * 10 + 10)), app_id="p", version=i * 10 + 9) for i in range(5)]
    assert all(r.maintenance is None for r in results)
    assert len(DeltaTable(str(tmp_path / "t")).file_uris()) == 5


def test_every_commits_compacts_and_checkpoints(tmp_path: Path) -> None:
    policy = MaintenancePolicy(every_commits=10, compact_min_files=4)
    app = IdempotentAppender(tmp_path / "t", SCHEMA, maintenance=policy)
    reports = []
    for i in range(25):
        r = app.append(rows(range(i * 10, i * 10 + 10)), app_id="p", version=i * 10 + 9)
        reports.append(r.maintenance)
    ran = [i for i, rep in enumerate(reports) if rep is not None]
    assert ran == [9, 19]  # the 10th and 20th commit
    first = reports[9]
    assert first is not None and first.files_before == 10 and first.files_after == 1
    assert first.checkpoint_version is not None
    table = DeltaTable(str(tmp_path / "t"))
    assert len(table.file_uris()) == 1 + 5  # compacted at commit 20, then 5 more appends
    assert (tmp_path / "t" / "_delta_log" / "_last_checkpoint").exists()
    df = pl.read_delta(str(tmp_path / "t"))
    assert sorted(df["offset"].to_list()) == list(range(250))  # nothing lost or doubled
    # the transaction versions survive compaction: a replay still adds nothing
    again = app.append(rows(range(240, 250)), app_id="p", version=249)
    assert again.rows_written == 0 and again.rows_skipped == 10


def test_max_files_counts_files_added_since_the_last_run(tmp_path: Path) -> None:
    # each append spreads over 4 partitions: 4 new files per commit
    days = ["d1", "d2", "d3", "d4"]
    policy = MaintenancePolicy(every_commits=1000, max_files=10, compact_min_files=2)
    app = IdempotentAppender(tmp_path / "t", PARTED, partition_by=["day"], maintenance=policy)
    ran = []
    for i in range(7):
        r = app.append(parted_rows(range(i * 8, i * 8 + 8), days), app_id="p", version=i * 8 + 7)
        if r.maintenance is not None:
            ran.append(i)
            assert r.maintenance.files_after == 4  # one per partition
    assert ran == [2, 5]  # 12 files > 10 at the 3rd commit; 4 + 12 at the 6th
    assert sorted(pl.read_delta(str(tmp_path / "t"))["offset"].to_list()) == list(range(56))


def test_a_large_existing_table_does_not_trigger_every_commit(tmp_path: Path) -> None:
    # 30 files from earlier writers, more than max_files: only new files count
    old = IdempotentAppender(tmp_path / "t", SCHEMA, maintenance=None)
    for i in range(30):
        old.append(rows(range(i, i + 1)), app_id="old", version=i)
    policy = MaintenancePolicy(every_commits=1000, max_files=5, compact_min_files=1000)
    app = IdempotentAppender(tmp_path / "t", SCHEMA, maintenance=policy)
    results = [app.append(rows(range(i, i + 1)), app_id="new", version=i) for i in range(6)]
    assert [r.maintenance is not None for r in results] == [False] * 5 + [True]


def test_no_policy_never_maintains(tmp_path: Path) -> None:
    app = IdempotentAppender(tmp_path / "t", SCHEMA, maintenance=None)
    for i in range(60):
        assert app.append(rows(range(i, i + 1)), app_id="p", version=i).maintenance is None
    assert len(DeltaTable(str(tmp_path / "t")).file_uris()) == 60


def test_failed_maintenance_does_not_fail_the_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sinks.delta.appender as appender

    def broken(*_a: object, **_k: object) -> None:
        raise TransientError("storage hiccup")

    monkeypatch.setattr(appender, "maintain", broken)
    app = IdempotentAppender(tmp_path / "t", SCHEMA, maintenance=MaintenancePolicy(every_commits=2))
    results = [app.append(rows(range(i, i + 1)), app_id="p", version=i) for i in range(4)]
    assert all(r.rows_written == 1 and r.maintenance is None for r in results)
    assert pl.read_delta(str(tmp_path / "t")).height == 4


# -- background maintenance -----------------------------------------------------------------------


def test_background_maintenance_compacts_while_appends_go_on(tmp_path: Path) -> None:
    policy = MaintenancePolicy(every_commits=5, compact_min_files=4)
    app = IdempotentAppender(tmp_path / "t", SCHEMA, maintenance=policy, background_maintenance=True)
    results = [
        app.append(rows(range(i * 10, i * 10 + 10)), app_id="p", version=i * 10 + 9) for i in range(23)
    ]
    app.close()  # waits for the run in progress
    assert all(r.rows_written == 10 and r.maintenance is None for r in results)  # reports stay off the path
    table = DeltaTable(str(tmp_path / "t"))
    assert len(table.file_uris()) < 23  # compactions landed between the appends
    assert table.transaction_version("p") == 229
    df = pl.read_delta(str(tmp_path / "t"))
    assert sorted(df["offset"].to_list()) == list(range(230))  # nothing lost or doubled
    again = app.append(rows(range(220, 230)), app_id="p", version=229)
    assert again.rows_written == 0 and again.rows_skipped == 10
    app.close()


def test_background_maintenance_failure_is_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sinks.delta.appender as appender

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("bug in maintenance")

    monkeypatch.setattr(appender, "maintain", broken)
    policy = MaintenancePolicy(every_commits=2)
    app = IdempotentAppender(tmp_path / "t", SCHEMA, maintenance=policy, background_maintenance=True)
    results = [app.append(rows(range(i, i + 1)), app_id="p", version=i) for i in range(4)]
    app.close()
    assert all(r.rows_written == 1 for r in results)
    assert pl.read_delta(str(tmp_path / "t")).height == 4
    assert "automatic maintenance failed" in caplog.text
