"""The ingest stage: bronze + canonical mapping + silver, and what it hands to entity resolution.

Messages are real Debezium envelopes (the shape of ``tests/unit/cdc/test_envelope.value``) of the
demo CRM's ``contacts`` table, mapped with the project's own ``config/mappings``.
"""

import json
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from cdc.envelope import decode_batch, raw_batch
from core.errors import TerminalError
from flows.bronze import BronzeWriter, Quarantine
from flows.canonical import compile_mappings
from flows.ingest import IngestStage, SilverStage, concat_alike, resolvable_entities
from sinks.delta.bronze import bronze_path
from sinks.delta.quarantine import quarantine_path
from sinks.delta.silver import read_current, silver_path
from tests.unit.cdc.test_envelope import TOPIC, value

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "config"
MAPPINGS = compile_mappings(CONFIG)


def contact(cid: int, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "contact_id": cid,
        "account_id": "8a0d3c1e-0000-4000-8000-000000000001",
        "salutation": "Ms.",
        "first_name": "zoë",
        "last_name": "ŁUKASIEWICZ",
        "title": "CTO",
        "email": "  Zoe.L@Example.COM ",
        "phone": "030 1234567",
        "mobile_phone": None,
        "birthdate": 3652,  # Debezium sends DATE as days since the epoch
        "mailing_street": "Unter den Linden 1",
        "mailing_city": "Berlin",
        "mailing_postal_code": "10117",
        "mailing_country": "Germany",
        "lead_source": "web",
        "status": "Active",
        "has_opted_out_of_email": False,
        "notes": "",
        "created_at": "2024-01-02T03:04:05.000000Z",
        "updated_at": "2024-01-02T03:04:05.000000Z",
        "external_id": None,
        "version": 1,
        "last_modified_by": "user",
    }
    row.update(over)
    return row


def message(offset: int, op: str, cid: int, lsn: int, **over: object) -> tuple[int, bytes, bytes]:
    after = None if op == "d" else contact(cid, **over)
    before = {"contact_id": cid} if op == "d" else None
    return offset, json.dumps({"contact_id": cid}).encode(), value(op, before=before, after=after, lsn=lsn)


def stage(root: Path, resolve: tuple[str, ...] = ("customer",)) -> IngestStage:
    q = Quarantine(root, dlq=None)
    return IngestStage(BronzeWriter(root, q), SilverStage(root, MAPPINGS, q, resolve_entities=resolve))


def test_changes_reach_bronze_and_silver_with_canonical_values(tmp_path: Path) -> None:
    s = stage(tmp_path)
    batch = decode_batch(
        raw_batch(TOPIC, 0, [message(0, "c", 1, 100), message(1, "c", 2, 110, first_name="ada")])
    )
    changes = s.process(batch)
    assert pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts"))).height == 2
    silver = read_current(silver_path(tmp_path, "customer")).sort("source_key")
    assert silver["source_key"].to_list() == ["1", "2"]
    row = silver.row(0, named=True)
    assert row["first_name"] == "Zoë" and row["last_name"] == "Łukasiewicz"
    assert row["email"] == "zoe.l@example.com"
    assert row["phone"] == "+49301234567"
    assert row["country"] == "DE" and row["status"] == "active"
    assert str(row["birth_date"]) == "1980-01-01"
    assert (row["source_system"], row["source_table"], row["lsn"]) == ("crm", "public.contacts", 100)
    # what entity resolution gets: the silver state, JSON-safe, with its cause
    by_id = {c.record_id: c for c in changes}
    assert set(by_id) == {"crm:public.contacts:1", "crm:public.contacts:2"}
    rc = by_id["crm:public.contacts:1"]
    assert rc.entity == "customer" and rc.source_system == "crm"
    assert rc.values is not None and rc.values["birth_date"] == "1980-01-01"
    assert rc.values["email"] == "zoe.l@example.com"
    assert rc.cause.lsn == 100 and rc.cause.offset == 0 and rc.cause.topic == TOPIC


def test_late_event_is_ignored_and_resolution_sees_the_current_state(tmp_path: Path) -> None:
    s = stage(tmp_path)
    s.process(decode_batch(raw_batch(TOPIC, 0, [message(0, "u", 1, 200, title="CEO")])))
    # an older change of the same key arrives later (e.g. a snapshot read racing the stream)
    changes = s.process(decode_batch(raw_batch(TOPIC, 0, [message(1, "u", 1, 150, title="Intern")])))
    assert read_current(silver_path(tmp_path, "customer"))["job_title"].to_list() == ["CEO"]
    assert [c.values["job_title"] for c in changes if c.values] == ["CEO"]


