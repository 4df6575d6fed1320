"""``goldstream sync plan`` (dry run, no API) and ``sync replay`` (re-drive the retry ledger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

import flows.propagate.commands as commands
from flows.cli import app
from flows.propagate.commands import plan_operations, replay_ledger
from sinks.delta.sync_log import open_ledger, plan_path
from tests.unit.flows.propagate.test_propagate_delivery_echo import (
    SETTINGS,
    TOPIC,
    VALUES,
    change,
    feed,
    make_sync,
)
from tests.unit.sinks.targets.fake_target import SECRET, FakeTarget


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSTREAM_CRM_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("GOLDSTREAM_ERP_API_KEY", SECRET)


def test_plan_reads_the_topic_and_calls_no_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [
        (TOPIC, 0, 0, b"G1", change("G1", 1)),
        (TOPIC, 0, 1, b"G1", change("G1", 2, {**VALUES, "city": "York"})),
        (TOPIC, 1, 0, b"G2", change("G2", 1, {**VALUES, "currency": None})),
    ]
    monkeypatch.setattr(commands, "read_to_end", lambda _b, _t: list(messages))
    settings = SETTINGS.model_copy(update={"delta_root": tmp_path})
    rows = plan_operations(settings)
    got = {(r.target, r.golden_id, r.operation) for r in rows}
    # Versions of one record fold into one create; the ERP cannot create without a currency.
    assert got == {
        ("crm", "G1", "create"),
        ("crm", "G2", "create"),
        ("erp", "G1", "create"),
        ("erp", "G2", "skip"),
    }
    table = pl.read_delta(str(plan_path(tmp_path)))
    assert table.height == 4


def test_replay_resolves_what_succeeds_now(tmp_path: Path) -> None:
    fake = FakeTarget(bad_external_ids={"G2"})
    sync = make_sync(tmp_path, fake)
    feed(sync, (0, change("G1", 1)), (1, change("G2", 1)))
    assert [e["golden_id"] for e in open_ledger(tmp_path)] == ["G2"]
    settings = SETTINGS.model_copy(update={"delta_root": tmp_path})
    [still] = replay_ledger(settings, targets=["crm"], sync=sync)
    assert (still.resolved, still.still_failing) == (0, 1)
    fake.bad_external_ids.clear()
    [result] = replay_ledger(settings, targets=["crm"], sync=sync)
    assert (result.entries, result.resolved, result.still_failing) == (1, 1, 0)
    assert open_ledger(tmp_path) == [] and fake.records["G2"]["name"] == "Ann Lee"


def test_cli_is_registered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: dict[str, Any] = {}
    monkeypatch.setattr(
        "flows.cli.sync.replay_ledger", lambda s, targets: calls.setdefault("t", targets) and []
    )
    result = CliRunner().invoke(app, ["sync", "replay", "--target", "crm"])
    assert result.exit_code == 0, result.output
    assert calls["t"] == ["crm"] and "no open entries" in result.output
