"""The demo CRM and ERP APIs as `goldstream stack up` runs them, over the real databases and Debezium.

What the propagation flow and the echo filter rely on: a write through the API is a database change
Debezium captures, carrying the API client in ``last_modified_by``; a no-op upsert writes nothing;
a direct edit in the database takes the marker away again.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc import stack
from cdc.pg import admin_dsn
from core.settings import Settings

pytestmark = pytest.mark.integration

CRM_ACCOUNTS = "crm.public.accounts"
ERP_DEBTORS = "erp.erp.debtors"


@pytest.fixture(scope="module")
def settings(stack: Settings) -> Settings:
    return stack


@pytest.fixture(scope="module")
def crm(settings: Settings) -> Iterator[httpx.Client]:
    api = settings.demo_apis.crm
    with httpx.Client(base_url=api.url, timeout=30) as client:
        response = client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": api.client_id,
                "client_secret": os.environ[api.secret_env],
            },
        )
        assert response.status_code == 200, response.text
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        yield client


@pytest.fixture(scope="module")
def erp(settings: Settings) -> Iterator[httpx.Client]:
    api = settings.demo_apis.erp
    with httpx.Client(
        base_url=api.url, timeout=30, headers={"X-API-Key": os.environ[api.secret_env]}
    ) as client:
        yield client


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return {"X-Admin-Token": os.environ[settings.demo_apis.admin_token_env]}


class Changes:
    """Debezium change events on one topic from the moment this object is created."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "group.id": f"test-demo-api-{uuid.uuid4()}",
            }
        )
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        assert meta.error is None, f"topic {topic} missing (connectors applied?)"
        starts = []
        for p in meta.partitions:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            starts.append(TopicPartition(topic, p, high))
        self.consumer.assign(starts)
        self.seen: list[dict[str, Any]] = []

    def wait(
        self, match: Callable[[dict[str, Any]], bool], *, count: int = 1, timeout: float = 90.0
    ) -> list[dict[str, Any]]:
        """The first ``count`` events (values) satisfying ``match``, in arrival order."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [e for e in self.seen if match(e)]
            if len(hits) >= count:
                return hits
            for msg in self.consumer.consume(500, 0.5):
                if msg.error() is None and msg.value():
                    self.seen.append(json.loads(msg.value()))
        raise AssertionError(f"{self.topic}: {count} matching change(s) not seen within {timeout:.0f} s")

    def close(self) -> None:
        self.consumer.close()


def _after(event: dict[str, Any]) -> dict[str, Any]:
    return event.get("after") or {}


def test_stack_runs_both_apis(settings: Settings) -> None:
    rows = {row.component: row for row in stack.status(settings)}
    for name in ("crm-api", "erp-api"):
        assert rows[name].up, rows[name]
        assert rows[name].pid is not None and rows[name].log.is_file()
    for api in (settings.demo_apis.crm, settings.demo_apis.erp):
        health = httpx.get(f"{api.url}/health", timeout=5).json()
        assert health["status"] == "ok" and health["database"] is True


def test_crm_upsert_is_a_debezium_change_with_the_origin_marker(
    settings: Settings, crm: httpx.Client
) -> None:
    client_id = settings.demo_apis.crm.client_id
    external_id = f"it-{uuid.uuid4()}"
    person = {"account_type": "Person", "name": "Grace Hopper", "billing_country": "United States"}
    changes = Changes(settings, CRM_ACCOUNTS)
    try:
        created = crm.put(f"/v1/accounts/by-external-id/{external_id}", json=person)
        assert created.status_code == 201, created.text
        account_id = created.json()["account_id"]

        def ours(e: dict[str, Any]) -> bool:
            return (
                _after(e).get("account_id") == account_id
                or (e.get("before") or {}).get("account_id") == account_id
            )

        (insert,) = changes.wait(ours)
        assert insert["op"] == "c"
        assert _after(insert)["external_id"] == external_id
        assert _after(insert)["last_modified_by"] == client_id
        assert _after(insert)["version"] == 1

        # The same payload again writes nothing; a real change is the next event, at version 2.
        assert (
            crm.put(f"/v1/accounts/by-external-id/{external_id}", json=person).headers["x-outcome"]
            == "unchanged"
        )
        changed = crm.put(f"/v1/accounts/by-external-id/{external_id}", json={"billing_city": "Arlington"})
        assert changed.headers["etag"] == '"2"'
        _, update = changes.wait(ours, count=2)
        assert update["op"] == "u"
        assert _after(update)["version"] == 2 and _after(update)["billing_city"] == "Arlington"
        assert _after(update)["last_modified_by"] == client_id

        # A user's edit straight in the database is not ours any more: the marker goes with it.
        with psycopg.connect(admin_dsn(settings, "crm")) as conn:
            conn.execute("UPDATE public.accounts SET phone = '555' WHERE account_id = %s", (account_id,))
        _, _, edit = changes.wait(ours, count=3)
        assert _after(edit)["last_modified_by"] == f"db:{settings.postgres.superuser}"
        assert _after(edit)["version"] == 3
        stale = crm.patch(f"/v1/accounts/{account_id}", json={"phone": "1"}, headers={"If-Match": '"2"'})
        assert stale.status_code == 412 and stale.headers["etag"] == '"3"'
    finally:
        changes.close()


def test_erp_upsert_is_a_debezium_change_with_the_origin_marker(
    settings: Settings, erp: httpx.Client
) -> None:
    external_id = f"it-{uuid.uuid4()}"
    changes = Changes(settings, ERP_DEBTORS)
    try:
        created = erp.put(
            f"/v1/debtors/by-external-id/{external_id}",
            json={"name1": "HOPPER, GRACE", "country": "US", "currency": "USD", "name2": None},
        )
        assert created.status_code == 201, created.text
        debtor_no = created.json()["debtor_no"]
        assert debtor_no.startswith("DX")
        blocked = erp.post(f"/v1/debtors/{debtor_no}/block", headers={"If-Match": '"1"'})
        assert blocked.status_code == 200 and blocked.json()["status"] == "I"
        insert, block = changes.wait(lambda e: _after(e).get("debtor_no") == debtor_no, count=2)
        assert insert["op"] == "c" and block["op"] == "u"
        assert _after(insert)["external_id"] == external_id and _after(insert)["name2"] == ""
        assert {_after(e)["last_modified_by"] for e in (insert, block)} == {settings.demo_apis.erp.client_id}
        assert (_after(block)["status"], _after(block)["version"]) == ("I", 2)
    finally:
        changes.close()


def test_concurrent_upserts_of_one_new_external_id_make_one_row(crm: httpx.Client) -> None:
    external_id = f"race-{uuid.uuid4()}"
    outcomes: list[str] = []

    def put(n: int) -> None:
        body = {"account_type": "Organization", "name": "Race Corp", "industry": f"I{n % 2}"}
        response = crm.put(f"/v1/accounts/by-external-id/{external_id}", json=body)
        outcomes.append(f"{response.status_code} {response.headers.get('x-outcome')}")

    threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("201 created") == 1, outcomes
    assert all(o.startswith("200") for o in outcomes if o != "201 created"), outcomes
    items = crm.get(f"/v1/accounts/by-external-id/{external_id}")
    assert items.status_code == 200


def test_batch_partial_failure_and_merge_on_the_real_database(settings: Settings, crm: httpx.Client) -> None:
    tag = uuid.uuid4()
    inputs = [
        {"external_id": f"b-{tag}-0", "properties": {"account_type": "Person", "name": "A"}},
        {
            "external_id": f"b-{tag}-1",
            "properties": {"account_type": "Person", "name": "B", "status": "Gone"},
        },
        {"external_id": f"b-{tag}-2", "properties": {"account_type": "Person", "name": "C"}},
    ]
    body = crm.post("/v1/accounts/batch", json={"inputs": inputs}).json()
    assert [r["status"] for r in body["results"]] == [201, 422, 201]
    survivor, retired = body["results"][0]["id"], body["results"][2]["id"]
    contact = crm.put(
        f"/v1/contacts/by-external-id/c-{tag}", json={"account_external_id": f"b-{tag}-2", "last_name": "C"}
    )
    assert contact.status_code == 201, contact.text

    merged = crm.post(
        f"/v1/accounts/{survivor}/merge", json={"retired_id": retired}, headers={"If-Match": '"1"'}
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["moved"] == {"contacts": 1, "opportunities": 0}
    assert merged.json()["retired"]["status"] == "Inactive"
    with psycopg.connect(admin_dsn(settings, "crm")) as conn:
        row = conn.execute(
            "SELECT account_id::text, version, last_modified_by FROM public.contacts WHERE external_id = %s",
            (f"c-{tag}",),
        ).fetchone()
    assert row == (survivor, 2, settings.demo_apis.crm.client_id)


def test_rate_limit_and_faults_on_the_running_service(
    settings: Settings, crm: httpx.Client, admin: dict[str, str]
) -> None:
    api = settings.demo_apis.crm
    try:
        crm.put(
            "/admin/rate-limit", json={"requests_per_second": 0.2, "burst": 2}, headers=admin
        ).raise_for_status()
        statuses = [crm.get("/v1/accounts", params={"page_size": 1}) for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert int(statuses[2].headers["retry-after"]) >= 1
    finally:
        crm.put(
            "/admin/rate-limit",
            json={"requests_per_second": api.rate_limit_per_s, "burst": api.rate_limit_burst},
            headers=admin,
        ).raise_for_status()
    try:
        # duration_s: even a failed test leaves no outage behind for anyone else using the stack.
        crm.post("/admin/faults", json={"outage": True, "duration_s": 30}, headers=admin).raise_for_status()
        down = crm.get("/v1/accounts", params={"page_size": 1})
        assert down.status_code == 503 and "retry-after" in down.headers
        assert httpx.get(f"{api.url}/health", timeout=5).json()["faults"]["outage"] is True
    finally:
        crm.delete("/admin/faults", headers=admin)
    assert crm.get("/v1/accounts", params={"page_size": 1}).status_code == 200