def test_delete_is_a_soft_delete_and_reaches_resolution_as_none(tmp_path: Path) -> None:
    s = stage(tmp_path)
    s.process(decode_batch(raw_batch(TOPIC, 0, [message(0, "c", 1, 100)])))
    changes = s.process(decode_batch(raw_batch(TOPIC, 0, [message(1, "d", 1, 120)])))
    assert read_current(silver_path(tmp_path, "customer")).height == 0
    assert read_current(silver_path(tmp_path, "customer"), include_deleted=True)["deleted"].to_list() == [
        True
    ]
    assert [(c.record_id, c.values) for c in changes] == [("crm:public.contacts:1", None)]


def test_replayed_batch_changes_nothing(tmp_path: Path) -> None:
    msgs = [message(i, "c", i, 100 + i) for i in range(5)]
    stage(tmp_path).process(decode_batch(raw_batch(TOPIC, 0, msgs)))
    s = stage(tmp_path)  # a restarted worker re-reads from an older snapshot
    again = s.process(decode_batch(raw_batch(TOPIC, 0, msgs)))
    assert pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts"))).height == 5
    assert read_current(silver_path(tmp_path, "customer")).height == 5
    assert len(again) == 5  # resolution may see them again: it is idempotent per record


def test_mapping_failures_go_to_quarantine_while_good_records_flow(tmp_path: Path) -> None:
    s = stage(tmp_path)
    msgs = [message(0, "c", 1, 100), message(1, "c", 2, 101, status="Maybe"), message(2, "c", 3, 102)]
    changes = s.process(decode_batch(raw_batch(TOPIC, 0, msgs)))
    assert sorted(read_current(silver_path(tmp_path, "customer"))["source_key"].to_list()) == ["1", "3"]
    q = pl.read_delta(str(quarantine_path(tmp_path)))
    assert q["stage"].to_list() == ["mapping"] and q["offset"].to_list() == [1]
    assert "Maybe" in q["detail"][0]
    assert q["topic"].to_list() == [TOPIC] and q["partition"].to_list() == [0]
    assert json.loads(q["value"][0])["after"]["status"] == "Maybe"
    assert {c.record_id for c in changes} == {"crm:public.contacts:1", "crm:public.contacts:3"}
    # the same batch again: nothing quarantined twice
    s.process(decode_batch(raw_batch(TOPIC, 0, msgs)))
    assert pl.read_delta(str(quarantine_path(tmp_path))).height == 1


def test_added_source_column_is_kept_under_the_default_policy(tmp_path: Path) -> None:
    s = stage(tmp_path)
    s.process(decode_batch(raw_batch(TOPIC, 0, [message(0, "c", 1, 100, loyalty_tier="gold")])))
    row = read_current(silver_path(tmp_path, "customer")).row(0, named=True)
    assert json.loads(row["extras"]) == {"loyalty_tier": "gold"}
    assert row["first_name"] == "Zoë"


def test_fail_policy_stops_the_flow_with_a_terminal_error(tmp_path: Path) -> None:
    text = (CONFIG / "mappings" / "crm" / "contacts.yaml").read_text()
    cfg = tmp_path / "config" / "mappings" / "crm"
    cfg.mkdir(parents=True)
    (cfg / "contacts.yaml").write_text(text + "\noptions: {drift: fail}\n")
    mappings = compile_mappings(tmp_path / "config")
    q = Quarantine(tmp_path, dlq=None)
    s = IngestStage(BronzeWriter(tmp_path, q), SilverStage(tmp_path, mappings, q))
    with pytest.raises(TerminalError, match="loyalty_tier"):
        s.process(decode_batch(raw_batch(TOPIC, 0, [message(0, "c", 1, 100, loyalty_tier="gold")])))
    # the raw change is safe in bronze before the flow stops
    assert pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts"))).height == 1


def test_unmapped_tables_stay_in_bronze_only(tmp_path: Path) -> None:
    s = stage(tmp_path)
    msg = (0, b'{"id":1}', value("c", after={"id": 1}, table="opportunities"))
    assert s.process(decode_batch(raw_batch("crm.public.opportunities", 0, [msg]))) == []
    assert pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "opportunities"))).height == 1
    assert not silver_path(tmp_path, "customer").exists()


