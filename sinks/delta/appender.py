"""Exactly-once-in-effect appends to a Delta table.

Kafka and Debezium deliver at least once, and a restarted dataflow replays from its last recovery
snapshot. Each append therefore carries a Delta *application transaction*: ``app_id`` names the
stream (one per table and Kafka partition) and ``version`` is the last Kafka offset the commit
covers. Before appending we read the committed version from the same :class:`DeltaTable` object we
commit through and drop rows whose offset is not newer, so a replayed batch adds nothing twice.
The check and the commit cannot interleave with another writer of the same ``app_id`` because only
the worker that owns a Kafka partition writes that partition's stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from core.errors import TransientError

#: Table properties for append-heavy change logs: frequent checkpoints keep table loads fast under
#: many small commits; the change data feed lets readers consume incrementally.
DEFAULT_CONFIGURATION: dict[str, str | None] = {
    "delta.checkpointInterval": "50",
    "delta.enableChangeDataFeed": "true",
}


@dataclass(frozen=True)
class AppendResult:
    """What one append did."""

    rows_written: int
    rows_skipped: int
    """Rows at or below the committed version: already in the table from an earlier attempt."""
    version: int | None
    """The table version created, or None when nothing was written."""
    seconds: float


class IdempotentAppender:
    """Appends Arrow tables to one Delta table, each under an application transaction id."""

    def __init__(
        self,
        uri: str | Path,
        schema: pa.Schema,
        *,
        partition_by: list[str] | None = None,
        offset_column: str = "offset",
        configuration: dict[str, str | None] | None = None,
    ) -> None:
        self.uri = str(uri)
        self.schema = schema
        self.partition_by = partition_by or []
        self.offset_column = offset_column
        self.configuration = DEFAULT_CONFIGURATION if configuration is None else configuration
        self._table: DeltaTable | None = None

    def _open(self) -> DeltaTable:
        if self._table is not None:
            return self._table
        try:
            self._table = DeltaTable(self.uri)
        except TableNotFoundError:
            if "://" not in self.uri:
                Path(self.uri).mkdir(parents=True, exist_ok=True)
            try:
                self._table = DeltaTable.create(
                    self.uri,
                    self.schema,
                    partition_by=self.partition_by or None,
                    mode="ignore",  # another worker may create the same table at the same moment
                    configuration=self.configuration,
                )
            except DeltaError:
                self._table = DeltaTable(self.uri)
        return self._table

    def committed_version(self, app_id: str) -> int | None:
        """The last version committed under ``app_id`` (a Kafka offset), or None."""
        table = self._open()
        table.update_incremental()
        version: Any = table.transaction_version(app_id)
        return None if version is None else int(version)

    def append(self, data: pa.Table, *, app_id: str, version: int) -> AppendResult:
        """Append the rows of ``data`` newer than the committed version of ``app_id``.

        ``version`` must be the greatest offset ``data`` covers (it may exceed the last row's offset
        when the tail of the batch held no rows for this table). Raises :class:`TransientError` when
        the commit keeps failing; the caller retries the whole batch, which is safe.
        """
        started = time.perf_counter()
        if data.num_rows == 0:
            return AppendResult(0, 0, None, 0.0)
        table = self._open()
        try:
            table.update_incremental()
            committed: Any = table.transaction_version(app_id)
        except DeltaError as exc:
            self._table = None
            raise TransientError(f"{self.uri}: reading the transaction log failed: {exc}") from exc
        skipped = 0
        if committed is not None:
            if int(committed) >= version:
                return AppendResult(0, data.num_rows, None, time.perf_counter() - started)
            offsets = data[self.offset_column]
            # The usual case (the previous batch was committed, this one is new) needs no filter:
            # filtering copies every column of the batch, the most expensive step after the write.
            all_newer = offsets.null_count == 0 and pc.min(offsets).as_py() > int(committed)
            if not all_newer:
                keep = pc.greater(offsets, pa.scalar(int(committed), pa.int64()))
                newer = data.filter(keep)
                skipped = data.num_rows - newer.num_rows
                data = newer
                if data.num_rows == 0:
                    return AppendResult(0, skipped, None, time.perf_counter() - started)
        props = CommitProperties(
            app_transactions=[Transaction(app_id=app_id, version=version)],
            custom_metadata={"goldstream.app_id": app_id, "goldstream.version": str(version)},
        )
        try:
            write_deltalake(
                table,
                data,
                mode="append",
                partition_by=self.partition_by or None,
                commit_properties=props,
            )
        except (CommitFailedError, OSError, DeltaError) as exc:
            # The commit may or may not have landed; the next attempt re-reads the transaction
            # version, so retrying cannot duplicate rows.
            self._table = None
            raise TransientError(f"{self.uri}: append under {app_id}@{version} failed: {exc}") from exc
        return AppendResult(data.num_rows, skipped, table.version(), time.perf_counter() - started)
