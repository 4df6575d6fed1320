"""Keeping Delta tables fast under continuous small commits: compaction, checkpoints, vacuum.

Every commit adds a JSON file to ``_delta_log`` and usually new data files. Without care a table
that takes a commit every few seconds gets slow to *load* (the log is replayed from the last
checkpoint), slow to *read* (many small files) and big on disk (rewritten files stay until
vacuumed: a silver MERGE rewrites every file holding a matched row, so with random keys each
commit leaves a dead copy of the table behind). :func:`maintain` does the three remedies in order:

1. **compact** (``optimize.compact``, or ``optimize.z_order`` when ``zorder_by`` is given): bins
   the files smaller than ``target_file_size`` of each partition into files of about that size.
2. **checkpoint** (``create_checkpoint``) so a load reads one Parquet file plus the few JSON commits
   after it, then ``cleanup_metadata`` drops log files older than ``delta.logRetentionDuration``.
3. **vacuum** in two passes:

   * *lite* (files the log marks as removed) with ``retention``. delta-rs only takes whole hours, so
     a shorter retention is done with ``retention_hours=0`` plus ``keep_versions`` = every version a
     reader could have loaded within the retention (the versions committed in the window and the one
     current at its start): their files stay. Only files the log says were removed are candidates,
     so files a concurrent writer is still writing (not in the log yet) are never touched.
   * *full* (every file the log does not reference, including ``_change_data`` files, which the
     lite pass never deletes, and orphans of failed writes) with the retention rounded *up* to whole
     hours and at least :data:`FULL_VACUUM_MIN_HOURS`: an unreferenced file younger than that may be
     part of a commit in flight.

Safe retention: longer than the longest read of the table and than the lag of any change-data-feed
reader (a CDF reader needs the files of the versions it has not read yet).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from core.errors import TerminalError, TransientError
from core.metrics import DELTA_MAINTENANCE_SECONDS

log = logging.getLogger(__name__)

#: Compaction target. A silver customer table of 1M rows (~30 columns) is ~110 MB: one or two files
#: per partition. A MERGE with random keys rewrites the whole partition anyway, so smaller files do
#: not make it cheaper (measured: 8 hash-bucket partitions cost 20-40% more CPU per MERGE). Key-local
#: workloads are the exception: Z-order on the key into ~16 MB files made a 20k-key MERGE of
#: adjacent keys 4-5x cheaper (bench notes in sinks/delta/silver.py).
DEFAULT_TARGET_FILE_SIZE = 128 * 1024 * 1024
#: The full vacuum pass never deletes an unreferenced file younger than this (a commit in flight).
FULL_VACUUM_MIN_HOURS = 1
#: Delta's default ``delta.deletedFileRetentionDuration``.
DEFAULT_RETENTION = timedelta(days=7)

_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+(\w+?)s?\s*$", re.IGNORECASE)
_UNITS = {
    "nanosecond": 1e-9,
    "microsecond": 1e-6,
    "millisecond": 1e-3,
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
}


#: The layers under a delta root, in the order ``goldstream maintain`` visits them. A table outside
#: them (a directory of its own under the root) is listed as layer ``other``.
LAYERS = ("bronze", "silver", "gold", "quarantine")


@dataclass(frozen=True)
class TableRef:
    """One Delta table found under a delta root."""

    layer: str
    """``bronze``, ``silver``, ``gold``, ``quarantine`` or ``other``: the first path component."""
    name: str
    """The table's path relative to the root, with ``/`` (``bronze/shop/public/customers``)."""
    path: Path


def find_tables(delta_root: Path) -> list[TableRef]:
    """Every Delta table (a directory holding ``_delta_log``) under ``delta_root``, by layer, then name.

    The walk does not descend into a table (its partition directories hold no tables), so its cost
    is the number of non-table directories, not of data files. A missing root holds no tables.
    """
    root = Path(delta_root)
    found: list[TableRef] = []
    for current, dirs, _files in os.walk(root):
        if "_delta_log" in dirs:
            dirs.clear()
            rel = Path(current).relative_to(root)
            # the root itself may be a table (no parts): layer "other"
            layer = rel.parts[0] if rel.parts and rel.parts[0] in LAYERS else "other"
            found.append(TableRef(layer, rel.as_posix(), Path(current)))
        else:
            dirs.sort()
    order = {layer: i for i, layer in enumerate((*LAYERS, "other"))}
    return sorted(found, key=lambda t: (order[t.layer], t.name))


