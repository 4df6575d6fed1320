"""Malformed messages on a real topic: quarantined + published to the DLQ, the flow keeps going.

Uses real Debezium messages captured from our stack (tests/fixtures/debezium) re-published to a
scratch topic, interleaved with garbage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from cdc.topics import ensure_topics
from core.settings import Settings
from sinks.delta.bronze import bronze_path
from tests.integration.helpers import FlowProcess, isolated_config, read_delta, wait_for, with_connectors

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "debezium" / "messages.json"
SOURCE = {"name": "x", "db": "crm", "schema": "fixture", "table": "people", "ts_ms": 1}
GARBAGE = [
    b"not json at all",
    b'{"op":"c"}',
    json.dumps({"op": "z", "source": SOURCE, "after": {"id": 1}}).encode(),
    b"[1,2,3]",
    b"\xff\xfe\x00",
]


def test_malformed_messages_are_quarantined_and_sent_to_the_dlq(stack: Settings, tmp_path: Path) -> None:
    tag = f"dlq{int(time.time())}"
    topic, dlq_topic = f"{tag}.fixture.people", f"goldstream.dlq.{tag}"
    ensure_topics(stack.kafka.bootstrap_servers, [topic, dlq_topic], partitions=2)
    good = [
        m
        for m in json.loads(FIXTURES.read_text("utf-8"))
        if m["topic"] == "fixture.fixture.people" and m["value"] is not None
    ]
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers})
    sent_bad = 0
    for i, m in enumerate(good):
        producer.produce(
            topic, key=m["key"].encode() if m["key"] else None, value=m["value"].encode(), partition=i % 2
        )
        if i < len(GARBAGE):
            producer.produce(topic, key=b'{"id":0}', value=GARBAGE[i], partition=i % 2)
            sent_bad += 1
    assert producer.flush(30) == 0

    # a connectors folder whose only connector captures the scratch topic's table
    conn_dir = tmp_path / "cfg" / "connectors"
    conn_dir.mkdir(parents=True)
    doc = yaml.safe_load((stack.config_dir / "connectors" / "crm.yaml").read_text())
    doc.update({"name": tag, "system": tag})
    doc["config"].update({"topic.prefix": tag, "slot.name": tag, "table.include.list": "fixture.people"})
    (conn_dir / f"{tag}.yaml").write_text(yaml.safe_dump(doc))
    config = with_connectors(isolated_config(tmp_path, stack, dlq_topic=dlq_topic), tmp_path / "cfg")

    with FlowProcess(config, "bronze", log=tmp_path / "flow.log") as flow:
        delta = tmp_path / "delta"

        def landed() -> tuple[pl.DataFrame, pl.DataFrame] | None:
            q = read_delta(delta / "quarantine")
            b = read_delta(bronze_path(delta, "fixture", "fixture", "people"))
            if q is None or b is None or q.height < sent_bad or b.height < len(good):
                return None
            return q, b

        quarantine, bronze = wait_for("rejects in quarantine and good rows in bronze", landed, timeout=120)
        time.sleep(2)
        assert flow.alive(), flow.tail()

    assert bronze.height == len(good)  # good messages unaffected by their bad neighbours
    assert quarantine.height == sent_bad
    assert set(quarantine["topic"]) == {topic}
    assert set(quarantine["stage"]) == {"decode"}
    assert set(quarantine["reason"]) >= {"malformed_json", "invalid_envelope", "unknown_op"}
    assert sorted(quarantine["value"].to_list()) == sorted(GARBAGE)

    consumer = Consumer({"bootstrap.servers": stack.kafka.bootstrap_servers, "group.id": tag})
    consumer.assign([TopicPartition(dlq_topic, p, 0) for p in (0, 1)])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < sent_bad and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            seen.append(msg)
    consumer.close()
    assert len(seen) == sent_bad
    positions = {(q["partition"], q["offset"]) for q in quarantine.iter_rows(named=True)}
    for msg in seen:
        headers = dict(msg.headers() or [])
        assert headers["goldstream.source.topic"] == topic.encode()
        assert headers["goldstream.reason"]
        src = (int(headers["goldstream.source.partition"]), int(headers["goldstream.source.offset"]))
        assert src in positions
        assert msg.value() in GARBAGE
