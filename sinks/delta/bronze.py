"""The bronze layer: one append-only Delta change log per source table.

Layout: ``<delta_root>/bronze/<system>/<schema>/<table>``, partitioned by ``ingest_date`` (UTC) so
retention and incremental reads work by day. Every row keeps its Kafka position and the raw
Debezium envelope, so any downstream value can be traced back to the exact message.

The row images (``before``/``after``) are stored once, inside ``envelope``, not again as columns of
their own: they are most of a change's bytes, and writing them twice cost ~40 % of the Parquet
write (see bench/README.md). Readers take them from the envelope (``$.after.<column>``). The
canonical mapping still gets them as columns: :func:`batch_to_arrow` adds them (``images=True``)
to the in-memory rows, and the writers store only :data:`BRONZE_SCHEMA`'s columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import ColumnProperties, WriterProperties

from core.events import ChangeBatch

UTC_US = pa.timestamp("us", tz="UTC")

BRONZE_SCHEMA = pa.schema(
    [
        pa.field("system", pa.string(), nullable=False),
        pa.field("db", pa.string(), nullable=False),
        pa.field("schema", pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),
        pa.field("op", pa.string(), nullable=False),
        pa.field("key", pa.string()),
        pa.field("lsn", pa.int64()),
        pa.field("tx_id", pa.int64()),
        pa.field("source_ts", UTC_US, nullable=False),
        pa.field("connector_ts", UTC_US, nullable=False),
        pa.field("snapshot", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("kafka_ts", UTC_US, nullable=False),
        pa.field("ingested_at", UTC_US, nullable=False),
        pa.field("envelope", pa.string(), nullable=False),
        pa.field("ingest_date", pa.date32(), nullable=False),
    ]
)
BRONZE_PARTITION_BY = ["ingest_date"]

#: The row images as JSON text: part of the mapping input, not stored (the envelope holds them).
IMAGE_FIELDS = (pa.field("before", pa.string()), pa.field("after", pa.string()))

#: Parquet settings of the bronze tables: the envelope (most of each row) is unique text, so a
#: dictionary never pays and min/max statistics of JSON documents prune nothing.
BRONZE_WRITER_PROPERTIES = WriterProperties(
    compression="SNAPPY",
    column_properties={"envelope": ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE")},
)


def bronze_path(root: Path, system: str, schema: str, table: str) -> Path:
    """Where the bronze table of one source table lives."""
    return root / "bronze" / system / (schema or "default") / table


def bronze_app_id(topic: str, partition: int) -> str:
    """The Delta application-transaction id of one Kafka partition's stream into bronze."""
    return f"goldstream.bronze:{topic}:{partition}"


def _text(values: Sequence[bytes | None]) -> pa.Array:
    # Built as binary then cast: the cast validates UTF-8 for the whole column in C.
    return pa.array(values, pa.binary()).cast(pa.string())


def _strings(values: Sequence[str]) -> pa.Array:
    # A topic carries one table, so system/db/schema/table (and usually snapshot) hold one value
    # per batch: repeating it is far cheaper than converting every Python string.
    if values and values.count(values[0]) == len(values):
        return _repeat(values[0], len(values), pa.string())
    return pa.array(values, pa.string())


def _repeat(value: object, n: int, type_: pa.DataType) -> pa.Array:
    # The scalar is taken from a one-element array: pa.scalar() costs ~0.5 ms a call (it probes
    # for pandas each time), ~30x more than this, and a batch needs ten of them.
    return pa.repeat(pa.array([value], type_)[0], n)


def _ts(values: Sequence[int], scale: int = 1) -> pa.Array:
    arr = pa.array(values, pa.int64())
    if scale != 1:
        arr = pc.multiply(arr, pa.array([scale], pa.int64())[0])
    return arr.cast(UTC_US)


def table_groups(batch: ChangeBatch) -> dict[tuple[str, str, str], list[int] | None]:
    """Row indices per source table ``(system, schema, table)``; ``None`` means "all rows".

    A Debezium topic carries one table, so the common case costs a set of one element.
    """
    keys = set(zip(batch.system, batch.schema, batch.table, strict=True))
    if len(keys) <= 1:
        return {k: None for k in keys}
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, k in enumerate(zip(batch.system, batch.schema, batch.table, strict=True)):
        groups.setdefault(k, []).append(i)
    return dict(groups)


def batch_to_arrow(
    batch: ChangeBatch,
    rows: list[int] | None = None,
    *,
    now: dt.datetime | None = None,
    images: bool = True,
) -> pa.Table:
    """Columnar bronze rows for ``batch`` (or only the given row indices, all of one table).

    The columns are :data:`BRONZE_SCHEMA`'s, followed with ``images`` by ``before`` and ``after``
    (:data:`IMAGE_FIELDS`, the canonical mapping's input; the bronze writers do not store them).
    """
    now = now or dt.datetime.now(dt.UTC)
    n = len(batch)
    now_us = int(now.timestamp() * 1_000_000)
    columns = [
        _strings(batch.system),
        _strings(batch.db),
        _strings(batch.schema),
        _strings(batch.table),
        pa.array(batch.op, pa.string()),
        _text(batch.key),
        pa.array(batch.lsn, pa.int64()),
        pa.array(batch.tx_id, pa.int64()),
        _ts(batch.source_ts_us),
        _ts(batch.connector_ts_us),
        _strings(batch.snapshot),
        _repeat(batch.topic, n, pa.string()),
        _repeat(batch.partition, n, pa.int32()),
        pa.array(batch.offset, pa.int64()),
        _ts(batch.kafka_ts_ms, 1000),
        _repeat(now_us, n, pa.int64()).cast(UTC_US),
        _text(batch.envelope),
        _repeat(now.date(), n, pa.date32()),
    ]
    schema = BRONZE_SCHEMA
    if images:
        columns += [_text(batch.before), _text(batch.after)]
        schema = pa.schema([*BRONZE_SCHEMA, *IMAGE_FIELDS])
    table = pa.Table.from_arrays(columns, schema=schema)
    return table if rows is None else table.take(pa.array(rows, pa.int64()))


def stored_columns(rows: pa.Table) -> pa.Table:
    """``rows`` without the image columns :func:`batch_to_arrow` may have added (no copy)."""
    if rows.num_columns == len(BRONZE_SCHEMA):
        return rows
    return rows.select(BRONZE_SCHEMA.names)


def with_images(rows: pl.DataFrame) -> pl.DataFrame:
    """Bronze rows as read back, plus ``before`` and ``after`` as JSON text taken from the envelope
    (null where Debezium wrote null), e.g. ``with_images(pl.read_delta(path))``."""
    envelope = pl.col("envelope").str
    return rows.with_columns(
        envelope.json_path_match("$.before").alias("before"),
        envelope.json_path_match("$.after").alias("after"),
    )
