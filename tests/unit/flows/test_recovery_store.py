"""Snapshots an interrupted run left at or after the resume epoch are discarded before the next run.

The runs are real Bytewax runs (in process, SQLite recovery store); the interrupted execution is
simulated by adding the snapshot it would have left: a key's state written for an epoch the
dataflow as a whole never finished.
"""

from __future__ import annotations

import pickle
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.engine.recovery import discard_abandoned_snapshots, resume_epoch


def counting(items: list[object], out: list[tuple[str, int]]) -> Dataflow:
    """Counts each item (a key) as it arrives: the count is the step's state."""
    flow = Dataflow("count")
    keyed = op.key_on("key", op.input("inp", flow, TestingSource(items)), str)

    def count(n: int | None, _item: object) -> tuple[int, int]:
        return (n or 0) + 1, (n or 0) + 1

    op.output("out", op.stateful_map("count", keyed, count), TestingSink(out))
    return flow


def run(store: Path, items: list[object]) -> list[tuple[str, int]]:
    """One execution, as ``flows.engine.runner.run_in_process`` starts it: the store is cleaned first."""
    out: list[tuple[str, int]] = []
    discard_abandoned_snapshots(store)
    recovery = RecoveryConfig(str(store))  # type: ignore[no-untyped-call]
    run_main(counting(items, out), epoch_interval=timedelta(0), recovery_config=recovery)  # type: ignore[no-untyped-call]
    return out


def snapshots(store: Path) -> list[tuple[str, str, int]]:
    with closing(sqlite3.connect(store / "part-0.sqlite3")) as conn:
        rows = conn.execute("SELECT step_id, state_key, snap_epoch FROM snaps ORDER BY 1, 2, 3").fetchall()
    return [(str(s), str(k), int(e)) for s, k, e in rows]


def last_execution(store: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(store / "part-0.sqlite3")) as conn:
        ex, epoch = conn.execute("SELECT ex_num, resume_epoch FROM exs ORDER BY ex_num DESC").fetchone()
    return int(ex), int(epoch)


def test_a_fresh_store_has_no_resume_epoch_and_nothing_to_discard(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)  # type: ignore[no-untyped-call]
    assert resume_epoch(tmp_path) is None
    assert discard_abandoned_snapshots(tmp_path) == 0


def test_resume_epoch_is_the_one_bytewax_resumes_from(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)  # type: ignore[no-untyped-call]
    assert run(tmp_path, ["a", "a"]) == [("a", 1), ("a", 2)]
    expected = resume_epoch(tmp_path)
    assert expected is not None and expected > 1
    assert run(tmp_path, ["a", "a", "b"]) == [("b", 1)]
    assert last_execution(tmp_path) == (1, expected)


def test_an_abandoned_snapshot_is_discarded_so_a_later_run_resumes_from_the_right_state(
    tmp_path: Path,
) -> None:
    init_db_dir(tmp_path, 1)  # type: ignore[no-untyped-call]
    assert run(tmp_path, ["a", "a"]) == [("a", 1), ("a", 2)]
    epoch = resume_epoch(tmp_path)
    assert epoch is not None
    (step,) = {s for s, k, _e in snapshots(tmp_path) if k == "a"}
    # An execution that resumed here, counted "a" to 100 in epoch+1 and crashed before the
    # dataflow finished that epoch: its snapshot outlives it.
    with closing(sqlite3.connect(tmp_path / "part-0.sqlite3")) as conn, conn:
        conn.execute(
            "INSERT INTO snaps (created_at, step_id, state_key, snap_epoch, ser_change) "
            "VALUES (datetime('now'), ?, 'a', ?, ?)",
            (step, epoch + 1, pickle.dumps(100)),
        )
    kept = [s for s in snapshots(tmp_path) if s[2] < epoch]

    assert discard_abandoned_snapshots(tmp_path) == 1
    assert snapshots(tmp_path) == kept

    # The next run moves past that epoch without touching "a" and stops without an EOF (which
    # would snapshot every key), as a streaming flow does; the one after resumes "a" from what the
    # dataflow really counted (2). Left in place, the abandoned snapshot is what it loads: 101.
    items: list[object] = ["a", "a", "b", "b", "b", "b", TestingSource.ABORT(), "a"]
    assert run(tmp_path, items) == [("b", 1), ("b", 2), ("b", 3), ("b", 4)]
    assert run(tmp_path, items) == [("a", 3)]
