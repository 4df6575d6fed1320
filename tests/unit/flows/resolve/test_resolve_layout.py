"""A recovery store remembers which resolution wrote it; the other one refuses to resume it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.errors import ConfigError
from flows.resolve.layout import MARKER, check_layout, stored_layout


def test_a_new_store_records_its_layout_and_refuses_another(tmp_path: Path) -> None:
    assert stored_layout(tmp_path) is None
    check_layout(tmp_path, "staged", 4)
    assert (tmp_path / MARKER).is_file()
    assert stored_layout(tmp_path) == ("staged", 4)
    check_layout(tmp_path, "staged", 4)  # the same: fine
    with pytest.raises(ConfigError, match=r"staged with 4 key groups.*single"):
        check_layout(tmp_path, "single", 4)
    with pytest.raises(ConfigError, match="--reset"):
        check_layout(tmp_path, "staged", 8)


def _store_with_steps(path: Path, *steps: str) -> Path:
    path.mkdir()
    with sqlite3.connect(path / "part-0.sqlite3") as db:
        db.execute("CREATE TABLE snaps (step_id TEXT, state_key TEXT, snap_epoch INTEGER, ser_change BLOB)")
        db.executemany("INSERT INTO snaps VALUES (?, 'k', 1, x'00')", [(s,) for s in steps])
    (path / "part-1.sqlite3").touch()  # an empty partition (no tables yet)
    return path


def test_a_store_from_before_the_marker_is_told_by_its_step_ids(tmp_path: Path) -> None:
    single = _store_with_steps(tmp_path / "a", "ingest.bronze_silver", "ingest.resolve.golden")
    assert stored_layout(single) == ("single", None)
    with pytest.raises(ConfigError, match="single resolution"):
        check_layout(single, "staged", 4)
    check_layout(single, "single", 4)
    assert stored_layout(single) == ("single", None) and (single / MARKER).is_file()

    staged = _store_with_steps(tmp_path / "b", "ingest.resolve.records", "ingest.resolve.golden")
    assert stored_layout(staged) == ("staged", None)
    with pytest.raises(ConfigError):
        check_layout(staged, "single", 4)
    check_layout(staged, "staged", 4)  # key groups unknown: trusted, then recorded
    assert stored_layout(staged) == ("staged", 4)

    none = _store_with_steps(tmp_path / "c", "ingest.bronze_silver")
    assert stored_layout(none) is None
    check_layout(none, "single", 16)
    assert stored_layout(none) == ("single", None)
