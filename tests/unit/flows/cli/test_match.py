"""``goldstream match train`` on a real silver table and ``goldstream explain`` on real gold tables."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from core.canonical import entity_schema
from core.golden import (
    Cause,
    CrosswalkEntry,
    FieldProvenance,
    GoldBatch,
    GoldenChange,
    LineageEvent,
    LinkRecord,
)
from flows.cli.match import register
from flows.resolve import MatchingConfig, load_matching_config, write_matching_config
from sinks.delta.gold import GoldWriter
from sinks.delta.silver import SilverWriter
from sinks.delta.silver_batch import INPUT_COLUMNS
from tests.unit.flows.resolve.resolve_helpers import person_config

T0 = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
T0_US = 1_714_564_800_000_000
FIRST = ["anna", "maria", "peter", "jan", "olga", "tom", "eva", "igor", "nina", "paul", "sara", "li"]
LAST = ["weber", "nowak", "smith", "meyer", "garcia", "rossi", "berg", "lind", "okafor", "silva"]
CITIES = ["Berlin", "Paris", "Lyon", "Porto", "Oslo"]

#: Customer fields for the resolver tests' small model (the repo's full model trains for longer than a
#: unit test should).
SOURCES = {"name": "full_name", "name_sx": "full_name", "dob": "birth_date"}


def matching_config() -> MatchingConfig:
    base = person_config()
    features = {k: {**f.model_dump(), "source": SOURCES.get(k, f.source)} for k, f in base.features.items()}
    # no silver record below has a tax id: training finds no evidence for this comparison
    features["tax_id"] = {"source": "tax_id", "ops": ["upper"]}
    tax_id = {
        "name": "tax_id",
        "levels": [
            {"label": "null", "missing": ["tax_id"]},
            {"label": "exact", "when": [{"exact": "tax_id"}], "m": 0.9, "u": 0.0001},
            {"label": "else", "m": 0.1, "u": 0.9999},
        ],
    }
    return person_config(
        entity="customer",
        features=features,
        comparisons=[*(c.model_dump(exclude_none=True) for c in base.comparisons), tax_id],
        training={"u_max_pairs": 5000, "em_max_pairs": 5000},
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated checkout: its own settings, matching config and Delta root."""
    config = tmp_path / "config"
    (config / "matching").mkdir(parents=True)
    (config / "goldstream.yaml").write_text(
        "config_dir: config\nstate_dir: .state\ndelta_root: .state/delta\n", encoding="utf-8"
    )
    write_matching_config(matching_config(), config / "matching" / "customer.yaml")
    monkeypatch.setenv("GOLDSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("GOLDSTREAM_CONFIG", str(config / "goldstream.yaml"))
    monkeypatch.setenv("COLUMNS", "240")  # rich wraps table cells to the terminal width
    return tmp_path


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def silver_rows(n_people: int) -> list[dict[str, Any]]:
    """People in crm and erp (erp with a typo now and then), some also in shop."""
    rng = random.Random(3)
    rows: list[dict[str, Any]] = []
    for p in range(n_people):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        values = {
            "kind": "person",
            "status": "active",
            "full_name": name,
            "email": f"{name.replace(' ', '.')}{p}@mail.org",
            "birth_date": dt.date(1950 + rng.randrange(50), rng.randrange(1, 13), rng.randrange(1, 29)),
            "city": rng.choice(CITIES),
        }
        for system, table in (("crm", "public.customers"), ("erp", "erp.debtors"), ("shop", "public.users")):
            if system == "shop" and rng.random() < 0.5:
                continue
            v = dict(values)
            if system == "erp" and rng.random() < 0.3:
                v["full_name"] = name[:-1] + "x"
            if rng.random() < 0.2:
                v["email"] = None
            rows.append(
                {
                    "source_system": system,
                    "source_table": table,
                    "source_key": str(p),
                    "lsn": 100 + p,
                    "tx_id": None,
                    "source_ts": T0,
                    "mapping_version": "m1",
                    "op": "r",
                    "deleted": False,
                    "snapshot": True,
                    "topic": f"{system}.{table}",
                    "partition": 0,
                    "offset": p,
                    "unavailable": [],
                    **v,
                }
            )
    return rows


def write_silver(home: Path, rows: list[dict[str, Any]]) -> None:
    schema = {**INPUT_COLUMNS, **entity_schema("customer")}
    frame = pl.DataFrame(rows, schema=schema)
    SilverWriter(
        home / ".state" / "delta", "customer", schema=entity_schema("customer"), maintenance=None
    ).apply(frame)


def test_train_estimates_and_writes_the_matching_config(home: Path, cli: typer.Typer) -> None:
    write_silver(home, silver_rows(150))
    path = home / "config" / "matching" / "customer.yaml"
    result = CliRunner().invoke(cli, ["match", "train", "--entity", "customer"])
    assert result.exit_code == 0, result.output
    assert "prior (two random records match)" in result.output
    assert "dob" in result.output and "email" in result.output
    trained = load_matching_config(path)
    by_name = {c.name: c for c in trained.comparisons}
    exact = next(lvl for lvl in by_name["email"].levels if lvl.label == "exact")
    assert exact.m != 0.8 and exact.u != 0.0001  # re-estimated, not the hand-set values
    assert exact.weight() > 5  # an equal email is strong evidence in this data
    assert trained.prior != matching_config().prior
    # a comparison without evidence keeps its configured weights instead of being switched off
    assert "no evidence in the data for tax_id" in result.output
    assert by_name["tax_id"] == {c.name: c for c in matching_config().comparisons}["tax_id"]


def test_train_no_write_leaves_the_config_alone(home: Path, cli: typer.Typer) -> None:
    write_silver(home, silver_rows(60))
    path = home / "config" / "matching" / "customer.yaml"
    before = path.read_bytes()
    result = CliRunner().invoke(cli, ["match", "train", "--no-write", "--max-records", "100"])
    assert result.exit_code == 0, result.output
    assert "trained on 100 records" in result.output
    assert "not written" in result.output
    assert path.read_bytes() == before


def test_train_without_silver_table_says_so(home: Path, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["match", "train"])
    assert result.exit_code == 3
    assert "no silver table" in result.output


def test_train_on_too_few_records_says_so(home: Path, cli: typer.Typer) -> None:
    write_silver(home, silver_rows(3))
    result = CliRunner().invoke(cli, ["match", "train", "--max-records", "1"])
    assert result.exit_code == 3
    assert "1 current record(s)" in result.output and "at least 2" in result.output


def test_train_without_matching_config_is_a_config_error(home: Path, cli: typer.Typer) -> None:
    write_silver(home, silver_rows(3))
    result = CliRunner().invoke(cli, ["match", "train", "--entity", "product"])
    assert result.exit_code == 2
    assert "product.yaml" in result.output


A, B, C = "crm:public.customers:1", "erp:erp.debtors:D-7", "shop:public.users:42"


def golden_change(gid: str, version: int, **kw: Any) -> GoldenChange:
    values = {"full_name": "Ada Lovelace", "email": "ada@example.com", "birth_date": "1815-12-10"}
    prov = {
        "full_name": FieldProvenance("crm", A, T0_US, "source_priority"),
        "email": FieldProvenance("erp", B, T0_US, "most_recent"),
        "birth_date": FieldProvenance("shop", C, T0_US, "most_frequent", support=0.67),
    }
    base: dict[str, Any] = {
        "entity": "customer",
        "golden_id": gid,
        "version": version,
        "kind": "UPSERT",
        "values": values,
        "provenance": prov,
        "changed": tuple(values),
        "members": (A, B, C),
        "emitted_at_us": T0_US + version,
        "cause": Cause(B, 9, T0_US, "erp.erp.debtors", 0, 3),
    }
    base.update(kw)
    return GoldenChange(**base)


@pytest.fixture
def gold(home: Path) -> Path:
    writer = GoldWriter(home / ".state" / "delta", "customer", maintenance=None)
    writer.apply(
        GoldBatch(
            "customer",
            changes=(
                golden_change("G1", 2, merged_from=("G2",)),
                golden_change(
                    "G2", 2, kind="RETIRED", values={}, provenance={}, members=(), merged_into="G1"
                ),
            ),
            crosswalk=tuple(CrosswalkEntry("customer", r, "G1", 0.98, T0_US) for r in (A, B, C)),
            links=(
                LinkRecord(
                    "customer", "G1", A, B, 14.2, 0.9999, (("name", "exact", 9.1), ("email", "exact", 5.1))
                ),
                LinkRecord("customer", "G1", B, C, 7.5, 0.993, (("birth_date", "exact", 7.5),)),
            ),
            lineage=(LineageEvent("customer", "MERGED", "G1", ("G2",), T0_US + 2, Cause(C, 10, T0_US)),),
        )
    )
    return home


def test_explain_shows_values_provenance_members_links_lineage(gold: Path, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["explain", "G1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def line_with(*parts: str) -> str:
        found = [ln for ln in lines if all(p in ln for p in parts)]
        assert found, f"no line with {parts} in:\n{result.output}"
        return found[0]

    line_with("customer G1", "version 2", "3 member(s)")
    line_with("merged from G2")
    line_with("email", "ada@example.com", "erp", B, "most_recent")
    line_with("birth_date", "1815-12-10", "shop", C, "most_frequent", "0.67")
    line_with(C, "shop", "public.users", "42", "0.9800")
    line_with(A, B, "+14.20", "name=exact (+9.10)", "email=exact (+5.10)")
    line_with(B, C, "birth_date=exact (+7.50)")
    line_with("MERGED", "G1", "G2")


def test_explain_of_a_record_id_explains_its_golden_record(gold: Path, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["explain", C])
    assert result.exit_code == 0, result.output
    assert f"record {C} -> golden id G1" in result.output
    assert "customer G1 version 2" in result.output


def test_explain_of_a_merged_id_names_the_survivor(gold: Path, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["explain", "G2"])
    assert result.exit_code == 3
    assert "merged into 'G1'" in result.output


def test_explain_of_an_unknown_id_says_so(gold: Path, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["explain", "G404"])
    assert result.exit_code == 3
    assert "unknown golden id 'G404'" in result.output


def test_explain_without_gold_tables_says_so(home: Path, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["explain", "G1"])
    assert result.exit_code == 3
    assert "no gold table" in result.output


def test_the_goldstream_cli_registers_both_commands() -> None:
    from flows.cli import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "match" in result.output and "explain" in result.output
    result = CliRunner().invoke(app, ["match", "--help"])
    assert result.exit_code == 0 and "train" in result.output
