"""Where a partition starts without a recovery snapshot: ``latest`` is pinned to a concrete offset."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from core.errors import TerminalError
from flows.engine import kafka_source
from flows.engine.kafka_source import end_offset


class _Watermarks:
    """Answers ``get_watermark_offsets`` from a script: an int pair, or an exception to raise."""

    def __init__(self, *answers: tuple[int, int] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def get_watermark_offsets(self, tp: Any, timeout: float = -1, cached: bool = True) -> tuple[int, int]:
        self.calls.append({"topic": tp.topic, "partition": tp.partition, "cached": cached})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.retry.time.sleep", lambda _s: None)


def test_latest_is_the_high_watermark_asked_of_the_broker_not_a_cached_one() -> None:
    consumer = _Watermarks((3, 42))
    assert end_offset(consumer, "golden.customer", 2) == 42  # type: ignore[arg-type]
    assert consumer.calls == [{"topic": "golden.customer", "partition": 2, "cached": False}]


def test_a_broker_that_does_not_answer_at_first_is_asked_again() -> None:
    consumer = _Watermarks(KafkaException(KafkaError(KafkaError._TIMED_OUT)), (0, -1), (0, 7))
    assert end_offset(consumer, "t", 0) == 7  # type: ignore[arg-type]
    assert len(consumer.calls) == 3


def test_a_broker_that_never_answers_stops_the_flow_with_the_partition_named() -> None:
    consumer = _Watermarks(*[KafkaException(KafkaError(KafkaError._TIMED_OUT))] * 50)
    with pytest.raises(TerminalError, match=r"end offset of t\[1\]"):
        end_offset(consumer, "t", 1, deadline_s=0.0)  # type: ignore[arg-type]


def test_a_partition_built_to_start_at_latest_assigns_and_snapshots_the_concrete_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assigned: list[int] = []

    class _Consumer(_Watermarks):
        def __init__(self, _conf: dict[str, Any]) -> None:
            super().__init__((0, 1234), (0, 1234))

        def assign(self, parts: list[Any]) -> None:
            assigned.append(parts[0].offset)

    monkeypatch.setattr(kafka_source, "Consumer", _Consumer)
    source = kafka_source.KafkaBatchSource("127.0.0.1:1", ["t"], start="latest")
    part = source.build_part("in", kafka_source.part_key("t", 0), None)
    # a snapshot before the first message must not say "the end" (that would skip what arrives
    # while the flow is down), but where the end was when the flow started
    assert assigned == [1234] and part.snapshot() == 1234
    resumed = source.build_part("in", kafka_source.part_key("t", 0), 1000)
    assert assigned[-1] == 1000 and resumed.snapshot() == 1000  # a snapshot wins over the start
