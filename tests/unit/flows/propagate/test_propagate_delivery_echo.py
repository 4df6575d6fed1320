"""TargetSync against a fake API with real Delta tables, and the EchoFilter reading what it recorded."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from core.golden import GoldenChange, content_hash, encode_change
from core.settings import load_settings
from flows.propagate.config import TargetConfig, load_targets
from flows.propagate.delivery import Incoming, TargetSync, load_state
from flows.propagate.echo import EchoFilter
from flows.propagate.flow import client_settings, readback_for
from flows.propagate.plan import Position
from sinks.delta.sync_log import SyncTables, ledger_path, open_ledger, pushed_path, sync_log_path
from sinks.targets.client import TargetClient
from tests.unit.sinks.targets.fake_target import SECRET, FakeTarget

SETTINGS = load_settings()
TARGETS = {c.target: c for c in load_targets(SETTINGS)}
VALUES: dict[str, Any] = {
    "kind": "person",
    "status": "active",
    "full_name": "Ann Lee",
    "first_name": "Ann",
    "last_name": "Lee",
    "country": "GB",
    "currency": "GBP",
    "city": "Leeds",
    "phone": "+441132496000",
}
TOPIC = "golden.customer"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for cfg in TARGETS.values():
        monkeypatch.setenv(cfg.api.auth.secret_env, SECRET)


def change(gid: str, version: int, values: dict[str, Any] | None = None, **kw: Any) -> bytes:
    v = dict(VALUES if values is None else values)
    return encode_change(
        GoldenChange(
            "customer", gid, version, kw.pop("kind", "UPSERT"), v, {}, tuple(v), (), 1_000,
            content_hash=content_hash(v), **kw,
        )
    )  # fmt: skip


def make_sync(tmp: Path, fake: FakeTarget, target: str = "crm", clock: Clock | None = None) -> TargetSync:
    cfg: TargetConfig = TARGETS[target]
    clock = clock or Clock()
    client = TargetClient(
        client_settings(cfg, SETTINGS),
        transport=fake.transport(),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(0),
    )
    return TargetSync(
        cfg,
        readback_for(cfg, SETTINGS.config_dir),
        client,
        SyncTables(tmp),
        origin="goldstream",
        state=load_state(tmp, target),
        sleep=clock.sleep,
    )


def feed(sync: TargetSync, *messages: tuple[int, bytes | None]) -> Any:
    items = [Incoming(Position(TOPIC, 0, off), value) for off, value in messages]
    return sync.process(items, stream=f"{sync.cfg.target}:{TOPIC}:0", version=messages[-1][0])


def test_create_update_and_nothing_twice(tmp_path: Path) -> None:
    fake = FakeTarget()
    sync = make_sync(tmp_path, fake)
    feed(sync, (0, change("G1", 1)), (1, change("G2", 1)))
    assert set(fake.records) == {"G1", "G2"} and fake.records["G1"]["name"] == "Ann Lee"
    feed(sync, (2, change("G1", 2, {**VALUES, "city": "York"})))
    assert fake.records["G1"]["billing_city"] == "York" and fake.records["G1"]["version"] == 2
    calls = len(fake.calls)
    feed(sync, (3, change("G1", 3, {**VALUES, "city": "York", "email": "x@y.z"})))  # nothing for the CRM
    assert len(fake.calls) == calls
    log = pl.read_delta(str(sync_log_path(tmp_path))).sort("offset")
    assert log.select("golden_id", "version", "operation", "status").rows() == [
        ("G1", 1, "create", "ok"),
        ("G2", 1, "create", "ok"),
        ("G1", 2, "update", "ok"),
    ]
    assert log.filter(pl.col("version") == 2)["fields"].to_list() == [["billing_city"]]


def test_restart_replay_sends_nothing_and_logs_nothing_twice(tmp_path: Path) -> None:
    fake = FakeTarget()
    messages = [(0, change("G1", 1)), (1, change("G1", 2, {**VALUES, "city": "York"}))]
    feed(make_sync(tmp_path, fake), *messages)
    calls = len(fake.calls)
    feed(make_sync(tmp_path, fake), *messages)  # a restart re-reads the same offsets
    assert len(fake.calls) == calls
    assert pl.read_delta(str(sync_log_path(tmp_path))).height == 1  # the two versions were coalesced


def test_versions_of_one_record_in_one_unit_arrive_in_order(tmp_path: Path) -> None:
    fake = FakeTarget()
    feed(
        make_sync(tmp_path, fake), *[(i, change("G1", i + 1, {**VALUES, "city": f"C{i}"})) for i in range(5)]
    )
    assert fake.records["G1"]["billing_city"] == "C4"


def test_one_bad_record_goes_to_the_ledger_and_the_rest_arrive(tmp_path: Path) -> None:
    fake = FakeTarget(bad_external_ids={"G2"})
    sync = make_sync(tmp_path, fake)
    feed(sync, (0, change("G1", 1)), (1, change("G2", 1)), (2, change("G3", 1)), (3, b"not json"))
    assert set(fake.records) == {"G1", "G3"}
    ledger = open_ledger(tmp_path)
    assert {(r["golden_id"], r["operation"]) for r in ledger} == {("G2", "create"), ("", "decode")}
    assert next(r for r in ledger if r["golden_id"] == "G2")["change"] is not None
    fake.bad_external_ids.clear()
    feed(sync, (4, change("G2", 2)))  # a later version sends everything again (diff vs last success)
    assert fake.records["G2"]["name"] == "Ann Lee"


def test_outage_pauses_then_resumes_without_losing_anything(tmp_path: Path) -> None:
    fake, clock = FakeTarget(down=True), Clock()
    sync = make_sync(tmp_path, fake, clock=clock)
    original = clock.sleep

    def sleep(s: float) -> None:
        original(s)
        if clock.now > 30:
            fake.down = False  # the target comes back after a while

    clock.sleep = sleep  # type: ignore[method-assign]
    sync._sleep = sleep
    assert sync.client is not None
    sync.client._sleep = sleep
    sync.client.bucket._sleep = sleep
    feed(sync, (0, change("G1", 1)), (1, change("G2", 1)))
    assert set(fake.records) == {"G1", "G2"}
    log = pl.read_delta(str(sync_log_path(tmp_path)))
    assert log["status"].to_list() == ["ok", "ok"]


def test_merge_on_the_crm_and_block_on_the_erp(tmp_path: Path) -> None:
    crm, erp = FakeTarget(), FakeTarget(kind="erp", resource="debtors")
    s_crm = make_sync(tmp_path / "c", crm)
    s_erp = make_sync(tmp_path / "e", erp, "erp")
    first = [(0, change("G1", 1)), (1, change("G2", 1, {**VALUES, "full_name": "Ann B. Lee"}))]
    feed(s_crm, *first)
    feed(s_erp, *first)
    merged = [
        (2, change("G1", 2, merged_from=("G2",))),
        (3, change("G2", 2, kind="RETIRED", merged_into="G1")),
    ]
    r = feed(s_crm, *merged)
    assert [o.operation for o in r.planned][:2] == ["merge", "deactivate"]
    assert crm.records["G2"]["status"] == "Inactive"
    feed(s_erp, *merged)
    assert erp.records["G2"]["status"] == "Inactive" and erp.records["G1"]["status"] == "A"
    assert ("POST", f"/v1/debtors/{erp.records['G2']['id']}/block") in erp.calls


def test_no_credential_in_the_sync_tables(tmp_path: Path) -> None:
    fake = FakeTarget(bad_external_ids={"G2"})
    feed(make_sync(tmp_path, fake), (0, change("G1", 1)), (1, change("G2", 1)))
    for path in (sync_log_path(tmp_path), pushed_path(tmp_path), ledger_path(tmp_path)):
        frame = pl.read_delta(str(path))
        assert SECRET not in str(frame.rows()) and "tok1" not in str(frame.rows())


# --- the echo filter on what the sync recorded ---


def test_echo_of_our_push_is_recognised_and_a_user_edit_is_not(tmp_path: Path) -> None:
    fake = FakeTarget()
    sync = make_sync(tmp_path, fake)
    echo = EchoFilter(tmp_path, refresh_s=0, miss_refresh_s=0)
    rb = sync.readback
    feed(sync, (0, change("G1", 1)))
    row = fake.records["G1"]
    key = row["id"]
    mapped = rb.canonical([{k: v for k, v in row.items() if k in rb.mapping.columns}])[0]
    assert mapped is not None
    assert echo.is_echo("crm", key, mapped)
    assert echo.is_echo("crm", key, mapped, modified_by="goldstream")
    assert not echo.is_echo("crm", key, mapped, modified_by="alice")  # another writer
    assert not echo.is_echo("crm", key, {**mapped, "city": "Elsewhere"})  # a user's edit
    assert not echo.is_echo("erp", key, mapped)  # nothing pushed to the ERP


def test_an_older_echo_still_counts_after_a_newer_push(tmp_path: Path) -> None:
    fake = FakeTarget()
    sync = make_sync(tmp_path, fake)
    echo = EchoFilter(tmp_path, refresh_s=0, miss_refresh_s=0)
    rb = sync.readback
    feed(sync, (0, change("G1", 1)))
    v1 = rb.canonical([{k: v for k, v in fake.records["G1"].items() if k in rb.mapping.columns}])[0]
    feed(sync, (1, change("G1", 2, {**VALUES, "city": "York"})))
    assert v1 is not None and echo.is_echo("crm", fake.records["G1"]["id"], v1)


def test_a_create_echo_matches_the_keyless_intent(tmp_path: Path) -> None:
    sync = make_sync(tmp_path, FakeTarget())
    cfg = sync.cfg
    # Intents only (as if the API call were still in flight): the target key is not known yet.
    ops, _ = sync.plan([Incoming(Position(TOPIC, 0, 0), change("G5", 1))])
    fp = sync._fingerprints(ops)
    assert sync.tables is not None
    rows = [
        sync._pushed_row(
            o, "intent", __import__("datetime").datetime.now(__import__("datetime").UTC), fp[id(o)]
        )
        for o in ops
    ]
    sync.tables.append("pushed", rows, stream="intent:x", version=0)
    mapped = sync.readback.canonical([ops[0].state])[0]
    assert mapped is not None and cfg.target == "crm"
    assert EchoFilter(tmp_path).is_echo("crm", "any-new-key", mapped)


def test_the_filter_refreshes_incrementally(tmp_path: Path) -> None:
    fake = FakeTarget()
    sync = make_sync(tmp_path, fake)
    clock = Clock()
    echo = EchoFilter(tmp_path, refresh_s=5, miss_refresh_s=1, clock=clock)
    assert not echo.is_echo("crm", "K", VALUES)  # no table yet
    feed(sync, (0, change("G1", 1)))
    rb = sync.readback
    row = fake.records["G1"]
    mapped = rb.canonical([{k: v for k, v in row.items() if k in rb.mapping.columns}])[0]
    assert mapped is not None
    clock.now += 1.5  # past the miss refresh interval: a miss re-reads the table
    assert echo.is_echo("crm", row["id"], mapped)
    feed(sync, (1, change("G1", 2, {**VALUES, "city": "York"})))
    row = fake.records["G1"]
    mapped2 = rb.canonical([{k: v for k, v in row.items() if k in rb.mapping.columns}])[0]
    clock.now += 1.5
    assert mapped2 is not None and echo.is_echo("crm", row["id"], mapped2)  # read through the change feed
    assert echo.refresh() == 0


def test_echo_mask_for_a_batch(tmp_path: Path) -> None:
    fake = FakeTarget()
    sync = make_sync(tmp_path, fake)
    feed(sync, (0, change("G1", 1)))
    rb = sync.readback
    row = fake.records["G1"]
    mapped = rb.canonical([{k: v for k, v in row.items() if k in rb.mapping.columns}])[0]
    assert mapped is not None
    echo = EchoFilter(tmp_path)
    mask = echo.echo_mask("crm", [row["id"], row["id"]], [mapped, {**mapped, "city": "Other"}])
    assert mask == [True, False]
