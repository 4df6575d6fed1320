"""The whole loop on the real stack: source databases -> ingest (bronze, silver, resolution, gold)
-> golden topic -> propagation -> the CRM and ERP APIs -> Debezium -> ingest again, without loops.

Both dataflows run as their own processes (``python -m flows.worker ingest|propagate``) on one
isolated config with its own golden topic.
"""

from __future__ import annotations

import os
import random
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

from cdc.pg import admin_dsn
from core.golden import record_id
from core.settings import Settings
from sinks.delta.gold import read_crosswalk, read_golden, read_history
from sinks.delta.sync_log import sync_log_path
from tests.integration.flows.test_ingest_crash import db_record_ids
from tests.integration.flows.test_resolve import person
from tests.integration.helpers import FlowProcess, free_port, isolated_config, metric, read_delta, wait_for


@pytest.fixture(scope="module")
def crm(stack: Settings) -> Iterator[httpx.Client]:
    api = stack.demo_apis.crm
    with httpx.Client(base_url=api.url, timeout=30) as client:
        form = {"grant_type": "client_credentials", "client_id": api.client_id}
        form["client_secret"] = os.environ[api.secret_env]
        client.headers["Authorization"] = (
            f"Bearer {client.post('/oauth/token', data=form).json()['access_token']}"
        )
        yield client


@pytest.fixture(scope="module")
def erp(stack: Settings) -> Iterator[httpx.Client]:
    api = stack.demo_apis.erp
    with httpx.Client(
        base_url=api.url, timeout=30, headers={"X-API-Key": os.environ[api.secret_env]}
    ) as client:
        yield client


