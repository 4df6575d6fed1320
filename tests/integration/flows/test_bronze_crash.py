"""Crash safety: kill -9 the bronze dataflow repeatedly under steady load; nothing lost, nothing twice.

After the load stops and a final run catches up, the bronze tables must hold exactly the change
messages Kafka holds (every (topic, partition, offset) once), and replaying bronze per key in LSN
order must give exactly the set of rows the source databases hold now.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import polars as pl
import psycopg

from cdc.connectors import load_connectors
from cdc.demo import load
from cdc.pg import admin_dsn
from cdc.topics import read_to_end
from core.settings import Settings
from flows.bronze import bronze_topics
from sinks.delta.bronze import bronze_path
from tests.integration.helpers import FlowProcess, isolated_config, read_delta, wait_for

KILLS = 6


def kafka_change_offsets(settings: Settings, topics: list[str]) -> set[tuple[str, int, int]]:
    """Every (topic, partition, offset) of a non-tombstone message currently in ``topics``."""
    messages = read_to_end(settings.kafka.bootstrap_servers, topics)
    return {(t, p, o) for t, p, o, _key, value in messages if value is not None}


def quarantined_positions(delta_root: Path) -> set[tuple[str, int, int]]:
    q = read_delta(delta_root / "quarantine")
    if q is None:
        return set()
    return set(zip(q["topic"], q["partition"], q["offset"], strict=True))


def bronze_rows(delta_root: Path) -> pl.DataFrame:
    frames = [pl.read_delta(str(p.parent)) for p in delta_root.glob("bronze/*/*/*/_delta_log")]
    return pl.concat(frames) if frames else pl.DataFrame()


def live_keys_from_bronze(df: pl.DataFrame) -> set[str]:
    """Replay one table's change log in LSN order: the keys alive at the end (a truncate clears all)."""
    live: set[str] = set()
    for op, key in df.sort(["lsn", "offset"]).select(["op", "key"]).iter_rows():
        if op == "t":
            live.clear()
        elif op == "d":
            live.discard(canonical_key(key))
        else:
            live.add(canonical_key(key))
    return live


def canonical_key(key_json: str) -> str:
    return json.dumps({k: str(v) for k, v in json.loads(key_json).items()}, sort_keys=True)


def live_keys_in_db(settings: Settings, db: str, schema: str, table: str) -> set[str]:
    with psycopg.connect(admin_dsn(settings, db)) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                (f"{schema}.{table}",),
            )
        ]
        select = ", ".join(f"{c}::text" for c in cols)
        rows = conn.execute(f"SELECT {select} FROM {schema}.{table}").fetchall()
    return {json.dumps(dict(zip(cols, r, strict=True)), sort_keys=True) for r in rows}


def test_kill9_under_load_keeps_every_change_exactly_once(stack: Settings, tmp_path: Path) -> None:
    config = isolated_config(tmp_path, stack, snapshot_interval_s=1, batch_size=500, batch_timeout_ms=200)
    connectors = load_connectors(stack.config_dir / "connectors")
    topics = bronze_topics(connectors)
    rng = random.Random(20261124)

    errors: list[BaseException] = []

    def run_load() -> None:
        try:
            load(stack, rate=120, duration=40, seed=99)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    loader = threading.Thread(target=run_load, daemon=True)
    loader.start()
    kills = 0
    log = tmp_path / "flow.log"
    while loader.is_alive() or kills < KILLS:
        flow = FlowProcess(config, "bronze", "--no-dlq", log=log).start()
        time.sleep(rng.uniform(1.0, 6.0))
        assert flow.alive(), flow.tail()
        flow.kill9()
        kills += 1
    loader.join()
    assert not errors, errors
    assert kills >= KILLS

    expected = kafka_change_offsets(stack, topics)
    with FlowProcess(config, "bronze", "--no-dlq", log=log) as flow:
        wait_for(
            f"bronze to catch up with {len(expected)} Kafka messages",
            lambda: (
                True
                if bronze_rows(tmp_path / "delta").height + len(quarantined_positions(tmp_path / "delta"))
                >= len(expected)
                else None
            ),
            timeout=300,
            every=2,
        )
        time.sleep(3)
        assert flow.alive(), flow.tail()

    df = bronze_rows(tmp_path / "delta")
    positions = list(zip(df["topic"], df["partition"], df["offset"], strict=True))
    dupes = [p for p, n in Counter(positions).items() if n > 1]
    assert not dupes, f"{len(dupes)} duplicated positions, e.g. {dupes[:5]}"
    # every Kafka change message is in bronze, or (if it was malformed) in quarantine
    assert set(positions) | quarantined_positions(tmp_path / "delta") == expected

    for c in connectors:
        for t in c.table_topics():
            _, schema, table = t.split(".")
            rows = read_delta(bronze_path(tmp_path / "delta", c.system, schema, table))
            in_bronze = live_keys_from_bronze(rows) if rows is not None else set()
            in_db = live_keys_in_db(stack, c.config.database_dbname, schema, table)
            assert in_bronze == in_db, (
                f"{c.system}.{schema}.{table}: {len(in_db - in_bronze)} rows missing from bronze, "
                f"{len(in_bronze - in_db)} extra"
            )
