"""Envelope decoding. Real captured messages are in test_envelope_fixtures.py; these are edge cases."""

import json

import pytest

from cdc.envelope import decode_batch, decode_message, is_heartbeat, raw_batch
from core.events import ChangeEvent, Rejected

TOPIC = "crm.public.contacts"


def value(op: str, *, before: object = None, after: object = None, **source: object) -> bytes:
    src = {
        "version": "3.6.1.Final",
        "connector": "postgresql",
        "name": "crm",
        "ts_ms": 1_700_000_000_123,
        "ts_us": 1_700_000_000_123_456,
        "snapshot": "false",
        "db": "crm",
        "schema": "public",
        "table": "contacts",
        "txId": 771,
        "lsn": 24_023_128,
    }
    src.update(source)
    env = {"before": before, "after": after, "source": src, "op": op, "ts_ms": 1_700_000_001_000}
    return json.dumps(env, ensure_ascii=False).encode()


def test_create_keeps_after_text_and_position() -> None:
    after = {"id": 7, "name": "Zoë Łukasiewicz-Ōtani 山田"}
    ev = decode_message(TOPIC, 1, 42, b'{"id":7}', value("c", after=after))
    assert isinstance(ev, ChangeEvent)
    assert (ev.system, ev.db, ev.schema, ev.table, ev.op) == ("crm", "crm", "public", "contacts", "c")
    assert json.loads(ev.after or "") == after
    assert ev.before is None
    assert (ev.lsn, ev.tx_id, ev.source_ts_us) == (24_023_128, 771, 1_700_000_000_123_456)
    assert (ev.topic, ev.partition, ev.offset) == (TOPIC, 1, 42)
    assert ev.key == '{"id":7}'
    assert json.loads(ev.envelope)["op"] == "c"


def test_source_ts_falls_back_to_milliseconds() -> None:
    v = json.loads(value("u", before={"id": 1}, after={"id": 1}))
    del v["source"]["ts_us"]
    ev = decode_message(TOPIC, 0, 0, b'{"id":1}', json.dumps(v).encode())
    assert isinstance(ev, ChangeEvent)
    assert ev.source_ts_us == 1_700_000_000_123_000


@pytest.mark.parametrize("snap", ["true", "first", "last", "false", "incremental"])
def test_snapshot_flag_is_kept(snap: str) -> None:
    ev = decode_message(TOPIC, 0, 0, b'{"id":1}', value("r", after={"id": 1}, snapshot=snap))
    assert isinstance(ev, ChangeEvent) and ev.snapshot == snap


def test_legacy_boolean_snapshot_flag() -> None:
    ev = decode_message(TOPIC, 0, 0, b'{"id":1}', value("r", after={"id": 1}, snapshot=True))
    assert isinstance(ev, ChangeEvent) and ev.snapshot == "true"


def test_delete_has_before_and_no_after() -> None:
    ev = decode_message(TOPIC, 0, 5, b'{"id":1}', value("d", before={"id": 1}))
    assert isinstance(ev, ChangeEvent)
    assert ev.op == "d" and ev.after is None and json.loads(ev.before or "") == {"id": 1}


def test_truncate_has_no_key() -> None:
    ev = decode_message(TOPIC, 0, 9, None, value("t"))
    assert isinstance(ev, ChangeEvent) and ev.op == "t" and ev.key is None


def test_schema_wrapped_envelope_is_unwrapped() -> None:
    payload = json.loads(value("c", after={"id": 3}))
    wrapped = json.dumps({"schema": {"type": "struct"}, "payload": payload}).encode()
    ev = decode_message(TOPIC, 0, 1, b'{"id":3}', wrapped)
    assert isinstance(ev, ChangeEvent) and json.loads(ev.after or "") == {"id": 3}


@pytest.mark.parametrize(
    ("key", "val", "reason"),
    [
        (b'{"id":1}', b"{not json", "malformed_json"),
        (b'{"id":1}', b"[1,2]", "invalid_envelope"),
        (b'{"id":1}', b'{"op":"c"}', "invalid_envelope"),
        (b'{"id":1}', value("x", after={"id": 1}), "unknown_op"),
        (None, value("c", after={"id": 1}), "missing_key"),
        (b'{"id":1}', value("c"), "invalid_envelope"),
        (b"\xff\xfe", value("c", after={"id": 1}), "invalid_utf8"),
        (b'{"id":1}', b'{"schema":{},"payload":null}', "missing_payload"),
    ],
)
def test_malformed_messages_are_rejected_with_reason_and_position(
    key: bytes | None, val: bytes, reason: str
) -> None:
    rej = decode_message(TOPIC, 2, 77, key, val)
    assert isinstance(rej, Rejected)
    assert rej.reason == reason
    assert (rej.topic, rej.partition, rej.offset) == (TOPIC, 2, 77)
    assert rej.value == val and rej.key == key
    assert rej.detail


def test_batch_counts_tombstones_and_heartbeats_and_keeps_good_rows() -> None:
    batch = decode_batch(
        raw_batch(
            TOPIC,
            0,
            [
                (10, b'{"id":1}', value("c", after={"id": 1})),
                (11, b'{"id":1}', value("d", before={"id": 1})),
                (12, b'{"id":1}', None),  # tombstone after the delete
                (13, None, b'{"ts_ms":1700000000000}'),  # heartbeat-shaped
                (14, b'{"id":2}', b"garbage"),
                (15, b'{"id":2}', value("c", after={"id": 2})),
            ],
        )
    )
    assert batch.offset == (10, 11, 15)
    assert batch.op == ("c", "d", "c")
    assert batch.tombstones == 1 and batch.heartbeats == 1
    assert [r.offset for r in batch.rejected] == [14]
    assert batch.last_offset == 15
    # nothing unaccounted for
    assert len(batch) + batch.tombstones + batch.heartbeats + len(batch.rejected) == 6


def test_heartbeat_topic_is_skipped() -> None:
    batch = decode_batch(
        raw_batch("__debezium-heartbeat.crm", 0, [(0, b'{"serverName":"crm"}', b'{"ts_ms":1}')])
    )
    assert len(batch) == 0 and batch.heartbeats == 1 and not batch.rejected


def test_is_heartbeat_does_not_match_changes() -> None:
    assert is_heartbeat("x", b'{"ts_ms":5}')
    assert not is_heartbeat("x", value("c", after={"id": 1}))
    assert not is_heartbeat("x", b'{"ts_ms":5,"op":"c"}')


def test_batch_and_single_decoding_agree() -> None:
    msgs = [(i, b'{"id":%d}' % i, value("u", before={"id": i}, after={"id": i, "n": "é"})) for i in range(50)]
    batch = decode_batch(raw_batch(TOPIC, 3, msgs))
    singles = [decode_message(TOPIC, 3, o, k, v) for o, k, v in msgs]
    assert batch.events() == singles
