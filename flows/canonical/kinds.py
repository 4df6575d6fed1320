"""Value kinds flowing through a mapping, and the source column types a mapping file can declare.

A *kind* is the type of a value between two transform steps; each kind has one polars dtype. Source
column types describe the JSON Debezium writes for a PostgreSQL column under our connector settings
(``decimal.handling.mode=string``, ``time.precision.mode=adaptive``, JSON converter without schemas).
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl


class Kind(StrEnum):
    """The type of a value between two steps of a field's pipeline."""

    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    DECIMAL = "decimal"


class ColumnType(StrEnum):
    """A source column as Debezium serialises it (JSON, no schema)."""

    TEXT = "text"  # text, varchar, char
    UUID = "uuid"  # JSON string
    ENUM = "enum"  # PostgreSQL enum: JSON string
    JSON = "json"  # json/jsonb: the document as a JSON *string*
    DECIMAL = "decimal"  # numeric: a string ("1429529.37"), exact
    INT = "int"  # smallint, integer, bigint
    FLOAT = "float"  # real, double precision
    BOOL = "bool"
    DATE = "date"  # days since 1970-01-01 (int)
    TIMESTAMP = "timestamp"  # timestamp without time zone, precision 4-6: wall-clock micros (int)
    TIMESTAMP_MS = "timestamp_ms"  # timestamp(0..3) without time zone: wall-clock millis (int)
    TIMESTAMPTZ = "timestamptz"  # ISO-8601 string in UTC ("2024-05-16T01:09:25.000000Z")


#: How each column type is decoded from JSON (the dtype handed to ``str.json_decode``).
DECODE_DTYPE: dict[ColumnType, pl.DataType] = {
    ColumnType.TEXT: pl.String(),
    ColumnType.UUID: pl.String(),
    ColumnType.ENUM: pl.String(),
    ColumnType.JSON: pl.String(),
    ColumnType.DECIMAL: pl.String(),
    ColumnType.TIMESTAMPTZ: pl.String(),
    ColumnType.INT: pl.Int64(),
    ColumnType.DATE: pl.Int64(),
    ColumnType.TIMESTAMP: pl.Int64(),
    ColumnType.TIMESTAMP_MS: pl.Int64(),
    ColumnType.FLOAT: pl.Float64(),
    ColumnType.BOOL: pl.Boolean(),
}

#: The kind a column has after decoding (date/time columns are converted on read).
COLUMN_KIND: dict[ColumnType, Kind] = {
    ColumnType.TEXT: Kind.TEXT,
    ColumnType.UUID: Kind.TEXT,
    ColumnType.ENUM: Kind.TEXT,
    ColumnType.JSON: Kind.TEXT,
    ColumnType.DECIMAL: Kind.TEXT,
    ColumnType.INT: Kind.INT,
    ColumnType.FLOAT: Kind.FLOAT,
    ColumnType.BOOL: Kind.BOOL,
    ColumnType.DATE: Kind.DATE,
    ColumnType.TIMESTAMP: Kind.DATETIME,
    ColumnType.TIMESTAMP_MS: Kind.DATETIME,
    ColumnType.TIMESTAMPTZ: Kind.DATETIME,
}

#: Column types allowed in a primary key (their text form is the source key).
KEY_TYPES = frozenset({ColumnType.TEXT, ColumnType.UUID, ColumnType.INT, ColumnType.DECIMAL})

#: Column types whose values Debezium may replace by the unchanged-TOAST placeholder.
TOASTABLE = frozenset({ColumnType.TEXT, ColumnType.JSON, ColumnType.DECIMAL, ColumnType.ENUM})

TOAST_PLACEHOLDER = "__debezium_unavailable_value"

KIND_DTYPE: dict[Kind, pl.DataType] = {
    Kind.TEXT: pl.String(),
    Kind.INT: pl.Int64(),
    Kind.FLOAT: pl.Float64(),
    Kind.BOOL: pl.Boolean(),
    Kind.DATE: pl.Date(),
    Kind.DATETIME: pl.Datetime("us", "UTC"),
}


def kind_of_dtype(dtype: pl.DataType) -> Kind:
    """The kind whose values fill a canonical column of ``dtype``."""
    if isinstance(dtype, pl.Decimal):
        return Kind.DECIMAL
    for kind, d in KIND_DTYPE.items():
        if dtype == d:
            return kind
    raise TypeError(f"no mapping kind for canonical dtype {dtype}")


def json_fits(ctype: ColumnType, value: object) -> bool:
    """Whether a decoded JSON value has the shape Debezium writes for ``ctype`` (None always fits)."""
    if value is None:
        return True
    dtype = DECODE_DTYPE[ctype]
    if dtype == pl.String():
        return isinstance(value, str)
    if dtype == pl.Int64():
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if dtype == pl.Float64():
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, bool)
