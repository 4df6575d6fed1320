"""The propagation dataflow against the running demo CRM and ERP APIs, Kafka and Debezium.

Each test produces GoldenChange messages to its own golden topic (``propagation.topics`` in an
isolated config), runs ``python -m flows.propagate`` as a child process and looks at the targets
through their APIs, at the sync tables, and at the echo coming back through Debezium.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psycopg
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from cdc.pg import admin_dsn
from cdc.topics import ensure_topics
from core.golden import GoldenChange, content_hash, encode_change
from core.settings import Settings
from flows.canonical import map_batch
from flows.canonical.sample import Change, events_frame
from flows.propagate.config import load_targets
from flows.propagate.echo import EchoFilter
from flows.propagate.flow import readback_for
from sinks.delta.sync_log import open_ledger, pushed_path, sync_log_path
from tests.integration.helpers import FlowProcess, isolated_config, read_delta, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(stack: Settings) -> Settings:
    return stack


@pytest.fixture(scope="module")
def crm(settings: Settings) -> Iterator[httpx.Client]:
    api = settings.demo_apis.crm
    with httpx.Client(base_url=api.url, timeout=30) as client:
        token = client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": api.client_id,
                "client_secret": os.environ[api.secret_env],
            },
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture(scope="module")
def erp(settings: Settings) -> Iterator[httpx.Client]:
    api = settings.demo_apis.erp
    with httpx.Client(base_url=api.url, timeout=30, headers={"X-API-Key": os.environ[api.secret_env]}) as c:
        yield c


@pytest.fixture
def admin(settings: Settings) -> Iterator[dict[str, str]]:
    headers = {"X-Admin-Token": os.environ[settings.demo_apis.admin_token_env]}
    yield headers
    # Whatever a test injected, leave the services as the stack started them.
    for api in (settings.demo_apis.crm, settings.demo_apis.erp):
        httpx.delete(f"{api.url}/admin/faults", headers=headers, timeout=10)
        httpx.put(
            f"{api.url}/admin/rate-limit",
            headers=headers,
            json={"requests_per_second": api.rate_limit_per_s, "burst": api.rate_limit_burst},
            timeout=10,
        )


class Golden:
    """Produces golden changes to a unique topic and runs the propagation flow on it."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        self.topic = f"golden.customer.it-{uuid.uuid4().hex[:8]}"
        ensure_topics(settings.kafka.bootstrap_servers, [self.topic], partitions=2)
        self.config = isolated_config(tmp, settings, batch_timeout_ms=100, snapshot_interval_s=1.0)
        doc = yaml.safe_load(self.config.read_text())
        doc["propagation"] = {"topics": {"customer": self.topic}, "dlq_topic": f"{self.topic}.dlq"}
        self.config.write_text(yaml.safe_dump(doc))
        self.delta = tmp / "delta"
        self.metrics_port = int(doc["dataflow"]["metrics_port"])
        self.producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
        self.versions: dict[str, int] = {}
        self.run = uuid.uuid4().hex[:8]
        self.flow = FlowProcess(self.config, "--no-dlq", log=tmp / "propagate.log", module="flows.propagate")

    def gid(self, n: int) -> str:
        return f"it-{self.run}-{n}"

    def send(self, gid: str, values: dict[str, Any], **kw: Any) -> int:
        version = self.versions.get(gid, 0) + 1
        self.versions[gid] = version
        change = GoldenChange(
            "customer",
            gid,
            version,
            kw.pop("kind", "UPSERT"),
            values,
            {},
            tuple(values),
            (),
            int(time.time() * 1e6),
            content_hash=content_hash(values),
            **kw,
        )
        self.producer.produce(self.topic, key=gid.encode(), value=encode_change(change))
        return version

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def sync_log(self) -> pl.DataFrame:
        frame = read_delta(sync_log_path(self.delta))
        assert frame is not None, "no sync_log table"
        return frame

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


def person(n: int, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": "person",
        "status": "active",
        "full_name": f"Testa Person{n}",
        "first_name": "Testa",
        "last_name": f"Person{n}",
        "country": "DE",
        "currency": "EUR",
        "city": "Berlin",
        "street": f"Teststr. {n}",
        "postal_code": "10115",
        "phone": "+4930123456",
        "email": f"testa{n}@example.com",
    }
    values.update(over)
    return values


def get_crm(crm: httpx.Client, gid: str) -> dict[str, Any] | None:
    r = crm.get(f"/v1/accounts/by-external-id/{gid}")
    return r.json() if r.status_code == 200 else None


def get_erp(erp: httpx.Client, gid: str) -> dict[str, Any] | None:
    r = erp.get(f"/v1/debtors/by-external-id/{gid}")
    return r.json() if r.status_code == 200 else None


