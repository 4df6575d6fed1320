"""Crash safety of the whole ingest flow: kill -9 it repeatedly under steady load, then let it catch up.

Silver must then hold exactly the source databases' live rows (per customer table), and the gold
tables must agree with silver and with themselves: every live record in the crosswalk, pointing to an
active golden record that lists it as a member, no (golden id, version) twice in the history.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import polars as pl
import psycopg
import yaml

from cdc.demo import load
from cdc.pg import admin_dsn
from core.golden import record_id
from core.settings import Settings
from sinks.delta.gold import gold_paths, read_crosswalk, read_golden, read_history
from sinks.delta.silver import read_current, silver_path
from tests.integration.helpers import FlowProcess, isolated_config, metric, wait_for

KILLS = 3
#: The customer source tables: (database, schema, table, primary-key columns in key order).
CUSTOMER_TABLES = [
    ("crm", "public", "contacts", ["contact_id"]),
    ("crm", "public", "accounts", ["account_id"]),
    ("erp", "erp", "debtors", ["debtor_no"]),
    ("shop", "public", "customers", ["customer_id"]),
    ("billing", "billing", "accounts", ["account_number"]),
]


def db_record_ids(settings: Settings) -> set[str]:
    out: set[str] = set()
    for db, schema, table, pk in CUSTOMER_TABLES:
        with psycopg.connect(admin_dsn(settings, db)) as conn:
            cols = " || '|' || ".join(f"{c}::text" for c in pk)
            for (key,) in conn.execute(f"SELECT {cols} FROM {schema}.{table}"):
                out.add(record_id(db, f"{schema}.{table}", key))
    return out


def live_silver(delta_root: Path) -> set[str]:
    """Record ids of the live (not soft-deleted) silver customers from the customer tables."""
    path = silver_path(delta_root, "customer")
    if not (path / "_delta_log").exists():
        return set()
    wanted = {(db, f"{schema}.{table}") for db, schema, table, _pk in CUSTOMER_TABLES}
    rows = read_current(path).select("source_system", "source_table", "source_key").iter_rows()
    return {record_id(s, t, k) for s, t, k in rows if (s, t) in wanted}


def test_kill9_under_load_leaves_silver_and_gold_consistent(stack: Settings, tmp_path: Path) -> None:
    config = isolated_config(tmp_path, stack, snapshot_interval_s=1, batch_size=500, batch_timeout_ms=200)
    delta = tmp_path / "delta"
    rng = random.Random(20261125)
    errors: list[BaseException] = []

    def run_load() -> None:
        try:
            load(stack, rate=60, duration=25, seed=7)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    loader = threading.Thread(target=run_load, daemon=True)
    loader.start()
    kills = 0
    log = tmp_path / "flow.log"
    while loader.is_alive() or kills < KILLS:
        flow = FlowProcess(config, "ingest", "--no-dlq", log=log).start()
        time.sleep(rng.uniform(2.0, 8.0))
        assert flow.alive(), flow.tail()
        flow.kill9()
        kills += 1
    loader.join()
    assert not errors, errors

    with FlowProcess(config, "ingest", "--no-dlq", log=log) as flow:

        def caught_up() -> bool | None:
            expected = db_record_ids(stack)
            if live_silver(delta) != expected:
                return None
            paths = gold_paths(delta, "customer")
            if not (paths.crosswalk / "_delta_log").exists():
                return None
            cw = read_crosswalk(delta, "customer").filter(~pl.col("deleted"))
            return True if set(cw["record_id"]) >= expected else None

        wait_for("silver and gold to catch up with the source rows", caught_up, timeout=600, every=3)
        time.sleep(3)  # let the last golden batch land
        assert flow.alive(), flow.tail()

    expected = db_record_ids(stack)
    assert live_silver(delta) == expected  # nothing lost, nothing resurrected, per source row
    cw = read_crosswalk(delta, "customer")
    assert cw["record_id"].n_unique() == cw.height
    live = cw.filter(pl.col("record_id").is_in(list(expected)))
    assert live.height == len(expected) and not live["deleted"].any()
    golden = read_golden(delta, "customer")
    assert golden["golden_id"].n_unique() == golden.height
    active = golden.filter(pl.col("golden_status") == "active")
    members = {m: g for g, ms in zip(active["golden_id"], active["members"], strict=True) for m in ms}
    for rid, gid in zip(live["record_id"], live["golden_id"], strict=True):
        assert members.get(rid) == gid, f"{rid}: crosswalk says {gid}, golden members say {members.get(rid)}"
    history = read_history(delta, "customer")
    pairs = Counter(zip(history["golden_id"], history["version"], strict=True))
    assert not [p for p, n in pairs.items() if n > 1]
    current = history.filter(pl.col("valid_to").is_null())
    assert current["golden_id"].n_unique() == current.height  # one open version per golden id


def test_a_merge_queued_at_a_crash_lands_after_the_restart_without_new_changes(
    stack: Settings, tmp_path: Path
) -> None:
    """kill -9 while a silver MERGE waits for the write interval, then restart with nothing new to
    read: the MERGE must come from the recovery snapshot (the source has moved past the change)."""
    # a MERGE as the first change of a table arrives, then none for 5 minutes; an epoch every second
    config = isolated_config(tmp_path, stack, snapshot_interval_s=1, silver_write_interval_s=300)
    port = int(yaml.safe_load(config.read_text())["dataflow"]["metrics_port"])
    delta = tmp_path / "delta"
    log = tmp_path / "flow.log"
    flow = FlowProcess(config, "ingest", "--no-dlq", log=log).start()
    try:
        last: list[float] = []

        def taken() -> float | None:
            """Messages the source has emitted, or None while the metrics endpoint is not up."""
            try:
                return metric(port, "goldstream_stage_events_in_total", stage="source")
            except httpx.HTTPError:
                return None

        def idle() -> bool | None:
            # caught up: the source took nothing new for 3 s
            n = taken()
            if n is None:
                return None
            last.append(n)
            return True if len(last) > 6 and last[-1] > 0 and last[-1] == last[-7] else None

        wait_for("the ingest flow to catch up", idle, timeout=300, every=0.5)
        with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO public.customers (email, first_name, last_name) "
                "VALUES (%s, 'Queued', 'Merge') RETURNING customer_id::text",
                (f"queued.{time.time_ns()}@example.org",),
            ).fetchone()
        assert row is not None
        rid = record_id("shop", "public.customers", row[0])

        def read() -> bool | None:
            n = taken()
            return True if n is not None and n > last[-1] else None

        wait_for("the insert to be read", read, timeout=60)
        time.sleep(4)  # several epochs close: the source's snapshot is past the insert
        assert flow.alive(), flow.tail()
        assert rid not in live_silver(delta), "the MERGE ran before the crash: nothing to test"
        flow.kill9()
    finally:
        if flow.alive():
            flow.kill9()

    with FlowProcess(config, "ingest", "--no-dlq", log=log) as restarted:
        wait_for(f"{rid} in silver", lambda: True if rid in live_silver(delta) else None, timeout=120)
        assert restarted.alive(), restarted.tail()
