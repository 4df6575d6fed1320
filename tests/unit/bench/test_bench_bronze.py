"""bench/bronze pieces that need no stack: the change plan, SQL text, the Delta log follower, checks."""

from pathlib import Path

import pytest

from bench.bronze.ceiling import format_ends, parse_ends
from bench.bronze.generate import (
    LAST_NAMES,
    SYSTEM,
    TOPIC,
    TopicData,
    chunks,
    config_hash,
    connector_file,
    insert_sql,
    plan,
)
from bench.bronze.measure import DeltaProgress, verify_bronze
from cdc.envelope import decode_batch, raw_batch
from core.settings import load_settings
from flows.bronze import BronzeWriter, Quarantine
from sinks.delta.bronze import bronze_path
from sinks.delta.maintenance import maintain
from tests.unit.cdc.test_envelope import value


@pytest.mark.parametrize("events", [1, 10, 999, 50_000, 123_457, 1_000_000])
def test_plan_adds_up_and_keeps_the_mix(events: int) -> None:
    p = plan(events, 50_000)
    assert p.inserts + p.updates + p.deletes == events
    assert p.messages == events + p.deletes
    if events >= 50_000:
        assert p.inserts / events == pytest.approx(0.80, abs=0.01)
        assert p.updates / events == pytest.approx(0.15, abs=0.01)
        assert p.deletes / events == pytest.approx(0.05, abs=0.01)


def test_chunks_only_touch_live_rows() -> None:
    live: set[int] = set()
    for c in chunks(200_000, 50_000):
        live.update(range(c.insert[0], c.insert[1] + 1))
        doomed = set(range(c.delete[0], c.delete[1] + 1))
        assert doomed <= live
        live -= doomed
        assert set(range(c.update[0], c.update[1] + 1)) <= live


def test_insert_sql_escapes_quotes_and_names_every_column() -> None:
    text = insert_sql(1, 10)
    assert "O''Brien" in text and "O'Brien'" not in text
    assert "generate_series(1::bigint, 10::bigint)" in text
    assert any(n == "O'Brien" for n, _ in LAST_NAMES)


def test_connector_copies_the_production_settings() -> None:
    settings = load_settings()
    conn = connector_file(settings)
    cfg = conn.rest_config()
    assert conn.system == SYSTEM and conn.table_topics() == [TOPIC]
    assert cfg["database.password"] == "${env:GOLDSTREAM_DB_PASSWORD}"
    assert cfg["value.converter.schemas.enable"] == "false"
    assert cfg["decimal.handling.mode"] == "string"
    assert "heartbeat.action.query" not in cfg
    assert config_hash(settings, 1000, 500) != config_hash(settings, 1001, 500)


def test_ends_round_trip() -> None:
    text = format_ends({0: 0, 1: 5}, {0: 10, 1: 12})
    assert text == "0:0:10,1:5:12"
    assert parse_ends(text) == {0: (0, 10), 1: (5, 12)}


def _topic_data(events: int, inserts: int, updates: int, deletes: int) -> TopicData:
    return TopicData(
        topic="crm.public.contacts",
        config_hash="x",
        events=events,
        messages=events + deletes,
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        tombstones=deletes,
        low={0: 0},
        high={0: events + deletes},
        generated_at="now",
        generation_s=0.0,
    )


def test_progress_and_checks_follow_the_bronze_table(tmp_path: Path) -> None:
    msgs: list[tuple[int, bytes | None, bytes | None]] = []
    for o in range(30):
        op = "c" if o < 20 else "u" if o < 27 else "d"
        after = None if op == "d" else {"id": o}
        msgs.append((o, b'{"id":%d}' % o, value(op, before={"id": o} if op == "d" else None, after=after)))
    msgs.append((30, b'{"id":29}', None))  # tombstone
    writer = BronzeWriter(tmp_path, Quarantine(tmp_path, dlq=None))
    table = bronze_path(tmp_path, "crm", "public", "contacts")
    progress = DeltaProgress(table)
    assert progress.poll() == 0
    writer.write(decode_batch(raw_batch("crm.public.contacts", 0, msgs[:10])))
    assert progress.poll() == 10 and progress.commits == 1
    writer.write(decode_batch(raw_batch("crm.public.contacts", 0, msgs[10:])))
    assert progress.poll() == 30 and progress.commits == 2
    assert progress.first_commit_at is not None and progress.last_commit_at >= progress.first_commit_at

    # a compaction re-adds the same rows (dataChange=false): they must not count again
    maintain(table, compact_min_files=2)
    assert progress.poll() == 30 and progress.commits == 2

    ok = verify_bronze(table, _topic_data(30, 20, 7, 3))
    assert ok["ok"], ok["problems"]
    bad = verify_bronze(table, _topic_data(31, 21, 7, 3))
    assert not bad["ok"] and len(bad["problems"]) == 2
