"""The ``golden.<entity>`` topic: every new version of a golden record, for propagation and others.

Messages:

* **value**: :func:`core.golden.encode_change` (JSON, ``schema_version`` 1); decode with
  :func:`core.golden.decode_change`;
* **key**: the golden id, so all versions of one golden record land on one partition in order;
* **headers**: ``goldstream.golden.version``, ``goldstream.golden.kind`` and
  ``goldstream.schema_version``, so a consumer can skip a message without decoding it.

Delivery is at least once. The producer is idempotent (``enable.idempotence``: its own retries
neither duplicate nor reorder messages), and :meth:`GoldenPublisher.publish` returns only after the
broker acknowledged every message (Bytewax's bundled Kafka sink ignores delivery failures), but a
dataflow that crashes after publishing and before its snapshot publishes those changes again on
replay. **Consumers must de-duplicate by (golden_id, version)**: a message whose version is not
greater than the last one applied for its golden id is a replay (or, after a retirement, obsolete)
and must be skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.errors import TerminalError, TransientError
from core.golden import GOLDEN_SCHEMA_VERSION, GoldBatch, GoldenChange, encode_change, golden_topic
from core.metrics import GOLDEN_PUBLISHED

#: Errors no retry can fix: the message or the configuration is wrong, or access is denied.
_TERMINAL_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_CONFIG,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError._INVALID_ARG,
    }
)


def _classify(err: KafkaError, what: str) -> TransientError | TerminalError:
    """A Kafka error as ours: fatal (the idempotent producer is unusable) or not fixable by a retry
    is terminal; anything else (broker down, leader moving, timeouts) is transient."""
    if err.fatal() or err.code() in _TERMINAL_CODES:
        return TerminalError(f"{what}: {err.str()}")
    return TransientError(f"{what}: {err.str()}")


class GoldenPublisher:
    """Publishes one entity's :class:`~core.golden.GoldenChange` objects to ``golden.<entity>``."""

    def __init__(
        self,
        bootstrap: str,
        entity: str,
        *,
        topic: str | None = None,
        extra_config: dict[str, str | int | bool] | None = None,
    ) -> None:
        self.entity = entity
        self.topic = topic or golden_topic(entity)
        self._published = GOLDEN_PUBLISHED.labels(entity=entity)
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                # no duplicates or reordering from the producer's own retries; implies acks=all
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "zstd",
                **(extra_config or {}),
            }
        )

    def publish(self, changes: Sequence[GoldenChange], *, timeout: float = 30.0) -> int:
        """Send ``changes`` in order and wait until Kafka acknowledged each; returns how many.

        Raises :class:`TransientError` when a message was not acknowledged in ``timeout`` or the
        broker refused it for a passing reason (publishing the same changes again is safe),
        :class:`TerminalError` for a change of another entity or an error no retry can fix.
        """
        wrong = sorted({c.entity for c in changes if c.entity != self.entity})
        if wrong:
            raise TerminalError(f"golden topic {self.topic}: changes of entity {wrong}, not {self.entity!r}")
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for c in changes:
            headers: list[tuple[str, str | bytes | None]] = [
                ("goldstream.golden.version", str(c.version).encode()),
                ("goldstream.golden.kind", c.kind.encode()),
                ("goldstream.schema_version", str(GOLDEN_SCHEMA_VERSION).encode()),
            ]
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        key=c.golden_id.encode(),
                        value=encode_change(c),
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)  # local queue full: let deliveries drain, then retry
                except KafkaException as exc:
                    raise _classify(exc.args[0], f"golden topic {self.topic}: produce failed") from exc
        remaining = self._producer.flush(timeout)
        if failures:
            raise _classify(failures[0], f"golden topic {self.topic}: delivery failed")
        if remaining:
            raise TransientError(
                f"golden topic {self.topic}: {remaining} message(s) not acknowledged in {timeout}s"
            )
        self._published.inc(len(changes))
        return len(changes)

    def publish_batch(self, batch: GoldBatch, *, timeout: float = 30.0) -> int:
        """:meth:`publish` the changes of one :class:`~core.golden.GoldBatch`."""
        return self.publish(batch.changes, timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is still queued."""
        self._producer.flush(timeout)
