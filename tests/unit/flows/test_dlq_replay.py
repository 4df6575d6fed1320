"""Replaying quarantined messages: what is sent, in which order, what is marked, and when."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from typer.testing import CliRunner

from core.errors import TransientError
from core.events import Rejected
from flows.cli import app
from flows.dlq_replay import ReplayMessage, plan_replay, replay
from sinks.delta.quarantine import QuarantineFilter, read_quarantine
from tests.unit.sinks.delta.test_quarantine import quarantine, reject


class FakePublisher:
    """Records what would go to Kafka; can fail on a given call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.sent: list[ReplayMessage] = []
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.closed = False

    def publish(self, messages: list[ReplayMessage]) -> int:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise TransientError("broker down")
        self.sent.extend(messages)
        return len(messages)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def root(tmp_path: Path) -> Path:
    quarantine(
        tmp_path,
        [
            reject(5, partition=1),
            reject(3, value=b"\xff\xfe not utf-8, not json"),
            reject(4, value=None),  # a tombstone: re-sent as a tombstone
            reject(3, stage="mapping", reason="mapping_failed"),  # same message, another stage
            reject(8, topic="crm.public.accounts", reason="invalid_envelope"),
        ],
    )
    return tmp_path


def test_plan_sends_each_position_once_in_source_order(root: Path) -> None:
    plan = plan_replay(root, QuarantineFilter())
    assert [(m.topic, m.partition, m.offset) for m in plan.messages] == [
        ("crm.public.accounts", 0, 8),
        ("shop.public.customers", 0, 3),
        ("shop.public.customers", 0, 4),
        ("shop.public.customers", 1, 5),
    ]
    assert plan.rows.height == 5
    by_offset = {m.offset: m for m in plan.messages}
    assert by_offset[3].value == b"\xff\xfe not utf-8, not json" and by_offset[3].key == b'{"id":1}'
    assert by_offset[4].value is None
    assert plan.counts().rows() == [
        ("decode", "invalid_envelope", "crm.public.accounts", 1),
        ("decode", "malformed_json", "shop.public.customers", 3),
        ("mapping", "mapping_failed", "shop.public.customers", 1),
    ]


def test_replay_sends_then_marks_and_a_second_replay_sends_nothing(root: Path) -> None:
    pub = FakePublisher()
    report = replay(root, plan_replay(root, QuarantineFilter()), pub, batch=2)
    assert (report.sent, report.marked, report.batches) == (4, 5, 2)
    assert len(pub.sent) == 4
    assert read_quarantine(root).height == 0
    assert read_quarantine(root, QuarantineFilter(include_replayed=True))["replayed"].all()
    again = plan_replay(root, QuarantineFilter())
    assert again.messages == []
    assert replay(root, again, pub).sent == 0 and len(pub.sent) == 4


def test_filters_limit_what_is_sent(root: Path) -> None:
    pub = FakePublisher()
    plan = plan_replay(root, QuarantineFilter(topics=("crm.public.accounts",)))
    assert replay(root, plan, pub).sent == 1
    assert [m.offset for m in pub.sent] == [8]
    assert read_quarantine(root).height == 4


def test_dry_run_sends_and_marks_nothing(root: Path) -> None:
    pub = FakePublisher()
    report = replay(root, plan_replay(root, QuarantineFilter()), pub, dry_run=True)
    assert report.dry_run and report.sent == 0 and pub.calls == 0
    assert read_quarantine(root).height == 5


def test_a_failed_batch_is_not_marked(root: Path) -> None:
    pub = FakePublisher(fail_on_call=2)
    with pytest.raises(TransientError, match="broker down"):
        replay(root, plan_replay(root, QuarantineFilter()), pub, batch=2)
    # the first batch (offsets 8 and 3: three rows, 3 is in two stages) is marked, the rest not
    left = read_quarantine(root)
    assert sorted(left["offset"].to_list()) == [4, 5]
    retry = FakePublisher()
    assert replay(root, plan_replay(root, QuarantineFilter()), retry).sent == 2


def test_rows_without_key_and_value_are_reported_not_sent(tmp_path: Path) -> None:
    quarantine(tmp_path, [Rejected("malformed_json", "?", "t", 0, 1, 0, None, None)])
    plan = plan_replay(tmp_path, QuarantineFilter())
    assert plan.messages == [] and plan.unsendable.height == 1


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> FakePublisher:
    pub = FakePublisher()
    monkeypatch.setattr("flows.cli.dlq.KafkaPublisher", lambda _bootstrap: pub)
    monkeypatch.setattr("flows.cli.dlq.out", Console(width=200))
    return pub


def test_cli_list_shows_counts_and_rows(root: Path, cli: FakePublisher) -> None:
    result = CliRunner().invoke(app, ["dlq", "list", "--delta-root", str(root), "-s", "decode"])
    assert result.exit_code == 0, result.output
    assert "malformed_json" in result.output and "shop.public.customers[1]@5" in result.output
    assert "mapping_failed" not in result.output
    assert "(null: tombstone)" in result.output
    limited = CliRunner().invoke(app, ["dlq", "list", "--delta-root", str(root), "-n", "2"])
    assert "2 of 5 rows shown" in limited.output


def test_cli_replay_asks_then_sends(root: Path, cli: FakePublisher) -> None:
    no = CliRunner().invoke(app, ["dlq", "replay", "--delta-root", str(root)], input="n\n")
    assert no.exit_code == 1 and cli.sent == []
    dry = CliRunner().invoke(app, ["dlq", "replay", "--delta-root", str(root), "--dry-run"])
    assert (
        dry.exit_code == 0
        and "would re-publish 4 message(s) (5 quarantine row(s)) to 2 topic(s)" in dry.output
    )
    yes = CliRunner().invoke(app, ["dlq", "replay", "--delta-root", str(root)], input="y\n")
    assert yes.exit_code == 0, yes.output
    assert "re-published 4 message(s)" in yes.output and "marked 5" in yes.output
    assert len(cli.sent) == 4 and cli.closed
    again = CliRunner().invoke(app, ["dlq", "replay", "--delta-root", str(root), "-y"])
    assert again.exit_code == 0 and "nothing to replay" in again.output
    listed = CliRunner().invoke(app, ["dlq", "list", "--delta-root", str(root), "--all"])
    assert listed.output.count(" yes ") == 5


def test_cli_publish_failure_is_a_retry_later_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flows.cli.dlq.KafkaPublisher", lambda _b: FakePublisher(fail_on_call=1))
    result = CliRunner().invoke(app, ["dlq", "replay", "--delta-root", str(root), "-y"])
    assert result.exit_code == 4 and "broker down" in result.output
    assert read_quarantine(root).height == 5


def test_plan_keeps_the_position_types(root: Path) -> None:
    plan = plan_replay(root, QuarantineFilter(stages=("mapping",)))
    assert plan.rows.schema["partition"] == pl.Int32 and plan.rows.schema["offset"] == pl.Int64


def test_replayed_messages_are_counted_per_topic(root: Path) -> None:
    from core.metrics import DLQ_REPLAYED

    before = DLQ_REPLAYED.labels(topic="shop.public.customers")._value.get()
    replay(root, plan_replay(root, QuarantineFilter()), FakePublisher())
    assert DLQ_REPLAYED.labels(topic="shop.public.customers")._value.get() - before == 3