def by_external_id(client: httpx.Client, resource: str, golden_id: str) -> dict[str, Any] | None:
    r = client.get(f"/v1/{resource}/by-external-id/{golden_id}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def test_shop_edit_reaches_crm_and_erp_once_without_echo_and_a_crm_user_edit_reaches_the_erp(
    stack: Settings, tmp_path: Path, crm: httpx.Client, erp: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    # gold written every 2 s (default 15): the check below that an echo made no golden version
    # reads the gold history, and waits longer than this interval
    config = isolated_config(tmp_path, stack, gold_write_interval_s=2)
    doc = yaml.safe_load(config.read_text())
    doc["propagation"] = {"topics": {"customer": f"golden.customer.e2e{tag}"}}
    config.write_text(yaml.safe_dump(doc))
    delta = tmp_path / "delta"
    ingest_port = doc["dataflow"]["metrics_port"]

    with FlowProcess(config, "ingest", "--no-dlq", log=tmp_path / "ingest.log") as ingest:

        def caught_up() -> bool | None:
            if not (delta / "gold" / "crosswalk" / "_delta_log").exists():
                return None
            cw = read_crosswalk(delta, "customer").filter(~pl.col("deleted"))
            return True if set(cw["record_id"]) >= db_record_ids(stack) else None

        wait_for("ingest to resolve every existing customer", caught_up, timeout=300, every=3)
        # propagation starts at the end of the golden topic: only what happens from now on is pushed
        prop_port = free_port()
        prop_args = ("propagate", "--start=latest", f"--metrics-port={prop_port}")
        with FlowProcess(config, *prop_args, log=tmp_path / "propagate.log") as propagate:
            # its Kafka partitions must sit at the end of the topic before anything new is published:
            # each one declares its lag gauge once its start offset is resolved and assigned
            topic = doc["propagation"]["topics"]["customer"]

            def assigned() -> bool:
                try:
                    text = httpx.get(f"http://127.0.0.1:{prop_port}/metrics", timeout=5).text
                except httpx.HTTPError:
                    return False
                lags = {
                    m.group(1)
                    for line in text.splitlines()
                    if line.startswith("goldstream_consumer_lag_messages{") and f'topic="{topic}"' in line
                    for m in [re.search(r'partition="(\d+)"', line)]
                    if m is not None
                }
                return len(lags) >= stack.kafka.topic_partitions

            wait_for("the propagation flow's partitions to be assigned", assigned, timeout=120)
            assert propagate.alive(), propagate.tail()

            # a new customer: billing knows her address, currency and email; the shop her phone
            rnd = random.Random(tag)
            first, last = person(rnd)
            email = f"{first}.{last}.{tag}@example.se".lower()
            phone1, phone2 = (f"46{rnd.randrange(700_000_000, 799_999_999)}" for _ in range(2))
            street = f"Storgatan {rnd.randrange(1, 300)}"
            with psycopg.connect(admin_dsn(stack, "billing"), autocommit=True) as conn:
                key = f"E2E-{tag}"
                conn.execute(
                    "INSERT INTO billing.accounts (account_number, holder_name, email, address_line1, city, "
                    "postal_code, country, currency, created, updated) VALUES (%s, %s, %s, %s, 'Uppsala', "
                    "'753 10', 'SWE', 'sek', 1700000000, 1700000000)",
                    (key, f"{first} {last}", email, street),
                )
                billing = record_id("billing", "billing.accounts", key)
            with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
                row = conn.execute(
                    "INSERT INTO public.customers (email, first_name, last_name, phone) "
                    "VALUES (%s, %s, %s, %s) RETURNING customer_id::text",
                    (email.upper(), first, last, phone1),
                ).fetchone()
                assert row is not None
                shop_key = row[0]
                shop = record_id("shop", "public.customers", shop_key)

            def golden_of_both() -> str | None:
                cw = read_crosswalk(delta, "customer").filter(pl.col("record_id").is_in([billing, shop]))
                ids = set(cw["golden_id"].to_list())
                return ids.pop() if cw.height == 2 and len(ids) == 1 else None

            gid = wait_for("one golden record for the billing and shop records", golden_of_both, timeout=120)
            wait_for(
                "the CRM and the ERP to hold the new customer",
                lambda: (
                    (c := by_external_id(crm, "accounts", gid)) is not None
                    and (e := by_external_id(erp, "debtors", gid)) is not None
                    and c["phone"] == f"+{phone1}"
                    and e["telephone"] == f"+{phone1}"
                ),
                timeout=120,
            )

            # the customer changes her phone number in the shop
            edited = time.monotonic()
            with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
                conn.execute(
                    "UPDATE public.customers SET phone = %s WHERE customer_id = %s::bigint",
                    (phone2, shop_key),
                )
            wait_for(
                "the new phone in the CRM and the ERP",
                lambda: (
                    (c := by_external_id(crm, "accounts", gid)) is not None
                    and (e := by_external_id(erp, "debtors", gid)) is not None
                    and c["phone"] == f"+{phone2}"
                    and e["telephone"] == f"+{phone2}"
                ),
                timeout=120,
                every=0.2,
            )
            seconds = time.monotonic() - edited
            print(f"shop edit -> visible in CRM and ERP: {seconds:.1f}s")
            assert seconds < 60

            # our writes come back through Debezium: recognised as echoes, no new golden version
            wait_for(
                "the echo of our CRM and ERP writes to be suppressed",
                lambda: (
                    metric(ingest_port, "goldstream_echo_suppressed_total", system="crm") > 0
                    and metric(ingest_port, "goldstream_echo_suppressed_total", system="erp") > 0
                ),
                timeout=60,
            )
            # the gold tables trail the golden topic by up to dataflow.gold_write_interval_s
            wait_for(
                "the new phone in the gold table",
                lambda: read_golden(delta, "customer", gid).row(0, named=True)["phone"] == f"+{phone2}",
                timeout=60,
            )
            versions = read_history(delta, "customer", gid)["version"].to_list()
            time.sleep(8)  # 4 gold write intervals: a version made by an echo would show
            assert read_history(delta, "customer", gid)["version"].to_list() == versions
            log = read_delta(sync_log_path(delta))
            assert log is not None
            ok = log.filter((pl.col("golden_id") == gid) & (pl.col("status") == "ok"))
            per_target = ok.group_by("target", "version").len()
            assert set(per_target["target"]) == {"crm", "erp"}
            assert (per_target["len"] == 1).all(), per_target  # every version delivered once per target

            # a user corrects the name in the CRM (not through goldstream): it reaches the ERP
            crm_key = by_external_id(crm, "accounts", gid)
            assert crm_key is not None
            with psycopg.connect(admin_dsn(stack, "crm"), autocommit=True) as conn:
                conn.execute(
                    "UPDATE public.accounts SET name = %s WHERE external_id = %s",
                    (f"{first} Maria {last}", gid),
                )
            wait_for(
                "the CRM user's edit in the ERP",
                lambda: (
                    (e := by_external_id(erp, "debtors", gid)) is not None and "MARIA" in e["name1"].upper()
                ),
                timeout=120,
            )

            def edited_golden() -> dict[str, Any] | None:
                row = read_golden(delta, "customer", gid).row(0, named=True)
                return row if "Maria" in (row["full_name"] or "") else None

            golden = wait_for("the CRM user's edit in the gold table", edited_golden, timeout=60)
            prov = {p["field"]: p for p in golden["provenance"]}
            assert prov["full_name"]["source"] == "crm" and "Maria" in golden["full_name"]
            assert ingest.alive() and propagate.alive()
