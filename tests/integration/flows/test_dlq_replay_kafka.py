"""``goldstream dlq replay`` on the real Kafka broker: quarantined messages go back to their topic.

Needs only the broker of the local stack (no connectors): messages are produced to a scratch topic,
decoded by the real decoder, quarantined by the real writer (``flows.bronze.Quarantine``), then
replayed through the CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from typer.testing import CliRunner

from cdc.envelope import decode_batch, raw_batch
from cdc.topics import admin, ensure_topics, probe_broker
from core.events import Rejected
from core.settings import Settings, load_settings
from flows.bronze import Quarantine
from flows.cli import app
from flows.dlq_replay import REPLAY_HEADER
from sinks.delta.quarantine import QuarantineFilter, read_quarantine

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "debezium" / "messages.json"


@pytest.fixture
def kafka() -> Iterator[Settings]:
    settings = load_settings()
    probe_broker(settings.kafka.bootstrap_servers)  # a clear TransientError when the stack is down
    yield settings


def produce(bootstrap: str, topic: str, messages: list[tuple[int, bytes | None, bytes | None]]) -> list[int]:
    """Produce ``(partition, key, value)`` in order; returns each message's offset."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    offsets: dict[int, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        offsets[len(offsets)] = msg.offset()  # type: ignore[attr-defined]

    for partition, key, value in messages:
        producer.produce(topic, key=key, value=value, partition=partition, on_delivery=delivered)
        producer.flush(30)  # one at a time: delivery order = production order
    return [offsets[i] for i in range(len(messages))]


def read_all(
    bootstrap: str, topic: str
) -> list[tuple[int, int, bytes | None, bytes | None, dict[str, bytes]]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{topic}", "enable.auto.commit": False}
    )
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)}
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    out = []
    left = {p: end for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + 30
    while left and time.monotonic() < deadline:
        for msg in consumer.consume(100, 0.5):
            if msg.error() is not None:
                continue
            p, off = msg.partition(), msg.offset()
            assert p is not None and off is not None
            raw = msg.headers() or []
            pairs = raw.items() if isinstance(raw, dict) else raw
            headers = {name: v.encode() if isinstance(v, str) else (v or b"") for name, v in pairs}
            out.append((p, off, msg.key(), msg.value(), headers))
            if off == left.get(p, -1) - 1:
                del left[p]
    consumer.close()
    assert not left, f"could not read {topic} to its end: {left}"
    return sorted(out, key=lambda m: (m[0], m[1]))


def test_replay_republishes_quarantined_messages_once(kafka: Settings, tmp_path: Path) -> None:
    bootstrap = kafka.kafka.bootstrap_servers
    topic = f"it.dlq.replay.{int(time.time() * 1000)}"
    ensure_topics(bootstrap, [topic], partitions=2)
    good = next(m for m in json.loads(FIXTURES.read_text("utf-8")) if m["value"] is not None)
    originals: list[tuple[int, bytes | None, bytes | None]] = [
        (0, good["key"].encode(), good["value"].encode()),  # fine: never quarantined
        (0, b'{"id":1}', b"not json at all"),  # decode: malformed_json
        (1, b'{"id":2}', b"\xff\xfe\x00 binary"),  # decode: not UTF-8, not JSON
        (1, b'{"id":3}', None),  # a tombstone, quarantined by a later stage (below)
        (0, b'{"id":4}', good["value"].encode()),  # a valid envelope the mapping refused (below)
    ]
    try:
        offsets = produce(bootstrap, topic, originals)
        # the real decoder on what the topic holds, per partition
        quarantine = Quarantine(tmp_path, None)
        for partition in (0, 1):
            msgs = [(offsets[i], k, v) for i, (p, k, v) in enumerate(originals) if p == partition]
            decoded = decode_batch(raw_batch(topic, partition, msgs))
            quarantine.send(
                decoded.rejected, topic=topic, partition=partition, version=max(o for o, _, _ in msgs)
            )
        later = [
            Rejected(
                "mapping_failed",
                "email: not an address",
                topic,
                0,
                offsets[4],
                0,
                b'{"id":4}',
                originals[4][2],
                "mapping",
            ),
            Rejected(
                "invalid_record",
                "tombstone without a prior delete",
                topic,
                1,
                offsets[3],
                0,
                b'{"id":3}',
                None,
                "validation",
            ),
        ]
        quarantine.send((later[0],), topic=topic, partition=0, version=offsets[4])
        quarantine.send((later[1],), topic=topic, partition=1, version=offsets[3])
        rows = read_quarantine(tmp_path)
        assert sorted(rows["stage"].to_list()) == ["decode", "decode", "mapping", "validation"]

        before = read_all(bootstrap, topic)
        assert len(before) == 5
        result = CliRunner().invoke(app, ["dlq", "replay", "--delta-root", str(tmp_path), "-y"])
        assert result.exit_code == 0, result.output
        assert "re-published 4 message(s)" in result.output

        after = read_all(bootstrap, topic)
        resent = [m for m in after if REPLAY_HEADER in m[4]]
        assert len(after) == 9 and len(resent) == 4
        for i in (1, 2, 3, 4):
            partition, key, value = originals[i]
            match = [m for m in resent if m[4][REPLAY_HEADER] == f"{topic}:{partition}:{offsets[i]}".encode()]
            assert len(match) == 1, i
            p, off, k, v, _ = match[0]
            assert (p, k, v) == (partition, key, value)  # same partition, the original bytes
            assert off > offsets[i]
        tombstones = [m for m in resent if m[3] is None]
        assert [m[2] for m in tombstones] == [b'{"id":3}']  # the tombstone is re-sent as one

        everything = read_quarantine(tmp_path, QuarantineFilter(include_replayed=True))
        assert everything.height == 4 and everything["replayed"].all()

        again = CliRunner().invoke(app, ["dlq", "replay", "--delta-root", str(tmp_path), "-y"])
        assert again.exit_code == 0 and "nothing to replay" in again.output
        assert len(read_all(bootstrap, topic)) == 9
    finally:
        admin(bootstrap).delete_topics([topic])
