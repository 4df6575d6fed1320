"""The ingest dataflow on the real stack: source changes reach silver as canonical values.

One flow process (``python -m flows.worker ingest``) runs for the module; each test makes changes in
the demo databases (so Debezium captures them for real) and waits for their silver rows.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
import yaml
from confluent_kafka import Producer

from cdc.pg import admin_dsn
from cdc.topics import ensure_topics
from core.settings import Settings
from sinks.delta.silver import read_current, silver_path
from tests.integration.helpers import (
    REPO,
    FlowProcess,
    isolated_config,
    read_delta,
    wait_for,
    with_connectors,
)


@pytest.fixture(scope="module")
def ingest(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FlowProcess]]:
    tmp = tmp_path_factory.mktemp("ingest")
    config = isolated_config(tmp, stack)
    with FlowProcess(config, "ingest", "--no-dlq", "--no-resolve", log=tmp / "flow.log") as flow:
        yield tmp / "delta", flow


def silver_rows(delta_root: Path, system: str, keys: set[str], n: int | None = None) -> pl.DataFrame | None:
    path = silver_path(delta_root, "customer")
    if not (path / "_delta_log").exists():
        return None
    df = read_current(path, include_deleted=True).filter(
        (pl.col("source_system") == system) & pl.col("source_key").is_in(list(keys))
    )
    return df if df.height >= (n if n is not None else len(keys)) else None


def test_changes_in_each_demo_system_reach_silver_as_canonical_values(
    stack: Settings, ingest: tuple[Path, FlowProcess]
) -> None:
    delta_root, flow = ingest
    tag = uuid.uuid4().hex[:8]
    keys: dict[str, str] = {}
    with psycopg.connect(admin_dsn(stack, "crm"), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.accounts (account_id, account_type, name, billing_country) "
            "VALUES (gen_random_uuid(), 'Person', 'Zoë Łukasiewicz', 'Germany') RETURNING account_id"
        ).fetchone()
        assert row is not None
        row = conn.execute(
            "INSERT INTO public.contacts (account_id, first_name, last_name, email, phone, birthdate, "
            "mailing_country, status) VALUES (%s, 'zoë', 'ŁUKASIEWICZ', %s, '030 1234567', '1980-01-01', "
            "'Germany', 'Active') RETURNING contact_id::text",
            (row[0], f"  Zoe.{tag}@Example.COM "),
        ).fetchone()
        assert row is not None
        keys["crm"] = row[0]
    with psycopg.connect(admin_dsn(stack, "erp"), autocommit=True) as conn:
        key = f"IT{tag}"
        conn.execute(
            "INSERT INTO erp.debtors (debtor_no, name1, country, telephone, currency, status, created_on, "
            "changed_at) VALUES (%s, 'MUELLER, HANS', 'DE', '0049-30-1234567', 'EUR', 'I', '01/31/2024', "
            "'2024-02-01 10:00:00')",
            (key,),
        )
        keys["erp"] = key
    with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.customers (email, first_name, last_name, date_of_birth, is_active) "
            "VALUES (%s, '  renée ', 'DVOŘÁK', '07/04/1975', 0) RETURNING customer_id::text",
            (f"Renee.{tag}@Example.org",),
        ).fetchone()
        assert row is not None
        keys["shop"] = row[0]
    with psycopg.connect(admin_dsn(stack, "billing"), autocommit=True) as conn:
        key = f"IT-{tag}"
        conn.execute(
            "INSERT INTO billing.accounts (account_number, holder_name, company_name, country, currency, "
            "created, updated) VALUES (%s, 'Ann Lee', 'Analytical Engines Ltd', 'GBR', 'gbp', 1700000000, "
            "1700000000)",
            (key,),
        )
        keys["billing"] = key

    got = {
        system: wait_for(
            f"{system} key {key} in silver",
            lambda s=system, k=key: silver_rows(delta_root, s, {k}),  # type: ignore[misc]
            timeout=180,
        ).row(0, named=True)
        for system, key in keys.items()
    }
    assert flow.alive(), flow.tail()

    crm = got["crm"]
    assert (crm["kind"], crm["status"]) == ("person", "active")
    assert (crm["first_name"], crm["last_name"], crm["full_name"]) == (
        "Zoë",
        "Łukasiewicz",
        "Zoë Łukasiewicz",
    )
    assert crm["email"] == f"zoe.{tag}@example.com"
    assert (crm["country"], crm["phone"]) == ("DE", "+49301234567")
    assert crm["birth_date"] == dt.date(1980, 1, 1)
    assert crm["source_table"] == "public.contacts" and crm["lsn"] > 0 and not crm["deleted"]

    erp = got["erp"]
    assert (erp["kind"], erp["status"]) == ("person", "inactive")
    assert (erp["first_name"], erp["last_name"]) == ("Hans", "Mueller")
    assert (erp["phone"], erp["currency"], erp["country"]) == ("+49301234567", "EUR", "DE")
    assert erp["created_at"] == dt.datetime(2024, 1, 31, tzinfo=dt.UTC)

    shop = got["shop"]
    assert (shop["first_name"], shop["last_name"]) == ("Renée", "Dvořák")
    assert shop["status"] == "inactive" and shop["birth_date"] == dt.date(1975, 7, 4)
    assert shop["email"] == f"renee.{tag}@example.org"

    billing = got["billing"]
    assert (billing["kind"], billing["organisation_name"]) == ("organisation", "Analytical Engines Ltd")
    assert (billing["country"], billing["currency"]) == ("GB", "GBP")
    assert billing["created_at"] == dt.datetime.fromtimestamp(1700000000, dt.UTC)

    # an update and a delete follow: the silver row changes, then carries the soft-delete marker
    with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
        conn.execute(
            "UPDATE public.customers SET is_active = 1 WHERE customer_id = %s::bigint", (keys["shop"],)
        )
    wait_for(
        "the shop update in silver",
        lambda: (
            (r := silver_rows(delta_root, "shop", {keys["shop"]})) is not None and r["status"][0] == "active"
        ),
        timeout=120,
    )
    with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
        conn.execute("DELETE FROM public.customers WHERE customer_id = %s::bigint", (keys["shop"],))
    deleted = wait_for(
        "the shop delete in silver",
        lambda: (r := silver_rows(delta_root, "shop", {keys["shop"]})) is not None and r["deleted"][0] and r,
        timeout=120,
    )
    assert deleted["op"][0] == "d"


def test_a_column_added_while_the_flow_runs_is_kept_under_the_evolve_policy(
    stack: Settings, ingest: tuple[Path, FlowProcess]
) -> None:
    delta_root, flow = ingest
    column = f"loyalty_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE public.customers ADD COLUMN {column} text")
        try:
            row = conn.execute(
                f"INSERT INTO public.customers (email, first_name, last_name, {column}) "
                "VALUES (%s, 'Ada', 'Lovelace', 'gold') RETURNING customer_id::text",
                (f"ada.{column}@example.org",),
            ).fetchone()
            assert row is not None
            key = row[0]
            df = wait_for(
                f"shop key {key} in silver", lambda: silver_rows(delta_root, "shop", {key}), timeout=180
            )
        finally:
            conn.execute(f"ALTER TABLE public.customers DROP COLUMN {column}")
    rec = df.row(0, named=True)
    assert json.loads(rec["extras"]) == {column: "gold"}  # the default policy never loses data
    assert (rec["first_name"], rec["email"]) == ("Ada", f"ada.{column}@example.org")
    assert flow.alive(), flow.tail()


def test_malformed_records_are_quarantined_while_good_ones_reach_silver(
    stack: Settings, tmp_path: Path
) -> None:
    """A scratch copy of the shop's customers topic gets good changes mixed with ones that cannot map."""
    tag = f"ing{int(time.time())}"
    topic, dlq_topic = f"{tag}.public.customers", f"goldstream.dlq.{tag}"
    ensure_topics(stack.kafka.bootstrap_servers, [topic, dlq_topic], partitions=1)
    cfg = tmp_path / "cfg"
    shutil.copytree(REPO / "config", cfg, ignore=shutil.ignore_patterns("connectors"))
    (cfg / "connectors").mkdir()
    doc = yaml.safe_load((REPO / "config" / "connectors" / "shop.yaml").read_text())
    doc.update({"name": tag, "system": tag})
    doc["config"].update({"topic.prefix": tag, "slot.name": tag, "table.include.list": "public.customers"})
    (cfg / "connectors" / f"{tag}.yaml").write_text(yaml.safe_dump(doc))
    mapping = yaml.safe_load((REPO / "config" / "mappings" / "shop" / "customers.yaml").read_text())
    mapping["source"]["system"] = tag
    (cfg / "mappings" / tag).mkdir()
    (cfg / "mappings" / tag / "customers.yaml").write_text(yaml.safe_dump(mapping, allow_unicode=True))

    def envelope(cid: int, is_active: object, lsn: int) -> bytes:
        after = {
            "customer_id": cid,
            "email": f"c{cid}@example.org",
            "first_name": "Grace",
            "last_name": "Hopper",
            "phone": "",
            "date_of_birth": "",
            "is_active": is_active,
            "newsletter": False,
            "preferences": "{}",
            "created_at": 1700000000000000,
            "last_login_at": None,
        }
        source = {
            "version": "3.6.1.Final",
            "connector": "postgresql",
            "name": tag,
            "ts_ms": 1700000000000,
            "ts_us": 1700000000000000,
            "snapshot": "false",
            "db": "shop",
            "schema": "public",
            "table": "customers",
            "txId": 900 + cid,
            "lsn": lsn,
        }
        env = {"before": None, "after": after, "source": source, "op": "c", "ts_ms": 1700000000001}
        return json.dumps(env).encode()

    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers})
    bad = {3, 4, 7}
    for cid in range(1, 11):
        producer.produce(
            topic,
            key=json.dumps({"customer_id": cid}).encode(),
            value=envelope(cid, 9 if cid in bad else 1, 1000 + cid),
        )
    assert producer.flush(30) == 0

    config = with_connectors(isolated_config(tmp_path, stack, dlq_topic=dlq_topic), cfg)
    with FlowProcess(config, "ingest", "--no-resolve", log=tmp_path / "flow.log") as flow:
        delta = tmp_path / "delta"
        good = {str(c) for c in range(1, 11) if c not in bad}

        def landed() -> tuple[pl.DataFrame, pl.DataFrame] | None:
            q = read_delta(delta / "quarantine")
            s = silver_rows(delta, tag, good)
            if q is None or s is None or q.height < len(bad):
                return None
            return q, s

        quarantine, silver = wait_for("rejects in quarantine and good rows in silver", landed, timeout=120)
        time.sleep(2)
        assert flow.alive(), flow.tail()
    assert sorted(silver["source_key"].to_list()) == sorted(good)
    assert (silver["status"] == "active").all()
    assert quarantine.height == len(bad)
    assert set(quarantine["stage"]) == {"mapping"} and set(quarantine["topic"]) == {topic}
    assert sorted(quarantine["offset"].to_list()) == sorted(c - 1 for c in bad)
    assert all("is_active" in d or "status" in d for d in quarantine["detail"])
    # the original message is kept, so `goldstream dlq replay` can re-send it after a fix
    assert json.loads(quarantine["value"][0])["source"]["table"] == "customers"
