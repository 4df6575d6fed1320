"""Keeping Bytewax 0.21's SQLite recovery store consistent across crashes.

Bytewax snapshots a stateful step's key at the end of every epoch in which the key was touched
(table ``snaps``: step, key, epoch) and, on a restart, loads per key the newest snapshot *before*
the resume epoch, which it derives from the last execution's recorded progress (``exs`` and
``fronts``; ``src/recovery.rs`` in bytewax v0.21.1). A crash can leave snapshots *at or after* that
resume epoch: a step had closed an epoch the dataflow as a whole had not finished. The next
execution redoes those epochs and overwrites the snapshots of the keys it touches again, but a key
it does not touch in that epoch keeps the abandoned snapshot, and the restart after that loads it.
That step's state then holds changes that the other steps' states and the source's offsets do not
(the ingest crash test caught the resolver "knowing" records whose golden batches had never
reached the gold writer, so gold never got them).

:func:`discard_abandoned_snapshots` deletes such snapshots before a run. They are never loaded by
the run about to start (Bytewax takes only snapshots before the resume epoch), so deleting them
loses nothing; the new execution writes its own for those epochs.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

log = logging.getLogger(__name__)


def _partitions(recovery_dir: Path) -> list[Path]:
    return sorted(recovery_dir.glob("part-*.sqlite3"))


def resume_epoch(recovery_dir: Path) -> int | None:
    """The epoch the next run will resume from (None: nothing recorded yet, a fresh start).

    Bytewax's rule: take the last execution; each of its workers has progressed to the largest
    frontier it recorded, or to the execution's resume epoch if it recorded none; the dataflow
    resumes from the smallest of these.
    """
    exs: list[tuple[int, int, int]] = []
    fronts: list[tuple[int, int, int]] = []
    for part in _partitions(recovery_dir):
        with closing(sqlite3.connect(part, timeout=30)) as conn:
            exs += conn.execute("SELECT ex_num, worker_count, resume_epoch FROM exs").fetchall()
            fronts += conn.execute("SELECT ex_num, worker_index, worker_frontier FROM fronts").fetchall()
    if not exs:
        return None
    last = max(ex for ex, _count, _epoch in exs)
    progress: dict[int, int] = {}
    for ex, count, epoch in exs:
        if ex == last:
            for worker in range(count):
                progress[worker] = max(progress.get(worker, epoch), epoch)
    for ex, worker, frontier in fronts:
        if ex == last:
            progress[worker] = max(progress.get(worker, frontier), frontier)
    return min(progress.values())


def discard_abandoned_snapshots(recovery_dir: Path) -> int:
    """Delete the snapshots at or after the resume epoch (see the module docstring); their count.

    Run it before the dataflow starts, in every process of a cluster: no process writes snapshots
    before all of them have joined, so none of the new execution's snapshots can be deleted.
    """
    epoch = resume_epoch(recovery_dir)
    if epoch is None:
        return 0
    deleted = 0
    for part in _partitions(recovery_dir):
        with closing(sqlite3.connect(part, timeout=30)) as conn, conn:
            deleted += conn.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (epoch,)).rowcount
    if deleted:
        log.info(
            "recovery store %s: discarded %d snapshot(s) of epochs >= %d left by an interrupted run",
            recovery_dir,
            deleted,
            epoch,
        )
    return deleted