def debezium_after(settings: Settings, topic: str, key_field: str, key: str, *, timeout: float = 60) -> Any:
    """The latest Debezium ``after`` image of one row on a table topic (the real inbound path)."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"it-{uuid.uuid4()}"}
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = []
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        parts.append(TopicPartition(topic, p, max(low, high - 5000)))
    consumer.assign(parts)
    found: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, 1.0)
            for m in msgs:
                value = m.value()
                if m.error() is None and value:
                    event = json.loads(value)
                    after = event.get("after") or {}
                    if after.get(key_field) == key:
                        found.append((m.key(), after))
            if found and not msgs:
                return found[-1]
        raise AssertionError(f"no Debezium event for {key_field}={key} on {topic}")
    finally:
        consumer.close()


def test_changes_reach_crm_and_erp_once_and_their_echo_is_recognised(
    settings: Settings, crm: httpx.Client, erp: httpx.Client, tmp_path: Path
) -> None:
    g = Golden(settings, tmp_path)
    a, b = g.gid(1), g.gid(2)
    g.send(a, person(1))
    g.send(
        b,
        person(
            2,
            kind="organisation",
            organisation_name="Testa Widgets GmbH",
            full_name=None,
            first_name=None,
            last_name=None,
            tax_id="DE999999999",
        ),
    )
    g.flush()
    with g.flow:
        wait_for(
            "both records in the CRM and ERP",
            lambda: all(f(c, x) for f, c in ((get_crm, crm), (get_erp, erp)) for x in (a, b)),
            timeout=120,
        )
        sent_at = time.monotonic()
        g.send(a, person(1, city="Hamburg", postal_code="20095"))
        g.flush()
        wait_for("the update in the CRM", lambda: (get_crm(crm, a) or {}).get("billing_city") == "Hamburg")
        wait_for("the update in the ERP", lambda: (get_erp(erp, a) or {}).get("city") == "Hamburg")
        seconds = time.monotonic() - sent_at
        assert seconds < 15, seconds
        time.sleep(2)  # anything sent twice would show up by now
    crm_a, erp_a = get_crm(crm, a), get_erp(erp, a)
    assert crm_a is not None and erp_a is not None
    assert crm_a["version"] == 2 and erp_a["version"] == 2  # one create + one update: nothing twice
    assert crm_a["last_modified_by"] == settings.demo_apis.crm.client_id
    assert erp_a["name1"] == "Person1, Testa"
    log = g.sync_log()
    ok = log.filter(pl.col("status") == "ok")
    assert ok.group_by("target", "golden_id", "version", "operation").len()["len"].max() == 1
    assert set(ok.filter(pl.col("golden_id") == a)["operation"]) == {"create", "update"}
    updates = ok.filter((pl.col("golden_id") == a) & (pl.col("operation") == "update")).sort("target")
    assert updates["fields"].to_list() == [["billing_city", "billing_postal_code"], ["city", "postal_code"]]

    # The echo, through the real Debezium path: the row we wrote, mapped by the inbound mapping,
    # hashes to what we recorded; the echo filter drops it; a user's edit afterwards passes.
    echo = EchoFilter(g.delta, refresh_s=0, miss_refresh_s=0)
    pushed = pl.read_delta(str(pushed_path(g.delta))).filter(pl.col("phase") == "done")
    for cfg in load_targets(settings):
        rb = readback_for(cfg, settings.config_dir)
        record = crm_a if cfg.target == "crm" else erp_a
        key_field = rb.mapping.key[0]
        topic = f"{cfg.system}.{rb.mapping.schema}.{rb.mapping.table}"
        key, after = debezium_after(settings, topic, key_field, record[key_field])
        frame = events_frame(rb.mapping, [Change("u", key=key.decode(), after=json.dumps(after))])
        mapped = map_batch(rb.mapping, frame).records.to_dicts()[0]
        values = {f.name: mapped[f.name] for f in rb.mapping.fields}
        latest = pushed.filter((pl.col("target") == cfg.target) & (pl.col("golden_id") == a)).sort("version")
        assert content_hash(values, rb.echo_fields) == latest["content_hash"][-1], cfg.target
        assert echo.is_echo(cfg.system, str(record[key_field]), values, modified_by=after["last_modified_by"])
        edited = {**values, "city": "Edited By A User"}
        assert not echo.is_echo(cfg.system, str(record[key_field]), edited)


def test_erp_outage_does_not_stop_the_crm_and_everything_arrives_once_in_order(
    settings: Settings, crm: httpx.Client, erp: httpx.Client, admin: dict[str, str], tmp_path: Path
) -> None:
    g = Golden(settings, tmp_path)
    erp_url = settings.demo_apis.erp.url
    ids = [g.gid(n) for n in range(12)]
    with g.flow:
        for n, gid in enumerate(ids):
            g.send(gid, person(n))
        g.flush()
        wait_for("the first versions in the ERP", lambda: all(get_erp(erp, x) for x in ids), timeout=120)
        down = httpx.post(f"{erp_url}/admin/faults", headers=admin, json={"outage": True, "retry_after_s": 1})
        assert down.status_code == 200
        try:
            # Steady load while the ERP is down: three more versions per record, a few per second.
            for round_ in range(1, 4):
                for n, gid in enumerate(ids):
                    g.send(gid, person(n, city=f"City{round_}"))
                g.flush()
                time.sleep(1.0)
            wait_for(
                "the CRM to receive everything while the ERP is down",
                lambda: all((get_crm(crm, x) or {}).get("billing_city") == "City3" for x in ids),
                timeout=90,
            )
            wait_for(  # the breaker opens: the ERP branch pauses instead of spinning
                "the ERP breaker to open",
                lambda: g.metric("goldstream_target_breaker_state", target="erp") >= 1,
                timeout=60,
            )
            erp_requests = g.metric("goldstream_target_requests_total", target="erp")
            time.sleep(5)
            # While open, at most a probe every reset timeout goes out (not a request per message).
            assert g.metric("goldstream_target_requests_total", target="erp") - erp_requests <= 3
        finally:
            httpx.delete(f"{erp_url}/admin/faults", headers=admin)
        wait_for(
            "the ERP to catch up after the outage",
            lambda: all((get_erp(erp, x) or {}).get("city") == "City3" for x in ids),
            timeout=120,
        )
        time.sleep(2)
    log = g.sync_log()
    for target, client, getter in (("crm", crm, get_crm), ("erp", erp, get_erp)):
        ok = log.filter((pl.col("status") == "ok") & (pl.col("target") == target))
        for gid in ids:
            mine = ok.filter(pl.col("golden_id") == gid).sort("offset")
            versions = mine["version"].to_list()
            assert versions == sorted(versions) and len(set(versions)) == len(versions), (target, gid)
            record = getter(client, gid)
            assert record is not None
            assert record["version"] == mine.height, (target, gid)  # each write landed exactly once
    assert open_ledger(g.delta) == []


def test_rate_limit_retry_after_and_one_bad_record_in_a_batch(
    settings: Settings, crm: httpx.Client, admin: dict[str, str], tmp_path: Path
) -> None:
    g = Golden(settings, tmp_path)
    crm_url = settings.demo_apis.crm.url
    limit = httpx.put(
        f"{crm_url}/admin/rate-limit", headers=admin, json={"requests_per_second": 1, "burst": 1}
    )
    assert limit.status_code == 200
    ids = [g.gid(n) for n in range(30)]
    bad = ids[7]
    for n, gid in enumerate(ids):
        g.send(gid, person(n, currency="EURO") if gid == bad else person(n))  # the CRM refuses EURO
    g.flush()

    def in_crm() -> set[str]:
        # Read the database, not the API: polling the API would spend the very tokens being tested.
        with psycopg.connect(admin_dsn(settings, "crm")) as conn:
            rows = conn.execute("SELECT external_id FROM accounts WHERE external_id = ANY(%s)", (ids,))
            return {r[0] for r in rows}

    with g.flow:
        wait_for("every good record in the CRM", lambda: in_crm() == set(ids) - {bad}, timeout=180)
        wait_for("the bad record in the ledger", lambda: open_ledger(g.delta, "crm") or None, timeout=60)
        assert g.metric("goldstream_target_retries_total", target="crm", reason="rate_limited") >= 1
        assert g.metric("goldstream_target_requests_total", target="crm", status="4xx") >= 1
    assert bad not in in_crm()
    [entry] = open_ledger(g.delta, "crm")
    assert entry["golden_id"] == bad and re.search(r"HTTP 422", entry["error"] or "")


def test_kill_9_and_restart_delivers_every_change_once(
    settings: Settings, crm: httpx.Client, tmp_path: Path
) -> None:
    g = Golden(settings, tmp_path)
    ids = [g.gid(n) for n in range(40)]
    for n, gid in enumerate(ids):
        g.send(gid, person(n))
    g.flush()
    g.flow = FlowProcess(
        g.config, "--no-dlq", "--only", "crm", log=tmp_path / "p1.log", module="flows.propagate"
    )
    with g.flow:
        wait_for("a first record in the CRM", lambda: get_crm(crm, ids[0]), timeout=120)
        for n, gid in enumerate(ids):
            g.send(gid, person(n, city="AfterCrash"))
        g.flush()
        time.sleep(0.3)
        g.flow.kill9()  # no final snapshot, maybe mid-batch
    restarted = FlowProcess(
        g.config, "--no-dlq", "--only", "crm", log=tmp_path / "p2.log", module="flows.propagate"
    )
    with restarted:
        wait_for(
            "every record's last version in the CRM",
            lambda: all((get_crm(crm, x) or {}).get("billing_city") == "AfterCrash" for x in ids),
            timeout=120,
        )
        time.sleep(2)
    ok = g.sync_log().filter(pl.col("status") == "ok")
    assert ok.group_by("golden_id", "version", "operation").len()["len"].max() == 1  # logged once
    for gid in ids:
        record = get_crm(crm, gid)
        assert record is not None and record["version"] == 2, gid  # created once, updated once
