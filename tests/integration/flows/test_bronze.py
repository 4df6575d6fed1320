"""The bronze dataflow on the real stack: every change in every demo system lands once."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg
import pytest
import yaml

from cdc.connect_client import ConnectClient
from cdc.connectors import ConnectorFile, load_connector
from cdc.pg import admin_dsn
from cdc.readiness import wait_running
from cdc.topics import ensure_topics
from core.settings import Settings
from sinks.delta.bronze import bronze_path, with_images
from tests.integration.helpers import FlowProcess, isolated_config, pg_lsn, read_delta, wait_for


@dataclass(frozen=True)
class Case:
    system: str
    schema: str
    table: str
    pk: str
    insert: str  # must RETURN the primary key
    update: str
    delete: str


UNICODE_NAME = "Zoë Ōtani-Łukasiewicz 山田 Ελένη Ærø"
CASES = [
    Case(
        "crm",
        "public",
        "accounts",
        "account_id",
        "INSERT INTO public.accounts (account_id, account_type, name, billing_country) "
        "VALUES (gen_random_uuid(), 'Person', %(name)s, 'Österreich') RETURNING account_id::text",
        "UPDATE public.accounts SET name = %(name2)s WHERE account_id = %(key)s::uuid",
        "DELETE FROM public.accounts WHERE account_id = %(key)s::uuid",
    ),
    Case(
        "erp",
        "erp",
        "debtors",
        "debtor_no",
        "INSERT INTO erp.debtors (debtor_no, name1, country, currency, created_on, changed_at) "
        "VALUES ('IT-' || substr(md5(random()::text), 1, 10), %(name)s, 'DE', 'EUR', '20240131', now()) "
        "RETURNING debtor_no",
        "UPDATE erp.debtors SET name1 = %(name2)s, changed_at = now() WHERE debtor_no = %(key)s",
        "DELETE FROM erp.debtors WHERE debtor_no = %(key)s",
    ),
    Case(
        "shop",
        "public",
        "customers",
        "customer_id",
        "INSERT INTO public.customers (email, first_name, last_name) "
        "VALUES ('it-' || md5(random()::text) || '@example.org', %(name)s, 'Test') "
        "RETURNING customer_id::text",
        "UPDATE public.customers SET first_name = %(name2)s WHERE customer_id = %(key)s::bigint",
        "DELETE FROM public.customers WHERE customer_id = %(key)s::bigint",
    ),
    Case(
        "billing",
        "billing",
        "accounts",
        "account_number",
        "INSERT INTO billing.accounts (account_number, holder_name, currency, created, updated) "
        "VALUES ('IT-' || substr(md5(random()::text), 1, 12), %(name)s, 'EUR', "
        "extract(epoch from now())::bigint, extract(epoch from now())::bigint) RETURNING account_number",
        "UPDATE billing.accounts SET holder_name = %(name2)s WHERE account_number = %(key)s",
        "DELETE FROM billing.accounts WHERE account_number = %(key)s",
    ),
]


def current_lsn(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return pg_lsn(row[0])


def key_matches(df: pl.DataFrame, pk: str, key: str) -> pl.DataFrame:
    keys = df["key"].map_elements(lambda k: str(json.loads(k)[pk]) if k else None, return_dtype=pl.String)
    return df.filter(keys == key)


@pytest.fixture
def bronze_flow(stack: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = isolated_config(tmp_path, stack)
    with FlowProcess(config, "bronze", "--no-dlq", log=tmp_path / "flow.log") as flow:
        yield tmp_path / "delta", flow


def test_every_change_lands_once_with_op_lsn_and_values(stack: Settings, bronze_flow) -> None:  # type: ignore[no-untyped-def]
    delta_root, flow = bronze_flow
    made: list[tuple[Case, str, int, int, str, str]] = []
    for case in CASES:
        name, name2 = f"{UNICODE_NAME} {uuid.uuid4().hex[:6]}", f"Renée Dvořák 李 {uuid.uuid4().hex[:6]}"
        with psycopg.connect(admin_dsn(stack, case.system), autocommit=True) as conn:
            lsn_before = current_lsn(conn)
            row = conn.execute(case.insert, {"name": name}).fetchone()
            assert row is not None
            key = str(row[0])
            conn.execute(case.update, {"name2": name2, "key": key})
            conn.execute(case.delete, {"key": key})
            lsn_after = current_lsn(conn)
        made.append((case, key, lsn_before, lsn_after, name, name2))

    for case, key, *_ in made:
        path = bronze_path(delta_root, case.system, case.schema, case.table)

        def arrived(case: Case = case, key: str = key, path: Path = path) -> pl.DataFrame | None:
            df = read_delta(path)
            if df is None:
                return None
            mine = key_matches(df, case.pk, key)
            return mine if mine.height >= 3 else None

        wait_for(f"{case.system}.{case.table} key {key} in bronze", arrived, timeout=180)
    time.sleep(3)  # anything duplicated would have landed by now
    assert flow.alive(), flow.tail()

    for case, key, lsn_before, lsn_after, name, name2 in made:
        df = read_delta(bronze_path(delta_root, case.system, case.schema, case.table))
        assert df is not None
        mine = with_images(key_matches(df, case.pk, key).sort("lsn"))
        assert mine["op"].to_list() == ["c", "u", "d"], (case.system, mine)
        assert mine.select(["partition", "offset"]).n_unique() == 3
        for lsn in mine["lsn"]:
            assert lsn_before <= lsn <= lsn_after
        assert (mine["system"] == case.system).all() and (mine["snapshot"] == "false").all()
        created, updated, deleted = (r for r in mine.iter_rows(named=True))
        name_col = {"crm": "name", "erp": "name1", "shop": "first_name", "billing": "holder_name"}[
            case.system
        ]
        assert json.loads(created["after"])[name_col] == name
        assert json.loads(updated["after"])[name_col] == name2
        assert deleted["after"] is None
        assert json.loads(deleted["before"])[case.pk] is not None


def _temporary_connector(base: ConnectorFile, tag: str) -> ConnectorFile:
    cfg = base.config.model_dump(by_alias=True)
    cfg.update({"topic.prefix": tag, "slot.name": tag})
    return ConnectorFile.model_validate(
        {"name": tag, "system": tag, "config": cfg, "topics": {"partitions": 2}}
    )


def test_pre_existing_rows_arrive_as_snapshot_reads(stack: Settings, tmp_path: Path) -> None:
    """A new connector snapshots existing rows: they land in bronze as op=r, once each."""
    repo_crm = load_connector(stack.config_dir / "connectors" / "crm.yaml")
    tag = f"snap{int(time.time())}"
    connector = _temporary_connector(repo_crm, tag)
    with psycopg.connect(admin_dsn(stack, "crm"), autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT account_id::text FROM public.accounts")}
    assert existing, "the seeded crm has accounts"
    ensure_topics(stack.kafka.bootstrap_servers, connector.table_topics(include_internal=True), partitions=2)
    client = ConnectClient(stack.connect.url)
    client.put_config(connector.name, connector.rest_config())
    try:
        wait_running(client, connector.name)
        config = isolated_config(tmp_path, stack)
        # the temporary connector is not in config/connectors: point a copy of the config dir at it
        conn_dir = tmp_path / "config" / "connectors"
        conn_dir.mkdir(parents=True)
        (conn_dir / f"{tag}.yaml").write_text(
            yaml.safe_dump(json.loads(connector.model_dump_json(by_alias=True)))
        )
        doc = yaml.safe_load(config.read_text())
        doc["config_dir"] = str(tmp_path / "config")
        config.write_text(yaml.safe_dump(doc))
        with FlowProcess(config, "bronze", "--no-dlq", log=tmp_path / "flow.log") as flow:
            path = bronze_path(tmp_path / "delta", tag, "public", "accounts")

            def snapshot_done() -> pl.DataFrame | None:
                df = read_delta(path)
                return (
                    df if df is not None and df.filter(pl.col("op") == "r").height >= len(existing) else None
                )

            df = wait_for("snapshot of crm.public.accounts in bronze", snapshot_done, timeout=180)
            assert flow.alive(), flow.tail()
        reads = df.filter(pl.col("op") == "r")
        keys = reads["key"].map_elements(lambda k: json.loads(k)["account_id"], return_dtype=pl.String)
        assert set(keys) >= existing
        assert keys.n_unique() == reads.height  # once each
        assert (reads["snapshot"] != "false").all()
        assert with_images(reads)["before"].is_null().all()
    finally:
        client.delete(connector.name)
        _drop_slot(stack, tag)


def _drop_slot(stack: Settings, slot: str) -> None:
    with psycopg.connect(admin_dsn(stack, "crm"), autocommit=True) as conn:
        for _ in range(30):
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(1)
