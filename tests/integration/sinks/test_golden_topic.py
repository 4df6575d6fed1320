"""The golden topic producer against the real Kafka broker of the local stack.

Only the broker is needed, so these tests probe it instead of using the ``stack`` fixture (which
also seeds the demo databases and applies the connectors). Each test publishes to its own topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient

from core.errors import TerminalError, TransientError
from core.golden import Cause, FieldProvenance, GoldBatch, GoldenChange, decode_change, golden_topic
from core.settings import load_settings
from sinks.golden_topic import GoldenPublisher

T0_US = 1_714_564_800_000_000


@pytest.fixture(scope="module")
def bootstrap() -> str:
    servers = load_settings().kafka.bootstrap_servers
    try:
        AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10)
    except Exception as exc:  # any failure means: no usable broker
        pytest.fail(f"Kafka at {servers} is not reachable (start it with `goldstream stack up`): {exc}")
    return servers


@pytest.fixture
def entity() -> str:
    return f"gt_{uuid.uuid4().hex[:12]}"


def change(entity: str, gid: str, version: int, **values: object) -> GoldenChange:
    vals = {"full_name": "Ada Lovelace", **values}
    return GoldenChange(
        entity=entity,
        golden_id=gid,
        version=version,
        kind="UPSERT",
        values=vals,
        provenance={"full_name": FieldProvenance("crm", "crm:public.customers:1", T0_US, "source_priority")},
        changed=("full_name",),
        members=("crm:public.customers:1",),
        emitted_at_us=T0_US + version,
        cause=Cause("crm:public.customers:1", 42, T0_US, "crm.public.customers", 0, 7),
    )


def consume(bootstrap: str, topic: str, n: int, timeout: float = 60.0) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    end = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            out.append(msg)
    finally:
        consumer.close()
    return out


@pytest.fixture
def publisher(bootstrap: str, entity: str) -> Iterator[GoldenPublisher]:
    p = GoldenPublisher(bootstrap, entity)
    yield p
    p.close()


def test_published_changes_arrive_keyed_by_golden_id_in_version_order(
    bootstrap: str, entity: str, publisher: GoldenPublisher
) -> None:
    changes = [change(entity, gid, v, email=f"{gid}-{v}@x") for v in (1, 2, 3, 4) for gid in ("G1", "G2")]
    assert publisher.publish(changes) == 8
    msgs = consume(bootstrap, golden_topic(entity), 8)
    assert len(msgs) == 8
    by_key: dict[str, list[GoldenChange]] = {}
    for m in msgs:
        decoded = decode_change(m.value() or b"")
        assert m.key() == decoded.golden_id.encode()
        headers = dict(m.headers() or [])
        assert headers["goldstream.golden.version"] == str(decoded.version).encode()
        assert headers["goldstream.golden.kind"] == b"UPSERT"
        by_key.setdefault(decoded.golden_id, []).append(decoded)
    assert [c.version for c in by_key["G1"]] == [1, 2, 3, 4]
    assert [c.version for c in by_key["G2"]] == [1, 2, 3, 4]
    assert by_key["G2"][2] == changes[5]  # the whole change survives the round trip


def test_publish_batch_sends_its_changes(bootstrap: str, entity: str, publisher: GoldenPublisher) -> None:
    batch = GoldBatch(entity, changes=(change(entity, "G7", 1),))
    assert publisher.publish_batch(batch) == 1
    [msg] = consume(bootstrap, golden_topic(entity), 1)
    assert decode_change(msg.value() or b"").golden_id == "G7"


def test_change_of_another_entity_is_refused(publisher: GoldenPublisher) -> None:
    with pytest.raises(TerminalError, match="other_entity"):
        publisher.publish([change("other_entity", "G1", 1)])


def test_message_too_large_is_terminal(bootstrap: str, entity: str) -> None:
    p = GoldenPublisher(bootstrap, entity, extra_config={"message.max.bytes": 2000})
    with pytest.raises(TerminalError, match="too large"):
        p.publish([change(entity, "G1", 1, note="x" * 5000)])


def test_unacknowledged_delivery_is_transient(entity: str) -> None:
    # nothing listens on port 1: the message stays queued and publish must not report success
    p = GoldenPublisher("127.0.0.1:1", entity, extra_config={"message.timeout.ms": 1500})
    with pytest.raises(TransientError, match=golden_topic(entity)):
        p.publish([change(entity, "G1", 1)], timeout=5.0)