def test_only_entities_with_matching_and_survivorship_configs_are_resolved() -> None:
    assert resolvable_entities(CONFIG) == ("customer",)


class EchoOf:
    """Stands in for flows.propagate.echo.EchoFilter: the given (system, key) pairs are our echoes."""

    def __init__(self, *keys: tuple[str, str]) -> None:
        self.keys = set(keys)
        self.asked: list[tuple[str, str]] = []

    def is_echo(self, system: str, key: str, values: object) -> bool:
        self.asked.append((system, key))
        return (system, key) in self.keys


def test_echo_of_our_push_is_kept_in_silver_but_not_resolved(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, dlq=None)
    echo = EchoOf(("crm", "2"))
    s = IngestStage(
        BronzeWriter(tmp_path, q),
        SilverStage(tmp_path, MAPPINGS, q, resolve_entities=("customer",)),
        echo,  # type: ignore[arg-type]
    )
    msgs = [message(0, "c", 1, 100), message(1, "c", 2, 101), message(2, "d", 3, 102)]
    changes = s.process(decode_batch(raw_batch(TOPIC, 0, msgs)))
    assert sorted(read_current(silver_path(tmp_path, "customer"))["source_key"].to_list()) == ["1", "2"]
    assert [c.record_id for c in changes] == ["crm:public.contacts:1", "crm:public.contacts:3"]
    assert sorted(echo.asked) == [("crm", "1"), ("crm", "2")]  # deletes are never echoes


def test_partition_batches_of_one_activation_share_one_silver_commit(tmp_path: Path) -> None:
    s = stage(tmp_path)
    s.process(decode_batch(raw_batch(TOPIC, 0, [message(0, "c", 1, 100)])))
    path = silver_path(tmp_path, "customer")
    before = DeltaTable(str(path)).version()
    p0 = decode_batch(raw_batch(TOPIC, 0, [message(1, "u", 1, 130, title="CEO"), message(2, "c", 3, 131)]))
    p1 = decode_batch(raw_batch(TOPIC, 1, [message(0, "c", 2, 120), message(1, "u", 2, 140, status="Maybe")]))
    changes = s.process_many([p0, p1])
    assert DeltaTable(str(path)).version() == before + 1  # one MERGE for both partitions
    silver = read_current(path).sort("source_key")
    assert silver["source_key"].to_list() == ["1", "2", "3"]
    assert silver["job_title"].to_list()[0] == "CEO"
    assert {c.record_id for c in changes} == {f"crm:public.contacts:{k}" for k in (1, 2, 3)}
    # each batch's bronze commit and quarantined record keep their own partition and offset
    q = pl.read_delta(str(quarantine_path(tmp_path)))
    assert (q["partition"].to_list(), q["offset"].to_list()) == ([1], [1])
    bronze = pl.read_delta(str(bronze_path(tmp_path, "crm", "public", "contacts")))
    assert sorted(zip(bronze["partition"], bronze["offset"], strict=True)) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
    ]


def test_same_state_whether_partition_batches_are_combined_or_not(tmp_path: Path) -> None:
    batches = [
        [message(0, "c", 1, 100), message(1, "u", 1, 150, title="CEO"), message(2, "d", 4, 160)],
        [message(0, "c", 2, 110), message(1, "u", 2, 170, first_name="ada"), message(2, "c", 4, 105)],
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    stage(one).process_many([decode_batch(raw_batch(TOPIC, p, m)) for p, m in enumerate(batches)])
    s = stage(two)
    for p, m in enumerate(batches):
        s.process(decode_batch(raw_batch(TOPIC, p, m)))
    cols = ["source_key", "lsn", "deleted", "first_name", "job_title"]
    a = read_current(silver_path(one, "customer"), include_deleted=True).select(cols).sort("source_key")
    b = read_current(silver_path(two, "customer"), include_deleted=True).select(cols).sort("source_key")
    assert a.equals(b) and a.height == 3


def test_concat_alike_keeps_frames_of_other_schemas_apart() -> None:
    a, b = pl.DataFrame({"k": ["1"], "x": [1]}), pl.DataFrame({"k": ["2"], "x": [2]})
    drifted = pl.DataFrame({"k": ["3"], "x": [3], "new": ["n"]})
    out = concat_alike([a, b, drifted, a])
    assert [f.height for f in out] == [2, 1, 1]
    assert out[1].columns == ["k", "x", "new"]
