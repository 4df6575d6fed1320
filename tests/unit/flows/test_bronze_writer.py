import json
from pathlib import Path

import polars as pl

from cdc.envelope import decode_batch, raw_batch
from flows.bronze import BronzeWriter, Quarantine
from sinks.delta.bronze import bronze_path
from sinks.delta.quarantine import quarantine_path
from tests.unit.cdc.test_envelope import TOPIC, value


def make_writer(root: Path) -> BronzeWriter:
    return BronzeWriter(root, Quarantine(root, dlq=None))


def batch(offsets: range, bad: set[int] | None = None):  # type: ignore[no-untyped-def]
    msgs = []
    for o in offsets:
        if bad and o in bad:
            msgs.append((o, b'{"id":0}', b"not json"))
        else:
            msgs.append((o, b'{"id":%d}' % o, value("c", after={"id": o, "name": "Ærø 東京"})))
    return decode_batch(raw_batch(TOPIC, 0, msgs))


def test_rows_land_in_the_source_tables_bronze_table(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    w.write(batch(range(0, 100)))
    df = pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts")))
    assert df.height == 100
    assert df["offset"].sort().to_list() == list(range(100))
    row = df.filter(pl.col("offset") == 3).row(0, named=True)
    assert row["op"] == "c" and row["lsn"] == 24_023_128 and row["topic"] == TOPIC
    assert json.loads(row["after"]) == {"id": 3, "name": "Ærø 東京"}
    assert str(df.schema["source_ts"]) == "Datetime(time_unit='us', time_zone='UTC')"
    assert json.loads(row["envelope"])["source"]["table"] == "contacts"


def test_replay_after_crash_is_exactly_once(tmp_path: Path) -> None:
    make_writer(tmp_path).write(batch(range(0, 100)))
    # a new process (fresh objects) re-reads from an older snapshot
    w = make_writer(tmp_path)
    w.write(batch(range(50, 100)))
    w.write(batch(range(50, 150)))
    df = pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts")))
    assert sorted(df["offset"].to_list()) == list(range(150))


def test_bad_messages_go_to_quarantine_and_good_ones_keep_flowing(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    w.write(batch(range(0, 20), bad={3, 17}))
    w.write(batch(range(0, 20), bad={3, 17}))  # replayed: no duplicates in either table
    bronze = pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts")))
    assert bronze.height == 18
    q = pl.read_delta(str(quarantine_path(tmp_path)))
    assert sorted(q["offset"].to_list()) == [3, 17]
    assert set(q["reason"]) == {"malformed_json"}
    assert set(q["topic"]) == {TOPIC}
    assert q["value"].to_list()[0] == b"not json"
