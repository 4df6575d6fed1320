from pathlib import Path

import polars as pl

from cdc.demo.truth import COLUMNS, TruthRow, read_truth, source_key, write_truth


def test_source_key_joins_composite_keys() -> None:
    assert source_key("D100001") == "D100001"
    assert source_key("D100001", 2) == "D100001|2"


def test_round_trip_and_columns(tmp_path: Path) -> None:
    rows = [
        TruthRow("shop", "public", "customers", "12", "P000003"),
        TruthRow("erp", "erp", "debtor_contacts", "D100001|1", "P000001"),
    ]
    path = tmp_path / "demo" / "truth.parquet"
    assert write_truth(path, rows) == 2
    frame = pl.read_parquet(path)
    assert tuple(frame.columns) == COLUMNS
    assert all(dtype == pl.String for dtype in frame.dtypes)
    assert sorted(read_truth(path), key=lambda r: r.system) == sorted(rows, key=lambda r: r.system)
    assert not list(path.parent.glob("*.tmp"))


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert read_truth(tmp_path / "nope.parquet") == []
