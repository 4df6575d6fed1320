"""The resolve operator in a real (in-process) Bytewax flow: batches of record changes in, GoldBatch out.

Customers come from the demo world (``cdc.demo.world``): each person is written down by the crm,
erp and shop systems the way their mappings produce canonical customers (the erp upper-cases names
and keeps no birth date, the shop keeps no phone), so one person must become one golden id.
"""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from cdc.demo.world import Person, make_person
from core.golden import Cause, GoldBatch, RecordChange, decode_change, encode_change
from core.metrics import RESOLVE_RECORDS
from flows.resolve.golden import GoldenBook
from flows.resolve.operator import ResolveLogic, _Snapshot, resolve

CONFIG = Path("config")


def customer(p: Person, system: str) -> dict[str, Any]:
    given, family = p.given_latin, p.family_latin
    full = f"{given} {family}"
    values: dict[str, Any] = {
        "kind": "person",
        "status": "active",
        "full_name": full.upper() if system == "erp" else full,
        "first_name": given,
        "last_name": family,
        "email": p.email,
        "phone": None if system == "shop" else p.phone.e164(),
        "birth_date": None if system == "erp" else p.birth_date.isoformat(),
        "street": p.address.street,
        "postal_code": p.address.postcode or None,
        "city": p.address.city_latin,
        "country": p.address.country,
        "currency": "EUR" if system == "erp" else None,
    }
    return values


def change(entity: str, system: str, key: int, values: dict[str, Any] | None, ts: int) -> RecordChange:
    rid = f"{system}:public.customers:{key}"
    return RecordChange(
        entity, rid, system, values, ts, Cause(rid, ts, ts, f"{system}.public.customers", 0, ts)
    )


def run(batches: list[list[RecordChange]]) -> list[GoldBatch]:
    flow = Dataflow("resolve_test")
    up = op.input("in", flow, TestingSource(batches))
    out: list[GoldBatch] = []
    op.output("out", resolve("resolve", up, config_dir=CONFIG, clock=lambda: 42), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0))  # type: ignore[no-untyped-call]
    return out


def test_one_golden_id_per_person_across_systems_and_unconfigured_entities_pass(monkeypatch: Any) -> None:
    freezes: list[int] = []
    real_freeze = _Snapshot.freeze

    def counting(self: _Snapshot) -> None:
        freezes.append(1)
        real_freeze(self)

    monkeypatch.setattr(_Snapshot, "freeze", counting)
    people = [make_person(i, 3, org_count=10) for i in range(1, 6)]
    systems = ("crm", "erp", "shop")
    batches: list[list[RecordChange]] = []
    for s_i, system in enumerate(systems):
        batch = [
            change("customer", system, i, customer(p, system), 1_000 * (s_i + 1))
            for i, p in enumerate(people)
        ]
        # Another entity in the same batch: no matching config, so it is passed over.
        batch.append(change("order", system, 1, {"status": "open"}, 1))
        batches.append(batch)
    before = RESOLVE_RECORDS.labels(entity="order", outcome="no_config")._value.get()
    out = run(batches)
    assert RESOLVE_RECORDS.labels(entity="order", outcome="no_config")._value.get() - before == 3
    assert out and {b.entity for b in out} == {"customer"}
    # Without recovery Bytewax drops the snapshots it asks for: the book is never pickled.
    assert freezes == []

    golden_of: dict[str, str] = {}
    latest: dict[str, Any] = {}
    for b in out:
        for x in b.crosswalk:
            assert x.golden_id is not None
            golden_of[x.record_id] = x.golden_id
        for ch in b.changes:
            latest[ch.golden_id] = ch
    for i in range(len(people)):
        ids = {golden_of[f"{s}:public.customers:{i}"] for s in systems}
        assert len(ids) == 1, f"person {i} split over {ids}"
    assert len(set(golden_of.values())) == len(people)
    live = [c for c in latest.values() if c.kind == "UPSERT"]
    assert len(live) == len(people)
    for ch in live:
        assert len(ch.members) == 3
        assert ch.provenance["full_name"].source == "crm"  # source priority: crm first
        assert ch.values["currency"] == "EUR" and ch.provenance["currency"].source == "erp"
        assert ch.emitted_at_us == 42
        assert all(f in ch.provenance for f, v in ch.values.items() if v is not None)
    assert all(link.probability >= 0.5 for b in out for link in b.links)
    # Every change goes onto golden.customer as is.
    for b in out:
        for ch in b.changes:
            assert decode_change(encode_change(ch)) == ch