def parse_interval(text: str) -> timedelta:
    """A Delta table-property interval (``"interval 15 minutes"``) as a :class:`timedelta`."""
    m = _INTERVAL.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a Delta interval: {text!r}")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2).lower()])


def table_retention(table: DeltaTable) -> timedelta:
    """The table's ``delta.deletedFileRetentionDuration`` (Delta's default: 7 days)."""
    configured = table.metadata().configuration.get("delta.deletedFileRetentionDuration")
    return parse_interval(configured) if configured else DEFAULT_RETENTION


@dataclass(frozen=True)
class MaintenancePolicy:
    """When a writer runs :func:`maintain` on its own table after a commit, and how.

    The writer checks after each of its commits: maintenance runs when ``every_commits`` commits
    have passed since the last run, or when the table holds more than ``max_files`` data files.
    """

    every_commits: int = 50
    """Checkpoints come from ``delta.checkpointInterval`` anyway; this bounds the dead copies a
    random-key MERGE leaves (one copy of the touched partitions per commit: ~110 MB per commit at
    1M rows, ~12 MB at 100k) to what 50 commits write plus the retention window. A run without
    compaction costs 0.02-0.4 s (measured), i.e. well under 1% of 50 commits."""
    max_files: int = 64
    """Files only pile up when MERGEs do not rewrite them (key-local updates, insert-only batches:
    one new file per commit and partition); past this many, compacting is worth a rewrite because a
    read and a MERGE scan pay per file."""
    target_file_size: int = DEFAULT_TARGET_FILE_SIZE
    retention: timedelta | None = None
    """Vacuum retention; None: the table's ``delta.deletedFileRetentionDuration``."""
    zorder_by: tuple[str, ...] = ()
    compact_min_files: int = 8
    """Compact only when some partition has at least this many files below the target size: a
    compaction of a partition with 2-3 files would rewrite it for almost no gain."""


@dataclass(frozen=True)
class MaintenanceReport:
    """What one :func:`maintain` call did."""

    version_before: int
    version_after: int
    files_before: int
    files_after: int
    compaction: dict[str, Any] = field(default_factory=dict)
    """delta-rs optimize metrics (``numFilesAdded``, ``numFilesRemoved``, ...); empty when skipped."""
    checkpoint_version: int | None = None
    vacuumed_files: int = 0
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)


def _small_files_per_partition(table: DeltaTable, target_file_size: int) -> int:
    """The largest number of files below ``target_file_size`` in any one partition."""
    actions = table.get_add_actions(flatten=True)
    names = actions.schema.names
    sizes = actions.column("size_bytes").to_pylist()
    parts = [c for c in names if c.startswith("partition.")]
    counts: dict[tuple[Any, ...], int] = {}
    columns = [actions.column(c).to_pylist() for c in parts]
    for i, size in enumerate(sizes):
        if size < target_file_size:
            key = tuple(col[i] for col in columns)
            counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


def _keep_versions(table: DeltaTable, retention: timedelta) -> list[int]:
    """Versions a reader may still be reading: committed within ``retention``, and the one current
    at the start of that window."""
    start_ms = (time.time() - retention.total_seconds()) * 1000
    limit = 64
    while True:
        history = table.history(limit)
        keep = [int(h["version"]) for h in history if float(h.get("timestamp", 0)) >= start_ms]
        older = [int(h["version"]) for h in history if float(h.get("timestamp", 0)) < start_ms]
        if older or len(history) < limit:
            if older:
                keep.append(max(older))
            return sorted(set(keep))
        limit *= 4


