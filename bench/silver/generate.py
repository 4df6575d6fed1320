"""Debezium-shaped change messages for ``shop.public.customers``, produced to a fresh Kafka topic.

Row contents come from the demo world's shop seeder (``cdc.demo``: names in many scripts with case
noise, phones in national and international formats, ``MM/DD/YYYY`` birthdays, '' for empty fields,
JSON preferences), rendered exactly as our connector settings write them
(:func:`flows.canonical.sample.image_json`: JSON converter without schemas, microsecond timestamps).
Each message takes its content from a random row of that pool and gets its own key and email, so
the table holds 1,000,000 distinct customers while the mapping's per-distinct-value caches (phones,
dates) see a realistic few thousand values.

Envelopes have Debezium 3.6's PostgreSQL shape (see ``tests/fixtures/debezium/messages.json``):
``before`` null on create/update (``REPLICA IDENTITY DEFAULT``), a key-only ``before`` on delete
followed by a tombstone (null value), a ``source`` block with ``lsn``/``txId``/``sequence``, and the
message key ``{"customer_id": n}``. LSNs grow with every change, so per key the production order is
the LSN order, as with a real connector.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from confluent_kafka import KafkaError, Message, Producer

from cdc.demo.assign import plan
from cdc.demo.systems import SYSTEMS
from cdc.demo.world import build_world
from cdc.topics import ensure_topics
from core.errors import TransientError
from flows.canonical import Mapping, compile_mappings
from flows.canonical.sample import image_json

SYSTEM, SCHEMA, TABLE = "shop", "public", "customers"
_SOURCE = (
    '"source":{{"version":"3.6.1.Final","connector":"postgresql","name":"shop","ts_ms":{ms},'
    '"snapshot":"false","db":"shop","sequence":"[\\"{lsn}\\",\\"{lsn}\\"]","ts_us":{us},'
    '"ts_ns":{us}000,"schema":"public","table":"customers","txId":{tx},"lsn":{lsn},"xmin":null,'
    '"origin":null,"origin_lsn":null}}'
)
_ENVELOPE = (
    '{{"before":{before},"after":{after},'
    + _SOURCE
    + ',"transaction":null,"op":"{op}",'
    + ('"ts_ms":{ms},"ts_us":{us},"ts_ns":{us}000}}')
)


def customers_mapping(config_dir: Path = Path("config")) -> Mapping:
    """The production mapping of ``shop.public.customers``."""
    mapping = compile_mappings(config_dir).for_table(SYSTEM, SCHEMA, TABLE)
    if mapping is None:
        raise RuntimeError(f"no mapping for {SYSTEM}.{SCHEMA}.{TABLE} under {config_dir}/mappings")
    return mapping


def row_pool(mapping: Mapping, people: int = 6000, seed: int = 7) -> list[tuple[str, str]]:
    """``(before the email, after the email)`` JSON fragments of the demo shop's customer rows.

    Rendering a row once and splicing the key and email in per message keeps generation at ~1 us.
    """
    world = build_world(people, seed)
    rows = SYSTEMS[SYSTEM].seed_rows(world, plan(world)).rows[TABLE]
    out = []
    for row in rows:
        text = image_json(mapping, {**row, "customer_id": 0, "email": "\x00"})
        head, tail = text.split('"\\u0000"', 1)
        # head is '{"customer_id":0,"email":' ; keep what follows the key
        out.append((head[len('{"customer_id":0') :], tail))
    return out


@dataclass
class Segment:
    """A run of changes in the topic: per partition, the first offset and the end (exclusive)."""

    name: str
    changes: int
    deletes: int
    """Deletes among ``changes`` (each also wrote a tombstone message)."""
    start: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)


class ChangeStream:
    """Debezium messages for changes of random keys, with the expected final state per key.

    The messages of one key come out in change order with increasing LSNs; the stream remembers,
    per key, whether its last change was a delete (what the silver table must end up holding).
    """

    def __init__(self, pool: list[tuple[str, str]], *, key_space: int, seed: int = 7) -> None:
        self.pool = pool
        self.key_space = key_space
        self.rng = np.random.default_rng(seed)
        self.lsn = 50_000_000
        self.live = 0
        self.last_deleted: dict[int, bool] = {}

    def messages(
        self, keys: np.ndarray, delete_frac: float, segment: Segment
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """``(key, value)`` of one change per key; ``delete_frac`` of them deletes (+ tombstones).

        Only live rows can be deleted, and a uniform random key is live with probability
        live/key_space, so the delete draw is scaled by the inverse to make ``delete_frac`` of the
        changes deletes.
        """
        live_share = self.live / self.key_space if self.live else 1.0
        deletes = self.rng.random(len(keys)) < min(1.0, delete_frac / live_share)
        pool = self.pool
        picks = self.rng.integers(0, len(pool), len(keys))
        now_ms = int(time.time() * 1000)
        for k, want_delete, pick in zip(keys.tolist(), deletes.tolist(), picks.tolist(), strict=True):
            self.lsn += 8
            key = b'{"customer_id":%d}' % k
            meta = {"ms": now_ms, "us": now_ms * 1000, "tx": self.lsn // 24, "lsn": self.lsn}
            live = self.last_deleted.get(k) is False
            # a database deletes only rows it has; a change to a missing row is an insert
            if want_delete and live:
                before = f'{{"customer_id":{k},"email":null,"first_name":null,"last_name":null,' + (
                    '"phone":null,"date_of_birth":null,"is_active":null,"newsletter":null,'
                    '"preferences":null,"created_at":null,"last_login_at":null}'
                )
                yield key, _ENVELOPE.format(before=before, after="null", op="d", **meta).encode()
                yield key, None  # the tombstone Debezium writes after each delete
                segment.deletes += 1
                self.live -= 1
                self.last_deleted[k] = True
            else:
                head, tail = pool[pick]
                after = f'{{"customer_id":{k}{head}"c{k}@example.com"{tail}'
                op = "u" if live else "c"
                yield key, _ENVELOPE.format(before="null", after=after, op=op, **meta).encode()
                self.live += not live
                self.last_deleted[k] = False

    def expected_live(self) -> set[str]:
        """Keys whose last change is not a delete: the rows ``read_current`` must return."""
        return {str(k) for k, deleted in self.last_deleted.items() if not deleted}

    def expected_deleted(self) -> int:
        """Keys whose last change is a delete (soft-deleted rows)."""
        return sum(self.last_deleted.values())


class ChangeProducer:
    """Produces a :class:`ChangeStream`'s segments to one topic, every delivery confirmed."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, stream: ChangeStream) -> None:
        self.topic = topic
        self.partitions = partitions
        self.stream = stream
        ensure_topics(bootstrap, [topic], partitions=partitions)
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
            }
        )
        self.ends: dict[int, int] = {p: 0 for p in range(partitions)}
        self._failures: list[str] = []

    def produce(self, name: str, keys: np.ndarray, delete_frac: float) -> Segment:
        """Produce one change per key (``delete_frac`` of them deletes), wait for every delivery."""
        segment = Segment(name, len(keys), 0, start=dict(self.ends))
        delivered: dict[int, int] = {}

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._failures.append(str(err))
                return
            p, off = msg.partition(), msg.offset()
            if p is not None and off is not None and off + 1 > delivered.get(p, 0):
                delivered[p] = off + 1

        for key, value in self.stream.messages(keys, delete_frac, segment):
            while True:
                try:
                    self._producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.2)
            self._producer.poll(0)
        remaining = self._producer.flush(120)
        if remaining or self._failures:
            raise TransientError(
                f"topic {self.topic}: {remaining} undelivered, failures: {self._failures[:3]}"
            )
        for p in range(self.partitions):
            self.ends[p] = max(self.ends[p], delivered.get(p, self.ends[p]))
        segment.end = dict(self.ends)
        return segment
