"""The silver step hands entity resolution what reading silver back after each MERGE would give.

The property runs the histories and Kafka deliveries of the silver property test (late events,
snapshot reads, TOAST placeholders, truncates, primary-key changes, re-deliveries from older
offsets) through two pipelines: the old one (MERGE, wait, read the touched keys back) and the silver
step (MERGEs in the background, rows known from the batch where they can be). After every batch
both must hand resolution the same record changes, and at the end the silver tables must be equal.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from deltalake import DeltaTable
from hypothesis import given, settings
from hypothesis import strategies as st

from core.golden import RecordChange
from flows.silver_step import MappedRecords, SilverFeed, SilverLogic, causes, record_changes
from sinks.delta.silver import SilverWriter, read_current, read_rows
from sinks.delta.silver_batch import SEQ, normalize, sequence
from tests.unit.sinks.delta.test_silver_property import DATA, PROFILE, Event, deliveries, frame, histories

ENTITY = "customer"


def read_back(writer: SilverWriter, records: pl.DataFrame) -> list[RecordChange]:
    """The old path: after the MERGE, read every touched key of each source table back."""
    out: list[RecordChange] = []
    prepared = normalize(records).with_columns(sequence().alias(SEQ))
    for (system, table), part in prepared.group_by(["source_system", "source_table"], maintain_order=True):
        truncated = bool((part["op"] == "t").any())
        keys = None if truncated else part["source_key"].drop_nulls().unique().to_list()
        rows = read_rows(writer.path, str(system), str(table), keys)
        out.extend(record_changes(ENTITY, rows, causes(str(system), str(table), part)))
    return out


def by_id(changes: list[RecordChange]) -> dict[str, RecordChange]:
    assert len({c.record_id for c in changes}) == len(changes), "a key reported twice"
    return {c.record_id: c for c in changes}


def table(path: Path) -> pl.DataFrame:
    cols = ["source_system", "source_table", "source_key", *DATA, "deleted", "lsn", "offset", "op"]
    return read_current(path, include_deleted=True).select(cols).sort(cols[:3])


@settings(PROFILE)
@given(data=st.data(), events=histories)
def test_silver_step_hands_resolution_what_the_read_back_gave(
    data: st.DataObject, events: list[Event]
) -> None:
    batches = data.draw(deliveries(events))
    crashes = data.draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    with tempfile.TemporaryDirectory() as tmp:
        old_root, new_root = Path(tmp) / "old", Path(tmp) / "new"
        writer = SilverWriter(old_root, ENTITY)
        # a long write interval keeps MERGEs queued, so batches meet a silver that lags behind
        feed = SilverFeed(new_root, ENTITY, resolve=True, write_interval_s=3600, schema=None)
        for batch, crash in zip(batches, crashes, strict=True):
            if crash:  # the process dies; its successor resumes with the batches not yet merged
                pending = feed.pending()
                feed = SilverFeed(
                    new_root, ENTITY, resolve=True, write_interval_s=3600, resume=pending, schema=None
                )
            records = frame(batch)
            writer.apply(records)
            expected = by_id(read_back(writer, records))
            got = by_id(feed.apply(MappedRecords(ENTITY, records)))
            assert got == expected
        feed.flush()
        assert table(feed.path).equals(table(writer.path))


def test_fast_path_needs_no_merge_and_late_changes_read_back(tmp_path: Path) -> None:
    feed = SilverFeed(tmp_path, ENTITY, resolve=True, write_interval_s=3600, schema=None)
    first = Event(0, "1", "c", lsn=10, tx_id=1, partition=0, values={"name": "ann"}, offset=0)
    feed.apply(MappedRecords(ENTITY, frame([first])))  # the first MERGE runs at once
    newer = Event(0, "1", "u", lsn=20, tx_id=2, partition=0, values={"name": "bob"}, offset=1)
    (change,) = feed.apply(MappedRecords(ENTITY, frame([newer])))
    assert change.values is not None and change.values["name"] == "bob"
    assert len(feed.pending()) == 1  # known without waiting for its MERGE
    late = Event(0, "1", "u", lsn=15, tx_id=2, partition=0, values={"name": "cid"}, offset=2)
    (change,) = feed.apply(MappedRecords(ENTITY, frame([late])))
    assert change.values is not None and change.values["name"] == "bob"  # silver's guard wins
    assert feed.pending() == []  # a late change waited for the MERGEs and read the row back


def test_unchanged_toast_field_keeps_the_value_silver_has(tmp_path: Path) -> None:
    feed = SilverFeed(tmp_path, ENTITY, resolve=True, write_interval_s=3600, schema=None)
    first = Event(0, "1", "c", lsn=10, tx_id=1, partition=0, values={"name": "ann", "note": "long"}, offset=0)
    feed.apply(MappedRecords(ENTITY, frame([first])))
    toast = Event(
        0, "1", "u", lsn=20, tx_id=2, partition=0, values={"name": "bob"}, unavailable=["note"], offset=1
    )
    (change,) = feed.apply(MappedRecords(ENTITY, frame([toast])))
    assert change.values is not None
    assert (change.values["name"], change.values["note"]) == ("bob", "long")


def test_truncate_reads_the_whole_table_back(tmp_path: Path) -> None:
    feed = SilverFeed(tmp_path, ENTITY, resolve=True, write_interval_s=3600, schema=None)
    rows = [
        Event(0, k, "c", lsn=10 + i, tx_id=1, partition=0, values={"name": k}, offset=i)
        for i, k in enumerate("12")
    ]
    feed.apply(MappedRecords(ENTITY, frame(rows)))
    truncate = Event(0, None, "t", lsn=30, tx_id=3, partition=0, values={}, offset=5)
    changes = feed.apply(MappedRecords(ENTITY, frame([truncate])))
    assert sorted((c.record_id, c.values) for c in changes) == [
        ("crm:public.a:1", None),
        ("crm:public.a:2", None),
    ]
    late = Event(0, "1", "u", lsn=25, tx_id=2, partition=0, values={"name": "x"}, offset=6)
    (change,) = feed.apply(MappedRecords(ENTITY, frame([late])))
    assert change.values is None  # older than the truncate: stays deleted


def test_a_resumed_step_merges_what_was_queued_without_waiting_for_new_input(tmp_path: Path) -> None:
    # A process dies with a MERGE queued behind the write interval; the source has moved past that
    # batch, so the resumed step is all that can bring it to silver, even if nothing else arrives.
    feed = SilverFeed(tmp_path, ENTITY, resolve=True, write_interval_s=3600, schema=None)
    first = Event(0, "1", "c", lsn=10, tx_id=1, partition=0, values={"name": "ann"}, offset=0)
    feed.apply(MappedRecords(ENTITY, frame([first])))  # merged at once
    queued = Event(0, "2", "c", lsn=20, tx_id=2, partition=0, values={"name": "bob"}, offset=1)
    feed.apply(MappedRecords(ENTITY, frame([queued])))
    snapshot = feed.pending()
    assert len(snapshot) == 1

    logic = SilverLogic(tmp_path, frozenset({ENTITY}), 3600, snapshot, schema=None)

    names = dict(read_current(feed.path).select("source_key", "name").iter_rows())
    assert names == {"1": "ann", "2": "bob"}
    assert logic.snapshot() == []


def test_the_silver_step_merges_with_the_configured_engine(tmp_path: Path) -> None:
    for engine in ("rewrite", "delta-rs"):
        root = tmp_path / engine
        logic = SilverLogic(root, frozenset({ENTITY}), 0, None, schema=None, engine=engine)
        first = Event(0, "1", "c", lsn=10, tx_id=1, partition=0, values={"name": "ann"}, offset=0)
        logic.on_batch([MappedRecords(ENTITY, frame([first]))])
        logic.on_eof()
        history = DeltaTable(str(root / "silver" / ENTITY)).history(1)[0]
        assert history["operation"] == "MERGE"
        assert history["engineInfo"].startswith("goldstream" if engine == "rewrite" else "delta-rs")
