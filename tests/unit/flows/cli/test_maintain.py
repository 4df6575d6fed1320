"""``goldstream maintain``: table discovery, filters, the summary, dry runs and failures."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from rich.console import Console
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.maintain import select_tables
from sinks.delta.maintenance import TableRef, find_tables


def small_table(path: Path, commits: int) -> None:
    for i in range(commits):
        write_deltalake(str(path), pa.table({"k": [i], "part": ["a"]}), mode="append", partition_by=["part"])


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import flows.cli.maintain as cli

    monkeypatch.setattr(cli, "out", Console(width=200))  # no wrapped table names
    small_table(tmp_path / "bronze" / "shop" / "public" / "customers", 10)
    small_table(tmp_path / "bronze" / "crm" / "public" / "accounts", 3)
    small_table(tmp_path / "silver" / "customer", 9)
    small_table(tmp_path / "gold" / "golden_customer", 2)
    small_table(tmp_path / "quarantine", 2)
    small_table(tmp_path / "scratch" / "t", 1)
    (tmp_path / "silver" / "empty_dir").mkdir()
    return tmp_path


def names(tables: list[TableRef]) -> list[str]:
    return [t.name for t in tables]


def test_find_tables_walks_every_layer_in_order(root: Path) -> None:
    tables = find_tables(root)
    assert names(tables) == [
        "bronze/crm/public/accounts",
        "bronze/shop/public/customers",
        "silver/customer",
        "gold/golden_customer",
        "quarantine",
        "scratch/t",
    ]
    assert [t.layer for t in tables] == ["bronze", "bronze", "silver", "gold", "quarantine", "other"]


def test_find_tables_of_a_missing_root_is_empty(tmp_path: Path) -> None:
    assert find_tables(tmp_path / "nothing") == []


def test_select_by_layer_glob_and_word(root: Path) -> None:
    tables = find_tables(root)
    assert names(select_tables(tables, layers=["silver", "quarantine"])) == ["silver/customer", "quarantine"]
    assert names(select_tables(tables, patterns=["bronze/shop/*"])) == ["bronze/shop/public/customers"]
    assert names(select_tables(tables, patterns=["customer"])) == [
        "bronze/shop/public/customers",
        "silver/customer",
        "gold/golden_customer",
    ]
    assert names(select_tables(tables, layers=["bronze"], patterns=["customer"])) == [
        "bronze/shop/public/customers"
    ]


def test_maintain_command_compacts_and_checkpoints_every_table(root: Path) -> None:
    result = CliRunner().invoke(app, ["maintain", "--delta-root", str(root)])
    assert result.exit_code == 0, result.output
    for name in ("bronze/shop/public/customers", "silver/customer", "quarantine", "gold/golden_customer"):
        assert name in result.output
        assert (root / name / "_delta_log" / "_last_checkpoint").exists()
    # 10 and 9 small files reach compact_min_files (8): one file each; 3 files stay 3
    assert len(DeltaTable(str(root / "bronze/shop/public/customers")).file_uris()) == 1
    assert len(DeltaTable(str(root / "silver/customer")).file_uris()) == 1
    assert len(DeltaTable(str(root / "bronze/crm/public/accounts")).file_uris()) == 3
    assert "10 -> 1" in result.output  # files, and files compacted


def test_dry_run_changes_nothing(root: Path) -> None:
    before = {t.name: DeltaTable(str(t.path)).version() for t in find_tables(root)}
    result = CliRunner().invoke(app, ["maintain", "--delta-root", str(root), "--dry-run", "-l", "bronze"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "would vacuum" in result.output
    assert "silver/customer" not in result.output
    assert {t.name: DeltaTable(str(t.path)).version() for t in find_tables(root)} == before
    assert not (root / "bronze/shop/public/customers/_delta_log/_last_checkpoint").exists()


def test_filters_that_match_nothing_say_so(root: Path) -> None:
    result = CliRunner().invoke(app, ["maintain", "--delta-root", str(root), "-t", "nope"])
    assert result.exit_code == 0 and "none of the 6 Delta tables matches" in result.output
    result = CliRunner().invoke(app, ["maintain", "--delta-root", str(root / "missing")])
    assert result.exit_code == 0 and "no Delta tables" in result.output


def test_unknown_layer_is_a_config_error(root: Path) -> None:
    result = CliRunner().invoke(app, ["maintain", "--delta-root", str(root), "-l", "platinum"])
    assert result.exit_code == 2
    assert "platinum" in result.output


def test_a_failing_table_does_not_stop_the_others(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import TransientError
    from sinks.delta.maintenance import maintain as real

    def flaky(path: Path, **kwargs: object) -> object:
        if "silver" in str(path):
            raise TransientError("a concurrent commit conflicted")
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("flows.cli.maintain.maintain", flaky)
    result = CliRunner().invoke(app, ["maintain", "--delta-root", str(root)])
    assert result.exit_code == 4
    assert "failed" in result.output and "1 of 6 table(s) failed" in result.output
    assert (root / "quarantine" / "_delta_log" / "_last_checkpoint").exists()
