"""map_batch on concrete changes: ops, deletes, truncates, TOAST, rejects, drift policies, lineage.

Includes the real Debezium 3.6 messages of ``tests/fixtures/debezium`` decoded by the bronze path
(``cdc.envelope`` + ``sinks.delta.bronze.batch_to_arrow``), so the engine is tested on exactly the
columns the dataflow hands it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from itertools import groupby
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cdc.envelope import decode_batch, raw_batch
from core.canonical import record_schema
from core.errors import TerminalError
from flows.canonical import REJECT_SCHEMA, MappedBatch, Mapping, map_batch, map_batch_reference
from flows.canonical.kinds import TOAST_PLACEHOLDER
from flows.canonical.sample import Change, events_frame
from sinks.delta.bronze import batch_to_arrow
from tests.unit.flows.canonical.conftest import WriteMapping

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "debezium" / "messages.json"

PEOPLE = """
version: 2
entity: customer
source:
  system: fixture
  schema: fixture
  table: people
  key: [id]
  replica_identity: default
  columns:
    id: int
    full_name: text
    note: text
    amount: decimal
    born: date
    updated: timestamptz
    tags: json
fields:
  kind: {const: person}
  status: {const: active}
  full_name: {from: full_name, steps: [text]}
  first_name: {from: $full_name, steps: [{split_name: {part: first, order: auto}}]}
  last_name: {from: $full_name, steps: [{split_name: {part: last, order: auto}}]}
  job_title: {from: note, steps: [text]}
  birth_date: {from: born}
  updated_at: {from: updated}
"""

CUSTOMERS = """
version: 1
entity: customer
source:
  system: shop
  schema: public
  table: customers
  key: [customer_id]
  replica_identity: {ri}
  columns:
    customer_id: int
    email: text
    first_name: text
    last_name: text
    status: int
    notes: text
options:
  drift: {drift}
fields:
  kind: {{const: person}}
  status: {{from: status, steps: [{{enum: {{1: active, 0: inactive}}}}]}}
  first_name: {{from: first_name, steps: [text]}}
  last_name: {{from: last_name, steps: [text]}}
  full_name: {{from: [$first_name, $last_name], steps: [join]}}
  email: {{from: email, steps: [email]}}
  job_title: {{from: notes, steps: [text]}}
"""


def both(mapping: Mapping, events: pl.DataFrame) -> MappedBatch:
    """The engine's result, after checking the reference agrees."""
    engine = map_batch(mapping, events)
    reference = map_batch_reference(mapping, events)
    assert_frame_equal(engine.records, reference.records)
    assert_frame_equal(engine.rejects, reference.rejects)
    assert engine.drift == reference.drift
    return engine


def customers(write_mapping: WriteMapping, *, ri: str = "default", drift: str = "evolve") -> Mapping:
    return write_mapping("shop", "customers", CUSTOMERS.format(ri=ri, drift=drift))


def row(cid: int, **values: Any) -> dict[str, Any]:
    base = {"customer_id": cid, "email": f"c{cid}@shop.example", "first_name": "Ada", "last_name": "Lovelace"}
    return {**base, "status": 1, "notes": None, **values}


def fixture_events(table: str) -> pl.DataFrame:
    messages = json.loads(FIXTURES.read_text("utf-8"))
    frames = []
    key = lambda m: (m["topic"], m["partition"])  # noqa: E731
    for (topic, partition), msgs in groupby(sorted(messages, key=key), key=key):
        triples = [
            (
                m["offset"],
                None if m["key"] is None else m["key"].encode(),
                None if m["value"] is None else m["value"].encode(),
            )
            for m in msgs
        ]
        batch = decode_batch(raw_batch(topic, partition, triples))
        if len(batch):
            frames.append(pl.from_arrow(batch_to_arrow(batch)))
    events = pl.concat(frames)
    assert isinstance(events, pl.DataFrame)
    return events.filter(pl.col("table") == table)


def test_real_debezium_messages(write_mapping: WriteMapping) -> None:
    mapping = write_mapping("fixture", "people", PEOPLE)
    events = fixture_events("people")
    out = both(mapping, events)
    assert out.rejects.height == 0 and out.drift == []
    recs = {(r["offset"], r["partition"]): r for r in out.records.iter_rows(named=True)}
    ada = recs[(0, 0)]
    assert (ada["op"], ada["snapshot"], ada["source_key"]) == ("r", True, "1")
    assert (ada["first_name"], ada["last_name"]) == ("Ada", "Lovelace")
    assert ada["birth_date"] == dt.date(1815, 12, 10)  # DATE: -56270 days since 1970
    assert ada["updated_at"] == dt.datetime(2026, 11, 24, 2, 32, 26, 246751, tzinfo=dt.UTC)
    assert ada["mapping_version"].startswith("fixture.fixture.people@2#")
    # The TOAST placeholder: the field is null and listed, so silver keeps its old value.
    toasted = recs[(2, 0)]
    assert toasted["unavailable"] == ["job_title"] and toasted["job_title"] is None
    # A delete with a key-only before image ('' and 1970 are Debezium's defaults, not data).
    deleted = recs[(3, 0)]
    assert deleted["deleted"] and deleted["source_key"] == "1" and deleted["full_name"] is None
    # Truncate: no key, deleted, no values.
    truncate = next(r for r in recs.values() if r["op"] == "t")
    assert truncate["source_key"] is None and truncate["deleted"] and truncate["kind"] is None
    assert recs[(0, 1)]["full_name"] == "Zoë Ōtani-Łukasiewicz 山田 Ελένη"
    assert out.records.schema == record_schema("customer")


