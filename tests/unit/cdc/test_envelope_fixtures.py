"""Decoding real Debezium 3.6 messages captured from our stack (tests/fixtures/debezium/capture.py)."""

import json
from collections import Counter
from itertools import groupby
from pathlib import Path

import pytest

from cdc.envelope import decode_batch, raw_batch
from core.events import ChangeBatch, ChangeEvent

FIXTURES = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures" / "debezium" / "messages.json").read_text("utf-8")
)


def decoded() -> list[ChangeBatch]:
    out = []
    key = lambda m: (m["topic"], m["partition"])  # noqa: E731
    for (topic, partition), msgs in groupby(sorted(FIXTURES, key=key), key=key):
        triples = [
            (
                m["offset"],
                None if m["key"] is None else m["key"].encode(),
                None if m["value"] is None else m["value"].encode(),
            )
            for m in msgs
        ]
        out.append(decode_batch(raw_batch(topic, partition, triples)))
    return out


def events() -> list[ChangeEvent]:
    return [e for b in decoded() for e in b.events()]


def test_every_real_message_is_accounted_for() -> None:
    batches = decoded()
    assert not [r for b in batches for r in b.rejected]
    total = sum(len(b) + b.tombstones + b.heartbeats for b in batches)
    assert total == len(FIXTURES)
    assert sum(b.tombstones for b in batches) == 2  # one per delete (a PK change is a delete too)
    assert sum(b.heartbeats for b in batches) == 2
    assert Counter(e.op for e in events()) == Counter({"r": 3, "c": 4, "u": 2, "d": 2, "t": 1})


def test_snapshot_reads_carry_snapshot_flags() -> None:
    snaps = [e for e in events() if e.op == "r"]
    assert {e.snapshot for e in snaps} <= {
        "true",
        "first",
        "last",
        "first_in_data_collection",
        "last_in_data_collection",
    }
    assert all(e.snapshot == "false" for e in events() if e.op != "r")


def test_non_ascii_text_survives_exactly() -> None:
    names = {json.loads(e.after).get("full_name") for e in events() if e.after}
    assert "Zoë Ōtani-Łukasiewicz 山田 Ελένη" in names
    assert "Émilie du Châtelet" in names


def test_toast_placeholder_is_passed_through_for_later_merge() -> None:
    upd = [e for e in events() if e.op == "u" and e.table == "people"]
    assert json.loads(upd[0].after or "")["note"] == "__debezium_unavailable_value"


def test_update_before_image_depends_on_replica_identity() -> None:
    full = next(e for e in events() if e.op == "u" and e.table == "accounts")
    assert json.loads(full.before or "") == {"code": "ACC-1", "name": "Analytical Engines Ltd"}
    default = next(e for e in events() if e.op == "u" and e.table == "people")
    assert default.before is None  # REPLICA IDENTITY DEFAULT: no before image on update


def test_primary_key_change_is_delete_plus_create_in_one_transaction() -> None:
    acc = {e.op: e for e in events() if e.table == "accounts" and e.op in ("d", "c")}
    assert json.loads(acc["d"].key or "") == {"code": "ACC-1"}
    assert json.loads(acc["c"].key or "") == {"code": "ACC-2"}
    # Same statement: same LSN and transaction. The two keys may land on different partitions,
    # so consumers must not rely on their relative order.
    assert (acc["d"].lsn, acc["d"].tx_id) == (acc["c"].lsn, acc["c"].tx_id)


def test_truncate_has_no_key_and_names_its_table() -> None:
    (t,) = [e for e in events() if e.op == "t"]
    assert t.key is None and t.table == "people" and t.schema == "fixture" and t.system == "fixture"


def test_streamed_changes_have_lsn_and_txid_increasing_per_partition() -> None:
    for b in decoded():
        streamed = [e for e in b.events() if e.op != "r"]
        lsns = [e.lsn for e in streamed]
        assert all(isinstance(x, int) for x in lsns)
        assert lsns == sorted(lsns), b.topic  # type: ignore[type-var]
        assert all(isinstance(e.tx_id, int) for e in streamed)


@pytest.mark.parametrize("field", ["source_ts_us", "connector_ts_us"])
def test_timestamps_are_microseconds_utc(field: str) -> None:
    for e in events():
        assert 1_700_000_000_000_000 < getattr(e, field) < 2_500_000_000_000_000