def _vacuum(table: DeltaTable, retention: timedelta, *, dry_run: bool, full: bool) -> int:
    hours = retention.total_seconds() / 3600
    removed: list[str] = []
    if hours == int(hours):
        removed += table.vacuum(retention_hours=int(hours), dry_run=dry_run, enforce_retention_duration=False)
    else:
        removed += table.vacuum(
            retention_hours=0,
            dry_run=dry_run,
            enforce_retention_duration=False,
            keep_versions=_keep_versions(table, retention),
        )
    if full:
        full_hours = max(FULL_VACUUM_MIN_HOURS, math.ceil(hours))
        removed += table.vacuum(
            retention_hours=full_hours, dry_run=dry_run, enforce_retention_duration=False, full=True
        )
    return len(set(removed))


def maintain(
    table_path: str | Path,
    *,
    target_file_size: int = DEFAULT_TARGET_FILE_SIZE,
    zorder_by: Sequence[str] = (),
    retention: timedelta | None = None,
    compact: bool = True,
    compact_min_files: int = 8,
    checkpoint: bool = True,
    vacuum: bool = True,
    full_vacuum: bool = True,
    dry_run: bool = False,
    layer: str = "delta",
) -> MaintenanceReport:
    """Compact, checkpoint and vacuum the Delta table at ``table_path``.

    ``zorder_by`` (e.g. ``["source_key"]``) replaces compaction by a Z-order rewrite of every file,
    which clusters keys so MERGEs of key-local batches can skip files (no help for random keys).
    Compaction runs only when some partition has ``compact_min_files`` files below the target.
    ``retention`` defaults to the table's ``delta.deletedFileRetentionDuration``. ``dry_run`` only
    counts what vacuum would delete (compaction and checkpoint are skipped).

    Raises :class:`TerminalError` when there is no table, :class:`TransientError` when a commit
    conflicts or the storage fails (run it again).
    """
    started = time.perf_counter()
    steps: dict[str, float] = {}
    uri = str(table_path)
    try:
        table = DeltaTable(uri)
    except TableNotFoundError as exc:
        raise TerminalError(f"maintain: no Delta table at {uri}") from exc
    try:
        version_before = table.version()
        files_before = len(table.file_uris())
        compaction: dict[str, Any] = {}
        if compact and not dry_run:
            t0 = time.perf_counter()
            if zorder_by:
                compaction = table.optimize.z_order(list(zorder_by), target_size=target_file_size)
            elif _small_files_per_partition(table, target_file_size) >= compact_min_files:
                compaction = table.optimize.compact(target_size=target_file_size)
            steps["compact"] = time.perf_counter() - t0
        checkpoint_version = None
        if checkpoint and not dry_run:
            t0 = time.perf_counter()
            table.update_incremental()
            table.create_checkpoint()
            table.cleanup_metadata()
            checkpoint_version = table.version()
            steps["checkpoint"] = time.perf_counter() - t0
        vacuumed = 0
        if vacuum:
            t0 = time.perf_counter()
            keep = retention if retention is not None else table_retention(table)
            vacuumed = _vacuum(table, keep, dry_run=dry_run, full=full_vacuum)
            steps["vacuum"] = time.perf_counter() - t0
        table.update_incremental()
        files_after = len(table.file_uris())
        version_after = table.version()
    except CommitFailedError as exc:
        raise TransientError(f"maintain {uri}: a concurrent commit conflicted: {exc}") from exc
    except (OSError, DeltaError) as exc:
        raise TransientError(f"maintain {uri}: {exc}") from exc
    for step, seconds in steps.items():
        DELTA_MAINTENANCE_SECONDS.labels(layer=layer, step=step).observe(seconds)
    report = MaintenanceReport(
        version_before=version_before,
        version_after=version_after,
        files_before=files_before,
        files_after=files_after,
        compaction=compaction,
        checkpoint_version=checkpoint_version,
        vacuumed_files=vacuumed,
        seconds=time.perf_counter() - started,
        step_seconds=steps,
    )
    log.info(
        "maintained %s: files %d -> %d, vacuumed %d, %.2fs %s",
        uri,
        files_before,
        files_after,
        vacuumed,
        report.seconds,
        {k: round(v, 3) for k, v in steps.items()},
    )
    return report
