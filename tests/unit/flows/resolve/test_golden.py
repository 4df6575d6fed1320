"""GoldenBook: record changes -> golden versions, crosswalk, links and lineage.

Profiles of the property test: CI (default, 40 examples, derandomized) or ``HYPOTHESIS_PROFILE=dev``
(``GOLDEN_EXAMPLES``, default 300, random).

Records use the small ``person`` matching config of the resolver tests (hand-set weights), so which
pairs link is known: same name + same city links, same name + another city does not.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.golden import Cause, GoldBatch, GoldenChange, RecordChange, content_hash
from flows.resolve.config import Overrides
from flows.resolve.golden import GoldenBook, golden_fields, merge_overrides
from flows.resolve.survivorship import Member, SurvivorshipConfig, build_golden, load_survivorship_config
from tests.unit.flows.resolve.resolve_helpers import person, person_config

FIELDS = ("name", "city", "dob", "email")
SURVIVORSHIP = SurvivorshipConfig.model_validate(
    {
        "entity": "person",
        "sources": {"crm": {"trust": 0.9}, "erp": {"trust": 0.8}, "shop": {"trust": 0.5}},
        "attributes": {
            "name": {"rule": "source_priority", "priority": ["crm", "erp", "shop"]},
            "email": {"rule": "most_recent"},
        },
    }
)
A = "crm:public.people:1"
A2 = "erp:public.people:7"
B = "shop:public.people:3"
ANNA = person("Anna Weber", "berlin", "1990-01-02", "anna@x.org")
ANNA_ERP = person("ANNA WEBER", "berlin", "1990-01-02", None)
ANNA_SHOP = person("anna weber", "berlin", None, None)
ANNA_ELSEWHERE = person("anna weber", "bern", None, None)
PIOTR = person("Piotr Nowak", "gdansk", "1971-05-06", "pn@y.pl")


def book(overrides: Overrides | None = None, **config: Any) -> GoldenBook:
    return GoldenBook(person_config(**config), SURVIVORSHIP, fields=FIELDS, overrides=overrides)


def change(rid: str, values: dict[str, Any] | None, ts: int = 1_000) -> RecordChange:
    system = rid.split(":", 1)[0]
    return RecordChange("person", rid, system, values, ts, Cause(rid, ts, ts, "t", 0, ts))


def upserts(batch: GoldBatch) -> dict[str, GoldenChange]:
    return {c.golden_id: c for c in batch.changes if c.kind == "UPSERT"}


def retired(batch: GoldBatch) -> dict[str, GoldenChange]:
    return {c.golden_id: c for c in batch.changes if c.kind == "RETIRED"}


def test_first_version_lists_every_value_with_provenance_and_hash() -> None:
    b = book()
    out = b.apply([change(A, ANNA, ts=5)], now_us=100)
    (ch,) = out.changes
    assert (ch.kind, ch.version, ch.members, ch.emitted_at_us) == ("UPSERT", 1, (A,), 100)
    assert ch.values == {"name": "Anna Weber", "city": "berlin", "dob": "1990-01-02", "email": "anna@x.org"}
    assert ch.changed == FIELDS
    assert ch.content_hash == content_hash(ch.values)
    assert ch.cause == Cause(A, 5, 5, "t", 0, 5)
    assert set(ch.provenance) == set(FIELDS)
    assert ch.provenance["name"].rule == "source_priority"
    assert ch.provenance["email"].source_ts_us == 5
    (xw,) = out.crosswalk
    assert (xw.record_id, xw.golden_id, xw.score, xw.since_us) == (A, ch.golden_id, None, 100)
    assert out.relinked == (ch.golden_id,) and out.links == ()


def test_duplicate_from_another_system_joins_with_links_and_scores() -> None:
    b = book()
    g = b.apply([change(A, ANNA)], now_us=1).changes[0].golden_id
    out = b.apply([change(A2, ANNA_ERP, ts=2_000)], now_us=2)
    (ch,) = out.changes
    assert (ch.golden_id, ch.version, ch.members) == (g, 2, (A, A2))
    assert ch.changed == ()  # crm wins the name, and the erp record adds no new value
    assert ch.values["name"] == "Anna Weber"
    assert {x.record_id: x.golden_id for x in out.crosswalk} == {A: g, A2: g}
    scores = {x.record_id: x.score for x in out.crosswalk}
    score = scores[A]
    assert score == scores[A2] and score is not None and score > 0.99
    since = {x.record_id: x.since_us for x in out.crosswalk}
    assert since == {A: 1, A2: 2}  # A stayed: its row is re-sent for the new score, joined-at kept
    (link,) = out.links
    assert (link.golden_id, link.a, link.b) == (g, A, A2)
    assert {c[0] for c in link.comparisons} == {"name", "dob", "email", "city"}
    edge = b.resolver.edge(A, A2)
    assert edge is not None and link.weight == edge[0] and link.probability > 0.99


def test_merge_keeps_the_older_id_and_retires_the_other() -> None:
    b = book()
    g_a = b.apply([change(A, ANNA)], now_us=1).changes[0].golden_id
    g_b = b.apply([change(B, ANNA_ELSEWHERE)], now_us=2).changes[0].golden_id
    assert g_a != g_b and g_a < g_b
    out = b.apply([change(B, ANNA_SHOP, ts=3_000)], now_us=3)
    survivor, gone = upserts(out), retired(out)
    assert set(survivor) == {g_a} and set(gone) == {g_b}
    assert survivor[g_a].merged_from == (g_b,)
    assert survivor[g_a].members == (A, B)
    assert survivor[g_a].version == 2
    assert (gone[g_b].version, gone[g_b].merged_into, gone[g_b].members) == (2, g_a, ())
    # Survivor first, then the retired id: a consumer never sees a record without a golden id.
    assert [c.kind for c in out.changes] == ["UPSERT", "RETIRED"]
    (lin,) = out.lineage
    assert (lin.kind, lin.golden_id, lin.others, lin.at_us) == ("MERGED", g_a, (g_b,), 3)
    assert lin.cause is not None and lin.cause.record_id == B
    assert gone[g_b].cause == survivor[g_a].cause == lin.cause
    assert {x.record_id: (x.golden_id, x.since_us) for x in out.crosswalk}[B] == (g_a, 3)
    assert b.golden(g_b) is None
    view = b.golden(g_a)
    assert view is not None and view.version == 2 and view.members == (A, B)


def test_split_larger_part_keeps_the_id_and_new_id_names_its_origin() -> None:
    b = book()
    b.apply([change(A, ANNA), change(A2, ANNA_ERP), change(B, ANNA_SHOP)], now_us=1)
    g = b.golden_id(A)
    assert g is not None and b.golden_id(B) == b.golden_id(A2) == g
    out = b.apply([change(B, ANNA_ELSEWHERE, ts=5_000)], now_us=2)
    new = b.golden_id(B)
    assert new is not None and new != g and b.golden_id(A2) == g
    ups = upserts(out)
    assert ups[g].members == (A, A2) and ups[g].version == 2 and ups[g].split_from is None
    assert (ups[new].version, ups[new].split_from, ups[new].members) == (1, g, (B,))
    assert ups[new].values["city"] == "bern"
    (lin,) = out.lineage
    assert (lin.kind, lin.golden_id, lin.others) == ("SPLIT", g, (new,))
    xw = {x.record_id: x for x in out.crosswalk}
    assert (xw[B].golden_id, xw[B].score, xw[B].since_us) == (new, None, 2)
    assert set(out.relinked) == {g, new}
    assert {(lk.a, lk.b) for lk in out.links} == {(A, A2)}


def test_same_values_again_emit_nothing_and_an_edit_bumps_the_version() -> None:
    b = book()
    first = b.apply([change(A, ANNA), change(A2, ANNA_ERP)], now_us=1)
    g = first.changes[0].golden_id
    again = b.apply([change(A, ANNA), change(A2, ANNA_ERP)], now_us=2)
    assert again == GoldBatch("person")
    # A newer timestamp with the same values changes no value: still nothing.
    assert b.apply([change(A2, ANNA_ERP, ts=9_999)], now_us=3).changes == ()
    out = b.apply([change(A, {**ANNA, "email": "anna.weber@x.org"}, ts=10_000)], now_us=4)
    (ch,) = out.changes
    assert (ch.golden_id, ch.version, ch.changed) == (g, 2, ("email",))
    assert ch.values["email"] == "anna.weber@x.org"
    assert out.crosswalk == ()  # nobody moved and the score did not change
    out = b.apply([change(A, {**ANNA, "email": None}, ts=11_000)], now_us=5)
    assert out.changes[0].version == 3 and out.changes[0].changed == ("email",)
    assert out.changes[0].values["email"] is None and "email" not in out.changes[0].provenance


def test_later_change_of_the_same_record_in_a_batch_wins() -> None:
    b = book()
    out = b.apply([change(A, ANNA), change(A, PIOTR, ts=2_000)], now_us=1)
    (ch,) = out.changes
    assert ch.values["name"] == "Piotr Nowak"
    assert ch.cause is not None and ch.cause.lsn == 2_000


def test_delete_leaves_the_crosswalk_and_retires_an_emptied_id() -> None:
    b = book()
    b.apply([change(A, ANNA), change(A2, ANNA_ERP), change(B, PIOTR)], now_us=1)
    g, gp = b.golden_id(A), b.golden_id(B)
    out = b.apply([change(A2, None, ts=3)], now_us=2)
    (ch,) = out.changes
    assert (ch.golden_id, ch.members, ch.version) == (g, (A,), 2)
    assert {x.record_id: (x.golden_id, x.score) for x in out.crosswalk} == {A2: (None, None), A: (g, None)}
    assert out.relinked == (g,) and out.links == ()
    out = b.apply([change(B, None, ts=4)], now_us=3)
    (gone,) = out.changes
    assert (gone.golden_id, gone.kind, gone.version, gone.merged_into) == (gp, "RETIRED", 2, None)
    assert gone.cause is not None and gone.cause.record_id == B
    assert [(x.record_id, x.golden_id) for x in out.crosswalk] == [(B, None)]
    assert b.golden_id(B) is None and b.golden(str(gp)) is None
    # Deleting an unknown record changes nothing.
    assert b.apply([change("crm:public.people:404", None)], now_us=4) == GoldBatch("person")


def test_cannot_link_keeps_matching_records_apart_across_rematching() -> None:
    b = book(Overrides(cannot_link=((A, A2),)))
    b.apply([change(A, ANNA), change(A2, ANNA_ERP)], now_us=1)
    assert b.golden_id(A) != b.golden_id(A2)
    b.apply(
        [change(A, {**ANNA, "email": "new@x.org"}), change(A2, {**ANNA_ERP, "email": "new@x.org"})], now_us=2
    )
    assert b.golden_id(A) != b.golden_id(A2)
    # A third record matching both joins one of them, never both.
    b.apply([change(B, ANNA_SHOP)], now_us=3)
    assert b.golden_id(A) != b.golden_id(A2)


def test_must_link_joins_unrelated_records_and_config_file_overrides_load(tmp_path: Path) -> None:
    b = book(Overrides(must_link=((A, B),)))
    b.apply([change(A, ANNA), change(B, PIOTR)], now_us=1)
    assert b.golden_id(A) == b.golden_id(B)
    b.apply([change(B, {**PIOTR, "city": "krakow"})], now_us=2)
    assert b.golden_id(A) == b.golden_id(B)
    # Lifting it splits them again, with the events that says so.
    out = b.set_overrides(Overrides(), now_us=3)
    assert b.golden_id(A) != b.golden_id(B)
    assert [e.kind for e in out.lineage] == ["SPLIT"]

    cfg = tmp_path / "config"
    (cfg / "matching" / "overrides").mkdir(parents=True)
    (cfg / "survivorship").mkdir()
    (cfg / "matching" / "customer.yaml").write_text(Path("config/matching/customer.yaml").read_text())
    (cfg / "survivorship" / "customer.yaml").write_text(Path("config/survivorship/customer.yaml").read_text())
    (cfg / "matching" / "overrides" / "customer.yaml").write_text(f"must_link:\n  - ['{A}', '{B}']\n")
    fb = GoldenBook.from_config_dir(cfg, "customer")
    assert fb.overrides.must_link == ((A, B),)
    cust = {"kind": "person", "status": "active"}
    fb.apply(
        [
            RecordChange("customer", A, "crm", {**cust, "full_name": "Anna Weber"}, 1, Cause(A, 1, 1)),
            RecordChange("customer", B, "shop", {**cust, "full_name": "Piotr Nowak"}, 1, Cause(B, 1, 1)),
        ],
        now_us=1,
    )
    assert fb.golden_id(A) == fb.golden_id(B)


def test_merge_overrides_prefers_cannot_link() -> None:
    got = merge_overrides(Overrides(must_link=(("b", "a"),)), Overrides(cannot_link=(("a", "b"),)))
    assert got == Overrides(must_link=(), cannot_link=(("a", "b"),))


def test_provenance_for_every_value_and_single_record_path_equals_build_golden() -> None:
    surv = load_survivorship_config("config/survivorship/customer.yaml")
    fields = golden_fields("customer", surv)
    assert "parent_ref" not in fields and "full_name" in fields and "street" in fields
    values = {
        "kind": "person",
        "status": "active",
        "full_name": "Anna Weber",
        "email": "anna@x.org",
        "street": "Hauptstr. 1",
        "postal_code": None,
        "city": "Berlin",
        "country": "DE",
        "middle_name": "  ",
        "marketing_opt_in": False,
    }
    b = GoldenBook.from_config_dir(Path("config"), "customer")
    (ch,) = b.apply([RecordChange("customer", A, "crm", values, 7, Cause(A, 1, 7))], now_us=1).changes
    ts = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=7)
    ref = build_golden([Member(A, "crm", ts, values)], surv, fields)
    assert {f: v for f, v in ch.values.items() if f in ref.values} == ref.values
    assert all(ch.values[f] is None for f in fields if f not in ref.values)
    assert {f: (p.source, p.record_id, p.rule, p.group, p.support) for f, p in ch.provenance.items()} == {
        f: (p.source, p.record_id, p.rule, p.group, p.support) for f, p in ref.provenance.items()
    }
    assert ch.provenance["postal_code"].group == "address"  # the group wins together, nulls included
    for f, v in ch.values.items():
        if v is not None:
            assert f in ch.provenance


def test_state_pickles_and_the_copy_behaves_the_same() -> None:
    b = book(Overrides(cannot_link=((A2, B),)))
    b.apply([change(A, ANNA), change(A2, ANNA_ERP), change(B, PIOTR)], now_us=1)
    copy = pickle.loads(pickle.dumps(b))
    assert copy.golden_ids() == b.golden_ids()
    for later in (
        [change(B, ANNA_SHOP, ts=5)],
        [change(A, None, ts=6), change("crm:public.people:9", PIOTR, ts=6)],
        [change(A2, {**ANNA_ERP, "city": "bern"}, ts=7)],
    ):
        assert copy.apply(later, now_us=9) == b.apply(later, now_us=9)
    assert {g: b.golden(g) for g in b.golden_ids()} == {g: copy.golden(g) for g in copy.golden_ids()}


# -- order independence -----------------------------------------------------------------------------
_names = st.sampled_from(["anna weber", "anna webber", "ana weber", "jo lee", "joe lee", None])
_cities = st.sampled_from(["berlin", "bern", None])
_dates = st.sampled_from(["1990-01-02", "1990-01-03", None])
_emails = st.sampled_from(["a@x.org", "b@x.org", None])
_records = st.builds(person, _names, _cities, _dates, _emails)
_SYSTEMS = ("crm", "erp", "shop")


@st.composite
def histories(draw: st.DrawFn) -> list[list[RecordChange]]:
    """Per record, its changes in source order (timestamps increase per record)."""
    n = draw(st.integers(2, 10))
    out = []
    for i in range(n):
        rid = f"{_SYSTEMS[i % 3]}:public.people:{i}"
        versions: list[dict[str, Any] | None] = list(draw(st.lists(_records, min_size=1, max_size=3)))
        if draw(st.booleans()) and draw(st.booleans()):
            versions.append(None)
        ts0 = draw(st.integers(0, 50))
        out.append([change(rid, v, ts=ts0 + 100 * k) for k, v in enumerate(versions)])
    return out


def replay(hist: list[list[RecordChange]], rng: random.Random) -> tuple[GoldenBook, list[GoldBatch]]:
    queues = [list(h) for h in hist]
    order = []
    while any(queues):
        order.append(rng.choice([q for q in queues if q]).pop(0))
    b = book()
    outs = []
    i, now = 0, 0
    while i < len(order):
        size = rng.randint(1, 4)
        now += 1
        outs.append(b.apply(order[i : i + size], now_us=now))
        i += size
    return b, outs


def final_view(b: GoldenBook) -> frozenset[tuple[frozenset[str], tuple[Any, ...]]]:
    out = set()
    for g in b.golden_ids():
        v = b.golden(g)
        assert v is not None
        out.add((frozenset(v.members), tuple(sorted(v.values.items(), key=lambda kv: kv[0]))))
    return frozenset(out)


@dataclass
class Consumer:
    """What a consumer of the emitted stream ends up with (as the gold sinks apply it)."""

    golden: dict[str, GoldenChange] = field(default_factory=dict)
    crosswalk: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    links: dict[str, set[tuple[str, str, float]]] = field(default_factory=dict)

    def apply(self, out: GoldBatch) -> None:
        for ch in out.changes:
            prev = self.golden.get(ch.golden_id)
            assert ch.version == (1 if prev is None else prev.version + 1)
            assert ch.content_hash == content_hash(ch.values)
            assert all(f in ch.provenance for f, v in ch.values.items() if v is not None)
            if ch.merged_into is not None:
                assert ch.kind == "RETIRED"
                assert ch.merged_into in {c.golden_id for c in out.changes if c.kind == "UPSERT"}
            self.golden[ch.golden_id] = ch
            if ch.kind == "RETIRED":
                self.links.pop(ch.golden_id, None)
        for g in out.relinked:
            self.links[g] = set()
        for link in out.links:
            assert link.golden_id in out.relinked
            self.links[link.golden_id].add((link.a, link.b, link.weight))
        for x in out.crosswalk:
            if x.golden_id is None:
                self.crosswalk.pop(x.record_id, None)
            else:
                self.crosswalk[x.record_id] = (x.golden_id, x.score)

    def live(self) -> dict[str, GoldenChange]:
        return {g: c for g, c in self.golden.items() if c.kind == "UPSERT"}


settings.register_profile(
    "golden-ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "golden-dev",
    max_examples=int(os.environ.get("GOLDEN_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("golden-dev" if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else "golden-ci")


@PROFILE
@given(histories(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_golden_records(
    hist: list[list[RecordChange]], rng: random.Random
) -> None:
    first, outs_1 = replay(hist, rng)
    second, outs_2 = replay(hist, rng)
    finals = [h[-1] for h in hist if h[-1].values is not None]
    scratch = book()
    scratch.apply(finals, now_us=1)
    assert final_view(first) == final_view(second) == final_view(scratch)
    for b, outs in ((first, outs_1), (second, outs_2)):
        consumer = Consumer()
        for out in outs:
            consumer.apply(out)
        golden = consumer.live()
        assert set(golden) == set(b.golden_ids())
        for g, ch in golden.items():
            view = b.golden(g)
            assert view is not None
            assert (ch.version, ch.members, ch.values) == (view.version, view.members, view.values)
        expected_xw = {}
        for r in finals:
            gid = b.golden_id(r.record_id)
            assert gid is not None
            members = set(b.resolver.members(gid))
            expected_xw[r.record_id] = (gid, b._score(r.record_id, members) if len(members) > 1 else None)
        assert consumer.crosswalk == expected_xw
        for g in golden:
            expected_links = {(lk.a, lk.b, lk.weight) for lk in b._links(g)}
            assert consumer.links.get(g, set()) == expected_links
