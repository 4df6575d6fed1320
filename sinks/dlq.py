"""The dead-letter topic: every rejected record, with why and where it came from.

Bytewax's bundled Kafka sink ignores delivery failures; this producer waits for every delivery
report and raises if any message was not acknowledged, so nothing is lost silently. Delivery is
at least once (a replay after a crash may publish a reject again); the quarantine Delta table is the
exactly-once record, and DLQ messages carry the source position as their key so consumers can
de-duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from core.errors import TransientError
from core.events import Rejected


class DeadLetterProducer:
    """Publishes :class:`Rejected` records to the DLQ topic and confirms every delivery."""

    def __init__(self, bootstrap: str, topic: str, *, extra_config: dict[str, str] | None = None) -> None:
        self.topic = topic
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,  # no duplicates from producer-internal retries
                "linger.ms": 20,
                "compression.type": "zstd",
                **(extra_config or {}),
            }
        )

    def publish(self, rejects: Sequence[Rejected], *, timeout: float = 30.0) -> int:
        """Send ``rejects`` and wait for their acknowledgements; returns how many were delivered."""
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for r in rejects:
            headers: list[tuple[str, str | bytes | None]] = [
                ("goldstream.reason", r.reason.encode()),
                ("goldstream.detail", r.detail.encode()[:4096]),
                ("goldstream.stage", r.stage.encode()),
                ("goldstream.source.topic", r.topic.encode()),
                ("goldstream.source.partition", str(r.partition).encode()),
                ("goldstream.source.offset", str(r.offset).encode()),
            ]
            if r.key is not None:
                headers.append(("goldstream.source.key", r.key))
            key = f"{r.topic}:{r.partition}:{r.offset}".encode()
            while True:
                try:
                    self._producer.produce(
                        self.topic, key=key, value=r.value, headers=headers, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)  # local queue full: let deliveries drain, then retry
        remaining = self._producer.flush(timeout)
        if remaining:
            raise TransientError(
                f"DLQ topic {self.topic}: {remaining} message(s) not acknowledged in {timeout}s"
            )
        if failures:
            raise TransientError(f"DLQ topic {self.topic}: delivery failed: {failures[0]}")
        return len(rejects)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is still queued."""
        self._producer.flush(timeout)
