"""The mapping document (a golden file), the ``goldstream mappings`` commands, the live catalog check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.canonical import compile_mappings, mapping_document
from flows.canonical.live import LiveColumn, compare, expected_types
from flows.cli.mappings import app
from tests.unit.flows.canonical.conftest import CONFIG, REPO

GOLDEN = Path(__file__).parent / "golden" / "mappings.md"


def test_mapping_document_matches_the_golden_file() -> None:
    """Regenerate with ``UPDATE_GOLDEN=1`` after an intended change, and review the diff."""
    text = mapping_document(compile_mappings(CONFIG))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_mapping_document_says_source_rule_and_null_handling() -> None:
    text = mapping_document(compile_mappings(CONFIG))
    assert "## erp.erp.debtors → customer" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| `first_name` | `name1` (text)"))
    assert "text* → split_name(part=first) → fix_case*" in row
    assert "null unless kind = 'person'" in row and "failure → null + issue" in row
    kind = "| `kind` (required) | `name1` (text), `vat_reg_no` (text) | hook "
    assert kind + "`flows.canonical.hooks:erp_debtor_kind`*" in text
    assert "Source columns not mapped: `name2`, `search_term`" in text
    assert "| `money` |" in text  # the transform reference


def test_cli_check_and_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSTREAM_HOME", str(REPO))
    runner = CliRunner()
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "16 mapping(s) valid" in result.output
    out = tmp_path / "mappings.md"
    result = runner.invoke(app, ["doc", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == GOLDEN.read_text(encoding="utf-8")


def test_cli_check_reports_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    (config / "mappings" / "crm").mkdir(parents=True)
    (config / "goldstream.yaml").write_text("config_dir: config\n", encoding="utf-8")
    (config / "mappings" / "crm" / "accounts.yaml").write_text(
        "version: 1\nentity: robot\n", encoding="utf-8"
    )
    monkeypatch.setenv("GOLDSTREAM_HOME", str(tmp_path))
    monkeypatch.delenv("GOLDSTREAM_CONFIG", raising=False)
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 2
    assert "accounts.yaml" in result.output and "source" in result.output


def live_columns(mapping_columns: dict[str, str]) -> list[LiveColumn]:
    pg = {
        "int": "bigint",
        "text": "text",
        "uuid": "uuid",
        "date": "date",
        "timestamptz": "timestamp with time zone",
        "timestamp": "timestamp without time zone",
        "decimal": "numeric",
        "bool": "boolean",
        "json": "jsonb",
        "enum": "USER-DEFINED",
    }
    return [
        LiveColumn(name, pg[str(t)], 6 if t == "timestamp" else None) for name, t in mapping_columns.items()
    ]


def test_live_comparison_accepts_the_matching_catalog_and_names_each_difference() -> None:
    mapping = compile_mappings(CONFIG).for_table("crm", "public", "accounts")
    assert mapping is not None
    columns = live_columns(dict(mapping.columns))
    assert compare(mapping, columns, "f") == []
    problems = compare(
        mapping,
        [c for c in columns if c.name != "website"]
        + [LiveColumn("loyalty", "integer"), LiveColumn("name", "integer")],
        "d",
    )
    text = "\n".join(problems)
    assert "column 'website' is declared but not in the table" in text
    assert "column 'loyalty' exists but is not declared" in text
    assert "column 'name' is integer: declare it as int, not text" in text
    assert "replica identity is default in the database, the mapping says full" in text
    assert compare(mapping, [], None) == [
        f"{mapping.path}: crm.public.accounts: table not found in the database"
    ]


def test_timestamp_precision_decides_millis_or_micros() -> None:
    assert expected_types(LiveColumn("t", "timestamp without time zone", 3)) == {"timestamp_ms"}
    assert expected_types(LiveColumn("t", "timestamp without time zone", 6)) == {"timestamp"}
    assert expected_types(LiveColumn("t", "point")) == frozenset()
