"""The quarantine table: every message or record that could not be processed, with why and where.

One table for the whole deployment, partitioned by ``stage`` (decode, mapping, validation, ...).
Keys and values are kept as raw bytes (they may not be valid UTF-8) plus a readable text preview.
A row is identified by its stage and source position (topic, partition, offset). ``replayed`` turns
true once ``goldstream dlq replay`` has re-published the message (:func:`mark_replayed`).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from core.errors import TerminalError, TransientError
from core.events import Rejected

log = logging.getLogger(__name__)

UTC_US = pa.timestamp("us", tz="UTC")
PREVIEW_CHARS = 2000

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("kafka_ts", UTC_US, nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("value_preview", pa.string()),
        pa.field("quarantined_at", UTC_US, nullable=False),
        pa.field("replayed", pa.bool_(), nullable=False),
    ]
)
QUARANTINE_PARTITION_BY = ["stage"]


def quarantine_path(root: Path) -> Path:
    """Where the quarantine table lives."""
    return root / "quarantine"


def quarantine_app_id(stage: str, topic: str, partition: int) -> str:
    """Application-transaction id of one stage's quarantine stream for one Kafka partition."""
    return f"goldstream.quarantine.{stage}:{topic}:{partition}"


def _preview(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[: PREVIEW_CHARS * 4].decode("utf-8", errors="replace")[:PREVIEW_CHARS]


def rejects_to_arrow(rejects: Sequence[Rejected], *, now: dt.datetime | None = None) -> pa.Table:
    """Columnar quarantine rows for ``rejects``."""
    now = now or dt.datetime.now(dt.UTC)
    n = len(rejects)
    return pa.Table.from_arrays(
        [
            pa.array([r.stage for r in rejects], pa.string()),
            pa.array([r.reason for r in rejects], pa.string()),
            pa.array([r.detail for r in rejects], pa.string()),
            pa.array([r.topic for r in rejects], pa.string()),
            pa.array([r.partition for r in rejects], pa.int32()),
            pa.array([r.offset for r in rejects], pa.int64()),
            pa.array([r.kafka_ts_ms * 1000 for r in rejects], pa.int64()).cast(UTC_US),
            pa.array([r.key for r in rejects], pa.binary()),
            pa.array([r.value for r in rejects], pa.binary()),
            pa.array([_preview(r.value) for r in rejects], pa.string()),
            pa.array([int(now.timestamp() * 1_000_000)] * n, pa.int64()).cast(UTC_US),
            pa.array([False] * n, pa.bool_()),
        ],
        schema=QUARANTINE_SCHEMA,
    )


#: The columns that identify a quarantine row: its stage and its source position.
POSITION = ("stage", "topic", "partition", "offset")


@dataclass(frozen=True)
class QuarantineFilter:
    """Which quarantine rows to read: each non-empty tuple must contain the row's value."""

    stages: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    include_replayed: bool = False
    """Also rows already replayed (``list`` shows them on request; ``replay`` never re-sends them)."""

    def expr(self) -> pl.Expr:
        """The filter as a polars expression (``stage`` is the partition column: pruned on scan)."""
        cond = pl.lit(True)
        for column, values in (("stage", self.stages), ("reason", self.reasons), ("topic", self.topics)):
            if values:
                cond = cond & pl.col(column).is_in(list(values))
        if not self.include_replayed:
            cond = cond & ~pl.col("replayed")
        return cond


def read_quarantine(
    root: Path, flt: QuarantineFilter = QuarantineFilter(), *, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """Quarantine rows matching ``flt`` in source order (topic, partition, offset, stage).

    ``columns`` limits what is read (the raw ``key``/``value`` bytes can be large). No table yet (nothing
    was ever quarantined) reads as no rows.
    """
    path = quarantine_path(root)
    names = list(columns) if columns is not None else QUARANTINE_SCHEMA.names
    unknown = [c for c in names if c not in QUARANTINE_SCHEMA.names]
    if unknown:
        raise ValueError(f"not quarantine columns: {unknown} (columns: {QUARANTINE_SCHEMA.names})")
    if not DeltaTable.is_deltatable(str(path)):
        return pl.DataFrame(schema=pl.DataFrame(QUARANTINE_SCHEMA.empty_table()).select(names).schema)
    try:
        frame = pl.scan_delta(str(path)).filter(flt.expr()).select(names)
        return frame.collect().sort([c for c in ("topic", "partition", "offset", "stage") if c in names])
    except (OSError, DeltaError, pl.exceptions.ComputeError) as exc:
        raise TransientError(f"reading the quarantine table at {path} failed: {exc}") from exc


def mark_replayed(
    root: Path,
    positions: pl.DataFrame,
    *,
    max_attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Set ``replayed`` on the not-yet-replayed rows at ``positions`` (columns :data:`POSITION`).

    One MERGE (one commit). The dataflow may append to the table at the same moment: a conflicting
    commit is retried with backoff. Returns the number of rows updated (a row already marked is not
    counted again, so a repeated call returns 0).
    """
    if positions.height == 0:
        return 0
    path = quarantine_path(root)
    source = positions.select(
        pl.col("stage").cast(pl.String),
        pl.col("topic").cast(pl.String),
        pl.col("partition").cast(pl.Int32),
        pl.col("offset").cast(pl.Int64),
    ).unique()
    stages = ", ".join("'" + st.replace("'", "''") + "'" for st in source["stage"].unique().sort())
    predicate = (
        f"t.stage IN ({stages}) AND t.stage = s.stage AND t.topic = s.topic"
        ' AND t."partition" = s."partition" AND t."offset" = s."offset" AND NOT t.replayed'
    )
    for attempt in range(1, max_attempts + 1):
        try:
            table = DeltaTable(str(path))
            metrics = (
                table.merge(
                    source.to_arrow(),
                    predicate,
                    source_alias="s",
                    target_alias="t",
                    commit_properties=CommitProperties(custom_metadata={"goldstream.writer": "dlq-replay"}),
                )
                .when_matched_update({"replayed": "true"})
                .execute()
            )
            return int(metrics.get("num_target_rows_updated", 0))
        except TableNotFoundError as exc:
            raise TerminalError(f"no quarantine table at {path}") from exc
        except CommitFailedError as exc:
            if attempt == max_attempts:
                raise TransientError(
                    f"marking {source.height} quarantine row(s) replayed: still conflicting after"
                    f" {attempt} attempts: {exc}"
                ) from exc
            delay = min(2.0, 0.05 * 2 ** (attempt - 1))
            log.info("quarantine: concurrent commit, retrying the replayed mark in %.2fs", delay)
            sleep(random.uniform(delay / 2, delay))
        except (OSError, DeltaError) as exc:
            raise TransientError(f"marking quarantine rows replayed at {path} failed: {exc}") from exc
    raise AssertionError("unreachable")  # the loop returns or raises