def test_deletes_and_merges_flow_through_in_later_batches() -> None:
    p = make_person(1, 3, org_count=10)
    crm, shop = customer(p, "crm"), customer(p, "shop")
    # The shop record starts with nothing in common with the crm one, then is corrected.
    stranger = {**shop, "full_name": "Zed Quill", "first_name": "Zed", "last_name": "Quill", "email": None}
    stranger.update(street=None, postal_code=None, city=None, birth_date=None)
    out = run(
        [
            [change("customer", "crm", 1, crm, 1), change("customer", "shop", 2, stranger, 1)],
            [change("customer", "shop", 2, shop, 2)],
            [change("customer", "shop", 2, None, 3)],
        ]
    )
    assert len(out) == 3
    first, merged, deleted = out
    assert len({c.golden_id for c in first.changes}) == 2
    (lineage,) = merged.lineage
    assert lineage.kind == "MERGED"
    assert [c.kind for c in merged.changes] == ["UPSERT", "RETIRED"]
    assert [(x.record_id, x.golden_id) for x in deleted.crosswalk if x.golden_id is None] == [
        ("shop:public.customers:2", None)
    ]


def test_snapshot_pickles_lazily_and_restores_the_book() -> None:
    p = make_person(2, 3, org_count=10)
    logic = ResolveLogic(CONFIG, lambda: 1, None)
    assert logic.snapshot() is None
    logic.on_batch([[change("customer", "crm", 1, customer(p, "crm"), 1)]])
    snap = logic.snapshot()
    assert isinstance(snap, _Snapshot) and logic.snapshot() is snap  # no batch in between: reused
    restored = pickle.loads(pickle.dumps(snap))
    assert isinstance(restored, GoldenBook) and restored.golden_ids() == ["customer-00000001"]
    # A holder dropped unpickled (no recovery) costs nothing: the next one is a new holder.
    del snap
    held = logic.snapshot()
    assert isinstance(held, _Snapshot)
    # Still held and unpickled when the next batch comes: pickled first, so it keeps the old state.
    logic.on_batch([[change("customer", "erp", 9, customer(make_person(3, 3, org_count=10), "erp"), 2)]])
    assert logic.freezes == 1
    old = pickle.loads(pickle.dumps(held))
    assert isinstance(old, GoldenBook) and len(old) == 1
    assert logic.book is not None and len(logic.book) == 2
    resumed = ResolveLogic(CONFIG, lambda: 5, old)
    (batch,) = resumed.on_batch([[change("customer", "crm", 1, None, 3)]])[0]
    assert [c.kind for c in batch.changes] == ["RETIRED"]


def test_resume_from_a_recovery_snapshot_continues_versions_and_ids(tmp_path: Path) -> None:
    from bytewax.recovery import RecoveryConfig, init_db_dir

    init_db_dir(tmp_path, 1)  # type: ignore[no-untyped-call]
    p = make_person(4, 3, org_count=10)
    crm = customer(p, "crm")
    items: list[Any] = [
        [change("customer", "crm", 1, crm, 1)],
        TestingSource.EOF(),
        [change("customer", "crm", 1, {**crm, "job_title": "Engineer"}, 2)],
    ]
    flow = Dataflow("resolve_resume")
    up = op.input("in", flow, TestingSource(items))
    out: list[GoldBatch] = []
    op.output("out", resolve("resolve", up, config_dir=CONFIG, clock=lambda: 7), TestingSink(out))
    recovery = RecoveryConfig(tmp_path)  # type: ignore[no-untyped-call]
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)  # type: ignore[no-untyped-call]
    (first,) = out
    (v1,) = first.changes
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)  # type: ignore[no-untyped-call]
    assert len(out) == 2
    (v2,) = out[1].changes
    assert (v2.golden_id, v2.version, v2.changed) == (v1.golden_id, 2, ("job_title",))


def test_a_changed_overrides_file_is_applied_on_the_next_batch(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    (cfg / "matching" / "overrides").mkdir(parents=True)
    (cfg / "survivorship").mkdir()
    for sub in ("matching", "survivorship"):
        (cfg / sub / "customer.yaml").write_text((CONFIG / sub / "customer.yaml").read_text())
    logic = ResolveLogic(cfg, lambda: 1, None, overrides_poll_s=0.0)
    a, b = make_person(5, 3, org_count=10), make_person(6, 3, org_count=10)
    logic.on_batch([[change("customer", "crm", 1, customer(a, "crm"), 1)]])
    logic.on_batch([[change("customer", "shop", 2, customer(b, "shop"), 1)]])
    book = logic.book
    assert book is not None
    ra, rb = "crm:public.customers:1", "shop:public.customers:2"
    assert book.golden_id(ra) != book.golden_id(rb)
    (cfg / "matching" / "overrides" / "customer.yaml").write_text(f"must_link:\n  - ['{ra}', '{rb}']\n")
    out, _ = logic.on_batch([[change("customer", "crm", 1, customer(a, "crm"), 1)]])
    assert book.golden_id(ra) == book.golden_id(rb)
    (merge,) = [b for b in out if b.lineage]
    assert [e.kind for e in merge.lineage] == ["MERGED"]
