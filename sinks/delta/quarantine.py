"""The quarantine table: every message or record that could not be processed, with why and where.

One table for the whole deployment, partitioned by ``stage`` (decode, mapping, ...). Keys and values
are kept as raw bytes (they may not be valid UTF-8) plus a readable text preview.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from core.events import Rejected

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