def test_delete_with_a_full_before_image_maps_it(write_mapping: WriteMapping) -> None:
    full = customers(write_mapping, ri="full")
    before = json.dumps(row(7, first_name="Grace"))
    out = both(full, events_frame(full, [Change("d", key='{"customer_id":7}', before=before)]))
    rec = out.records.row(0, named=True)
    assert rec["deleted"] and rec["first_name"] == "Grace" and rec["source_key"] == "7"


def test_delete_with_a_key_only_image_ignores_the_defaults(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    garbage = json.dumps(
        {"customer_id": 7, "email": "", "first_name": "", "last_name": "", "status": 1, "notes": None}
    )
    out = both(mapping, events_frame(mapping, [Change("d", key='{"customer_id":7}', before=garbage)]))
    rec = out.records.row(0, named=True)
    assert rec["deleted"] and rec["status"] is None and rec["first_name"] is None and rec["issues"] == []


def test_rejects_name_the_field_and_the_raw_value(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    changes = [
        Change("c", row(1)),
        Change("c", row(2, status=5)),  # required field fails
        Change("c", row(3, status=None)),  # required field missing
        Change("u", row(4, email="not an email")),  # optional field fails: kept, with an issue
        Change("c", key=None, after=json.dumps(row(5))),
        Change("u", key='{"customer_id":6}'),  # no after image
        Change("m", key='{"customer_id":6}'),
        Change("c", key='{"customer_id":8}', after="[1, 2]"),
    ]
    out = both(mapping, events_frame(mapping, changes))
    assert out.records.get_column("source_key").to_list() == ["1", "4"]
    assert out.records.row(1, named=True)["issues"] == ['email: email failed on "not an email"']
    rejects = {r["offset"]: (r["reason"], r["detail"]) for r in out.rejects.iter_rows(named=True)}
    assert rejects == {
        1: ("mapping_failed", "status: enum('1'→active, '0'→inactive) failed on 5"),
        2: ("missing_required", "status: required but null"),
        4: ("missing_key", "no usable key (customer_id) in the message key"),
        5: ("missing_image", "op=u without an 'after' image"),
        6: ("unsupported_op", "op=m"),
        7: ("malformed_image", "the row image is not a JSON object"),
    }
    assert out.rejects.schema == REJECT_SCHEMA
    first = out.rejects.row(0, named=True)
    assert first["stage"] == "mapping" and first["key"] == b'{"customer_id":2}'
    assert json.loads(first["value"])["status"] == 5


def test_toast_placeholder_makes_dependent_fields_unavailable(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    out = both(
        mapping,
        events_frame(mapping, [Change("u", row(1, notes=TOAST_PLACEHOLDER, first_name=TOAST_PLACEHOLDER))]),
    )
    rec = out.records.row(0, named=True)
    # full_name is computed from first_name, so it is unavailable too (silver keeps the old one).
    assert rec["unavailable"] == ["first_name", "full_name", "job_title"]
    assert rec["full_name"] is None and rec["last_name"] == "Lovelace"


def test_empty_strings_are_null_and_text_is_never_empty(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    out = both(mapping, events_frame(mapping, [Change("c", row(1, first_name="", last_name="   "))]))
    rec = out.records.row(0, named=True)
    assert rec["first_name"] is None and rec["last_name"] is None and rec["full_name"] is None


def test_drift_evolve_keeps_new_columns_in_extras(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    changes = [
        Change("c", after=json.dumps({**row(1), "loyalty": 5}), key='{"customer_id":1}'),
        Change("c", after=json.dumps({**row(2), "loyalty": "gold"}), key='{"customer_id":2}'),
        Change("c", after=json.dumps({**row(3), "loyalty": 10**30}), key='{"customer_id":3}'),
        Change("c", row(4)),
    ]
    out = both(mapping, events_frame(mapping, changes))
    assert out.records.get_column("extras").to_list() == [
        '{"loyalty":5}',
        '{"loyalty":"gold"}',
        '{"loyalty":1000000000000000000000000000000}',
        None,
    ]
    (finding,) = out.drift
    assert (finding.column, finding.change, finding.rows, finding.action) == (
        "loyalty",
        "added",
        3,
        "kept in extras",
    )


def test_drift_removed_and_retyped(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    gone = {k: v for k, v in row(1).items() if k != "notes"}
    retyped = {**row(2), "first_name": 42}
    changes = [
        Change("c", after=json.dumps(gone), key='{"customer_id":1}'),
        Change("c", after=json.dumps(retyped), key='{"customer_id":2}'),
    ]
    out = both(mapping, events_frame(mapping, changes))
    assert [(f.column, f.change, f.rows, f.observed) for f in out.drift] == [
        ("first_name", "retyped", 1, "integer"),
    ]
    rec = out.records.row(1, named=True)
    assert rec["first_name"] is None and rec["extras"] == '{"first_name":42}'


def test_drift_removed_column(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    gone = {k: v for k, v in row(1).items() if k != "notes"}
    out = both(mapping, events_frame(mapping, [Change("c", after=json.dumps(gone), key='{"customer_id":1}')]))
    assert [(f.column, f.change, f.action) for f in out.drift] == [("notes", "removed", "mapped as null")]


def test_drift_policies(write_mapping: WriteMapping) -> None:
    base = customers(write_mapping)
    after = json.dumps({**row(1), "loyalty": 5})
    events = events_frame(base, [Change("c", after=after, key='{"customer_id":1}')])
    lenient = both(dataclasses.replace(base, drift="lenient"), events)
    assert lenient.records.get_column("extras").to_list() == [None] and lenient.drift[0].action == "ignored"
    ignore = both(dataclasses.replace(base, drift="ignore"), events)
    assert ignore.drift == [] and ignore.records.height == 1
    with pytest.raises(TerminalError, match=r"shop.public.customers: new column 'loyalty'"):
        map_batch(dataclasses.replace(base, drift="fail"), events)


def test_lineage_and_change_columns(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    out = both(
        mapping,
        events_frame(mapping, [Change("r", row(1)), Change("u", row(1)), Change("t")], first_offset=40),
    )
    recs = out.records
    assert recs.get_column("op").to_list() == ["r", "u", "t"]
    assert recs.get_column("snapshot").to_list() == [True, False, False]
    assert recs.get_column("deleted").to_list() == [False, False, True]
    assert recs.get_column("offset").to_list() == [40, 41, 42]
    assert recs.get_column("lsn").to_list() == [1000, 1001, 1002]
    assert recs.get_column("source_table").unique().to_list() == ["public.customers"]
    assert recs.get_column("mapping_version").unique().to_list() == [mapping.version_tag]


def test_composite_keys_are_joined_in_key_order(write_mapping: WriteMapping) -> None:
    text = CUSTOMERS.format(ri="default", drift="evolve").replace(
        "key: [customer_id]", "key: [email, customer_id]"
    )
    mapping = write_mapping("shop", "customers", text)
    out = both(mapping, events_frame(mapping, [Change("c", row(3))]))
    assert out.records.get_column("source_key").to_list() == ["c3@shop.example|3"]


def test_rows_of_another_table_are_a_wiring_error(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    events = events_frame(mapping, [Change("c", row(1))]).with_columns(table=pl.lit("orders"))
    with pytest.raises(ValueError, match="got rows of"):
        map_batch(mapping, events)


def test_an_empty_batch_has_the_full_schema(write_mapping: WriteMapping) -> None:
    mapping = customers(write_mapping)
    out = map_batch(mapping, events_frame(mapping, []))
    assert out.records.schema == record_schema("customer") and out.rejects.schema == REJECT_SCHEMA
    assert out.entity == "customer"


def test_a_hook_that_raises_or_returns_the_wrong_kind_fails_the_row_not_the_flow(
    write_mapping: WriteMapping,
) -> None:
    hooks = "tests.unit.flows.canonical.hooks_for_tests"
    text = CUSTOMERS.format(ri="default", drift="evolve").replace(
        "  job_title: {from: notes, steps: [text]}",
        f"  job_title: {{from: [first_name, last_name], hook: '{hooks}:initials'}}\n"
        f"  organisation_name: {{from: notes, hook: '{hooks}:wrong_kind'}}",
    )
    mapping = write_mapping("shop", "customers", text)
    changes = [Change("c", row(1, notes="x")), Change("c", row(2, first_name="boom"))]
    out = both(mapping, events_frame(mapping, changes))
    assert out.records.get_column("job_title").to_list() == ["A.L.", None]
    issues = out.records.get_column("issues").to_list()
    hook = "tests.unit.flows.canonical.hooks_for_tests"
    assert issues[0] == [f'organisation_name: hook {hook}:wrong_kind failed on "x"']
    assert issues[1] == [f'job_title: hook {hook}:initials failed on ["boom", "Lovelace"]']
