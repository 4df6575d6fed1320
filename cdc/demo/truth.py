"""The ground truth of the demo: which source row is which real-world person or organisation.

Written with polars to ``<state_dir>/demo/truth.parquet``, one row per customer-ish source row:
``system, schema, table, source_key, person_id``. ``source_key`` is the row's primary key as text,
composite keys joined with ``|`` in key-column order. ``person_id`` is ``P…`` for a person and
``O…`` for an organisation. Seeding writes it; the load generator keeps it current.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core.settings import Settings

COLUMNS = ("system", "schema", "table", "source_key", "person_id")


@dataclass(frozen=True, slots=True)
class TruthRow:
    """One source row and the entity it belongs to."""

    system: str
    schema: str
    table: str
    source_key: str
    person_id: str


def source_key(*parts: object) -> str:
    """A primary key as text: the values in key-column order joined by ``|``."""
    return "|".join(str(p) for p in parts)


def truth_path(settings: Settings) -> Path:
    """Where the truth file lives."""
    return settings.state_dir / "demo" / "truth.parquet"


def to_frame(rows: Iterable[TruthRow]) -> pl.DataFrame:
    """Rows as a polars frame with the documented columns, sorted for stable output."""
    data = [(r.system, r.schema, r.table, r.source_key, r.person_id) for r in rows]
    frame = pl.DataFrame(data, schema=dict.fromkeys(COLUMNS, pl.String), orient="row")
    return frame.sort(list(COLUMNS[:4]))


def write_truth(path: Path, rows: Iterable[TruthRow]) -> int:
    """Write (replace) the truth file atomically; returns the number of rows."""
    frame = to_frame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)  # readers never see a half-written file
    return frame.height


def read_truth(path: Path) -> list[TruthRow]:
    """All rows of a truth file; empty if there is none."""
    if not path.exists():
        return []
    frame = pl.read_parquet(path)
    return [TruthRow(*row) for row in frame.select(COLUMNS).iter_rows()]
