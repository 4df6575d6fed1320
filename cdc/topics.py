"""Kafka topics: probing the broker, creating Debezium's topics up front, listing partitions.

Topics are created before the connector starts so that their partition count (the unit of
parallelism) is ours to choose, and so that a dataflow can list every partition when it starts
(Bytewax fixes the set of source partitions at build time).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from core.errors import TerminalError, TransientError


def admin(bootstrap: str) -> AdminClient:
    """An AdminClient for ``bootstrap``."""
    return AdminClient({"bootstrap.servers": bootstrap})


def probe_broker(bootstrap: str, *, timeout: float = 10.0) -> int:
    """Fetch cluster metadata; returns the broker count. Raises TransientError if unreachable.

    Bytewax's Kafka connector hangs when the broker is unreachable at start, so every dataflow
    probes first and fails with a clear message instead.
    """
    try:
        md = admin(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TransientError(f"Kafka broker at {bootstrap} is not reachable: {exc}") from exc
    return len(md.brokers)


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    partitions: int,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the missing topics; returns the names created. Existing topics are left as they are."""
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise TransientError(f"Kafka broker at {bootstrap} is not reachable: {exc}") from exc
    missing = [t for t in dict.fromkeys(topics) if t not in existing]
    if not missing:
        return []
    futures = client.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=-1, config=config or {}) for t in missing],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            raise TerminalError(f"creating topic {name} failed: {exc}") from exc
    return created


def topic_partitions(bootstrap: str, topics: Iterable[str], *, timeout: float = 10.0) -> dict[str, int]:
    """Partition count of each topic. A missing topic is a TerminalError naming it."""
    try:
        md = admin(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TransientError(f"Kafka broker at {bootstrap} is not reachable: {exc}") from exc
    out = {}
    for t in topics:
        meta = md.topics.get(t)
        if meta is None or meta.error is not None:
            raise TerminalError(
                f"topic {t} does not exist (run `goldstream connectors apply`, which creates it)"
            )
        out[t] = len(meta.partitions)
    return out


def read_to_end(
    bootstrap: str, topics: Iterable[str], *, timeout: float = 120.0
) -> list[tuple[str, int, int, bytes | None, bytes | None]]:
    """Every message currently in ``topics`` as ``(topic, partition, offset, key, value)``.

    Reads each partition from its start up to the high watermark taken at the call (messages that
    arrive later are not waited for), so it ends even on topics that keep receiving heartbeats.
    For tools and tests; a dataflow never reads like this.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "goldstream-read-to-end"})
    try:
        md = consumer.list_topics(timeout=10)
        ends: dict[tuple[str, int], int] = {}
        for t in topics:
            meta = md.topics.get(t)
            if meta is None or meta.error is not None:
                raise TerminalError(f"topic {t} does not exist")
            for p in meta.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                if high > 0:
                    ends[(t, p)] = high
        consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
        out: list[tuple[str, int, int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                if msg.error() is not None:
                    continue
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                assert topic is not None and partition is not None and offset is not None
                end = ends.get((topic, partition))
                if end is None or offset >= end:
                    continue
                out.append((topic, partition, offset, msg.key(), msg.value()))
                if offset == end - 1:
                    del ends[(topic, partition)]
        if ends:
            raise TransientError(f"could not read to the end of {sorted(ends)} within {timeout:.0f}s")
        return out
    finally:
        consumer.close()
