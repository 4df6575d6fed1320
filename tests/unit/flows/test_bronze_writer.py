import json
import threading
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from cdc.envelope import decode_batch, raw_batch
from core.errors import TerminalError
from core.events import ChangeBatch
from flows.bronze import BackgroundBronzeWriter, BronzeWriter, Quarantine
from flows.engine.durable import DurableOffsets
from sinks.delta.bronze import BRONZE_SCHEMA, batch_to_arrow, bronze_path, with_images
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
    assert json.loads(row["envelope"])["after"] == {"id": 3, "name": "Ærø 東京"}
    assert str(df.schema["source_ts"]) == "Datetime(time_unit='us', time_zone='UTC')"
    assert json.loads(row["envelope"])["source"]["table"] == "contacts"
    # the images are stored once, inside the envelope; with_images reads them back as columns
    assert df.columns == BRONZE_SCHEMA.names
    imaged = with_images(df).filter(pl.col("offset") == 3).row(0, named=True)
    assert json.loads(imaged["after"]) == {"id": 3, "name": "Ærø 東京"} and imaged["before"] is None


def test_rows_returned_for_mapping_carry_the_images(tmp_path: Path) -> None:
    tables = make_writer(tmp_path).write(batch(range(0, 5)))
    (rows,) = tables.values()
    assert rows.column_names == [*BRONZE_SCHEMA.names, "before", "after"]
    assert json.loads(rows.column("after")[2].as_py()) == {"id": 2, "name": "Ærø 東京"}
    slim = BronzeWriter(tmp_path / "slim", Quarantine(tmp_path / "slim", dlq=None), images=False)
    (rows,) = slim.write(batch(range(0, 5))).values()
    assert rows.column_names == BRONZE_SCHEMA.names


def test_a_table_written_with_image_columns_keeps_taking_appends(tmp_path: Path) -> None:
    """Bronze tables of earlier versions stored before/after as columns: appends go on, old rows keep them."""
    path = bronze_path(tmp_path, "crm", "public", "contacts")
    old = batch_to_arrow(batch(range(0, 3)))  # with the image columns, as the old writer stored them
    write_deltalake(str(path), old, partition_by=["ingest_date"])
    make_writer(tmp_path).write(batch(range(3, 6)))
    df = pl.read_delta(str(path)).sort("offset")
    assert df["offset"].to_list() == list(range(6))
    assert df["after"].is_null().to_list() == [False] * 3 + [True] * 3
    assert with_images(df)["after"].is_null().sum() == 0


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


# -- BackgroundBronzeWriter -----------------------------------------------------------------------


def background(root: Path, durable: DurableOffsets | None = None) -> BackgroundBronzeWriter:
    return BackgroundBronzeWriter(make_writer(root), durable)


def emitted(durable: DurableOffsets, b: ChangeBatch, first: int) -> ChangeBatch:
    durable.emitted(b.topic, b.partition, first, b.last_offset + 1)
    return b


def test_background_writer_commits_every_batch_once_and_confirms_in_order(tmp_path: Path) -> None:
    durable = DurableOffsets()
    w = background(tmp_path, durable)
    w.write(emitted(durable, batch(range(0, 100)), 0))
    w.write(emitted(durable, batch(range(100, 150)), 100))
    w.flush()
    assert durable.resume_offset(TOPIC, 0, 150) == 150 and durable.in_flight(TOPIC, 0) == 0
    w.write(emitted(durable, batch(range(100, 200)), 100))  # a replay overlapping the committed rows
    w.close()
    df = pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts")))
    assert sorted(df["offset"].to_list()) == list(range(200))


def test_background_writer_confirms_only_after_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable = DurableOffsets()
    inner = make_writer(tmp_path)
    release = threading.Event()
    original = inner.append

    def slow_append(b: ChangeBatch, tables: dict[tuple[str, str, str], pa.Table]) -> None:
        assert release.wait(10)
        original(b, tables)

    monkeypatch.setattr(inner, "append", slow_append)
    w = BackgroundBronzeWriter(inner, durable)
    w.write(emitted(durable, batch(range(0, 10)), 0))
    # the sink returned but nothing is committed: a snapshot now must resume at the batch's start
    assert durable.resume_offset(TOPIC, 0, 10) == 0
    release.set()
    w.flush()
    assert durable.resume_offset(TOPIC, 0, 10) == 10
    w.close()


def test_a_batch_without_changes_is_confirmed_after_the_one_before(tmp_path: Path) -> None:
    durable = DurableOffsets()
    w = background(tmp_path, durable)
    w.write(emitted(durable, batch(range(0, 10)), 0))
    tombstones = decode_batch(raw_batch(TOPIC, 0, [(10, b'{"id":1}', None), (11, b'{"id":2}', None)]))
    w.write(emitted(durable, tombstones, 10))
    w.close()
    assert durable.resume_offset(TOPIC, 0, 12) == 12


def test_a_failed_commit_is_raised_by_the_next_write_and_never_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable = DurableOffsets()
    inner = make_writer(tmp_path)

    def broken(_b: ChangeBatch, _t: dict[tuple[str, str, str], pa.Table]) -> None:
        raise TerminalError("disk gone")

    monkeypatch.setattr(inner, "append", broken)
    w = BackgroundBronzeWriter(inner, durable)
    w.write(emitted(durable, batch(range(0, 10)), 0))
    with pytest.raises(TerminalError, match="disk gone"):
        w.write(emitted(durable, batch(range(10, 20)), 10))
    assert durable.resume_offset(TOPIC, 0, 20) == 0
