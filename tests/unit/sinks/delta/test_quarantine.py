"""The quarantine table: reading with filters, marking rows replayed."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from core.errors import TerminalError
from core.events import Rejected
from sinks.delta.appender import IdempotentAppender
from sinks.delta.quarantine import (
    QUARANTINE_PARTITION_BY,
    QUARANTINE_SCHEMA,
    QuarantineFilter,
    mark_replayed,
    quarantine_app_id,
    quarantine_path,
    read_quarantine,
    rejects_to_arrow,
)


def reject(
    offset: int,
    *,
    stage: str = "decode",
    reason: str = "malformed_json",
    topic: str = "shop.public.customers",
    partition: int = 0,
    value: bytes | None = b"{not json",
) -> Rejected:
    return Rejected(
        reason, f"detail {offset}", topic, partition, offset, 1_700_000_000_000, b'{"id":1}', value, stage
    )


def quarantine(root: Path, rejects: list[Rejected]) -> None:
    table = IdempotentAppender(quarantine_path(root), QUARANTINE_SCHEMA, partition_by=QUARANTINE_PARTITION_BY)
    by_stream: dict[tuple[str, str, int], list[Rejected]] = {}
    for r in rejects:
        by_stream.setdefault((r.stage, r.topic, r.partition), []).append(r)
    for (stage, topic, partition), rs in by_stream.items():
        table.append(
            rejects_to_arrow(rs),
            app_id=quarantine_app_id(stage, topic, partition),
            version=max(r.offset for r in rs),
        )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    quarantine(
        tmp_path,
        [
            reject(5),
            reject(3),
            reject(7, reason="invalid_envelope"),
            reject(2, stage="mapping", reason="mapping_failed", topic="crm.public.accounts", partition=1),
            reject(9, value=None),
        ],
    )
    return tmp_path


def positions(df: pl.DataFrame) -> list[tuple[str, str, int, int]]:
    return list(df.select("stage", "topic", "partition", "offset").iter_rows())


def test_read_in_source_order_with_every_column(root: Path) -> None:
    rows = read_quarantine(root)
    assert rows.columns == QUARANTINE_SCHEMA.names
    assert [o for *_, o in positions(rows)] == [2, 3, 5, 7, 9]  # crm topic sorts first
    assert rows.filter(pl.col("offset") == 9)["value"].to_list() == [None]
    assert rows.filter(pl.col("offset") == 3)["value"].to_list() == [b"{not json"]


def test_filters_combine(root: Path) -> None:
    assert read_quarantine(root, QuarantineFilter(stages=("mapping",))).height == 1
    assert read_quarantine(root, QuarantineFilter(reasons=("malformed_json",))).height == 3
    flt = QuarantineFilter(
        stages=("decode",), reasons=("invalid_envelope", "malformed_json"), topics=("shop.public.customers",)
    )
    assert read_quarantine(root, flt).height == 4
    assert read_quarantine(root, QuarantineFilter(topics=("nope",))).height == 0


def test_columns_are_checked(root: Path) -> None:
    assert read_quarantine(root, columns=["offset", "reason"]).columns == ["offset", "reason"]
    with pytest.raises(ValueError, match="not quarantine columns: \\['nope'\\]"):
        read_quarantine(root, columns=["nope"])


def test_no_table_reads_as_no_rows(tmp_path: Path) -> None:
    rows = read_quarantine(tmp_path, columns=["stage", "offset"])
    assert rows.height == 0 and rows.columns == ["stage", "offset"]


def test_mark_replayed_sets_exactly_the_given_rows(root: Path) -> None:
    todo = read_quarantine(root, QuarantineFilter(reasons=("malformed_json",)))
    picked = todo.filter(pl.col("offset").is_in([3, 9]))
    assert mark_replayed(root, picked) == 2
    left = read_quarantine(root)  # replayed rows are hidden by default
    assert [o for *_, o in positions(left)] == [2, 5, 7]
    everything = read_quarantine(root, QuarantineFilter(include_replayed=True))
    assert everything.filter(pl.col("replayed"))["offset"].sort().to_list() == [3, 9]
    # other columns untouched
    assert everything.filter(pl.col("offset") == 3)["value"].to_list() == [b"{not json"]
    # marking again changes nothing
    assert mark_replayed(root, picked) == 0


def test_same_offset_in_another_stage_or_partition_is_a_different_row(tmp_path: Path) -> None:
    quarantine(tmp_path, [reject(4), reject(4, stage="mapping"), reject(4, partition=1)])
    only = read_quarantine(tmp_path, QuarantineFilter(stages=("decode",))).filter(pl.col("partition") == 0)
    assert mark_replayed(tmp_path, only) == 1
    assert read_quarantine(tmp_path).height == 2


def test_mark_replayed_without_a_table_names_it(tmp_path: Path) -> None:
    rows = pl.DataFrame({"stage": ["decode"], "topic": ["t"], "partition": [0], "offset": [1]})
    with pytest.raises(TerminalError, match="no quarantine table at"):
        mark_replayed(tmp_path, rows)
    assert mark_replayed(tmp_path, rows.clear()) == 0
