import pickle
from pathlib import Path

from flows.resolve.compare import SCALAR_MAX_PAIRS
from flows.resolve.config import Overrides
from flows.resolve.events import EntityEvent
from flows.resolve.resolver import Resolver
from tests.unit.flows.resolve.resolve_helpers import person, person_config

X1 = person("Anna Weber", "Berlin", "1990-01-02")
X1B = person("anna  WEBER", "berlin", "1990-01-02")
X2 = person("Anna Weber", None, None, "anna@x.org")
X3 = person("Anna Weber", "Berlin", "1990-01-02", "Anna@x.org")
OTHER = person("Piotr Nowak", "Gdansk", "1971-05-06", "pn@y.pl")


def kinds(events: list[EntityEvent]) -> list[str]:
    return [e.kind for e in events]


def test_new_record_gets_a_golden_id() -> None:
    r = Resolver(person_config())
    events = r.upsert("x1", X1)
    assert events == [EntityEvent("ASSIGNED", "person-00000001", record_id="x1")]
    assert r.golden_id("x1") == "person-00000001"
    assert r.members("person-00000001") == ("x1",)


def test_duplicate_joins_the_existing_entity() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    events = r.upsert("x1b", X1B)
    g = r.golden_id("x1")
    assert r.golden_id("x1b") == g
    assert EntityEvent("ASSIGNED", g, record_id="x1b") in events
    assert r.upsert("other", OTHER)[0].golden_id != g


def test_merge_keeps_the_older_id_and_names_the_retired_one() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    r.upsert("x2", X2)
    g1, g2 = r.golden_id("x1"), r.golden_id("x2")
    assert g1 != g2
    events = r.upsert("x3", X3)
    assert EntityEvent("MERGED", g1, others=(g2,)) in events
    assert {r.golden_id(x) for x in ("x1", "x2", "x3")} == {g1}
    assert EntityEvent("ASSIGNED", g1, record_id="x2", previous_golden_id=g2) in events
    assert r.members(g2) == ()


def test_delete_of_a_bridge_splits_and_the_larger_part_keeps_the_id() -> None:
    r = Resolver(person_config())
    for rid, rec in [("x2", X2), ("x1", X1), ("x1b", X1B), ("x3", X3)]:
        r.upsert(rid, rec)
    g = r.golden_id("x2")
    assert r.members(g) == ("x1", "x1b", "x2", "x3")
    events = r.delete("x3")
    assert r.golden_id("x1") == r.golden_id("x1b") == g
    g_new = r.golden_id("x2")
    assert g_new != g
    assert EntityEvent("SPLIT", g, others=(g_new,)) in events
    assert EntityEvent("REMOVED", g, record_id="x3") in events
    assert r.golden_id("x3") is None


def test_update_that_breaks_the_links_splits() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    r.upsert("x1b", X1B)
    g = r.golden_id("x1")
    events = r.upsert("x1b", OTHER)
    assert r.golden_id("x1") == g and r.golden_id("x1b") != g
    assert kinds(events)[0] == "SPLIT"


def test_deleting_the_last_record_retires_the_id() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    g = r.golden_id("x1")
    assert r.delete("x1") == [EntityEvent("RETIRED", g), EntityEvent("REMOVED", g, record_id="x1")]
    assert r.delete("x1") == []
    assert r.clusters() == {}


def test_unchanged_upsert_reassigns_in_place() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    g = r.golden_id("x1")
    assert r.upsert("x1", X1) == [EntityEvent("ASSIGNED", g, record_id="x1", previous_golden_id=g)]


def test_cannot_link_survives_rematching() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    r.upsert("x1b", X1B)
    events = r.add_cannot_link("x1", "x1b")
    assert r.golden_id("x1") != r.golden_id("x1b")
    assert kinds(events)[0] == "SPLIT"
    r.upsert("x1b", {**X1B, "email": "new@x.org"})
    r.upsert("x1", X1)
    assert r.golden_id("x1") != r.golden_id("x1b")
    r.remove_override("x1", "x1b")
    assert r.golden_id("x1") == r.golden_id("x1b")


def test_must_link_survives_rematching_and_config_overrides_apply() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    r.upsert("other", OTHER)
    events = r.add_must_link("x1", "other")
    assert r.golden_id("x1") == r.golden_id("other")
    assert kinds(events)[0] == "MERGED"
    r.upsert("other", {**OTHER, "city": "Sopot"})
    assert r.golden_id("x1") == r.golden_id("other")
    cfg = person_config(overrides=Overrides(must_link=(("x1", "other"),)).model_dump())
    r2 = Resolver(cfg)
    r2.upsert("other", OTHER)
    r2.upsert("x1", X1)
    assert r2.golden_id("x1") == r2.golden_id("other")


def test_oversized_block_stops_generating_pairs_and_recovers_when_it_shrinks() -> None:
    cfg = person_config(blocking={"max_block_size": 2, "keys": [{"name": "dob", "features": ["dob"]}]})
    r = Resolver(cfg)
    r.upsert("r1", person("Anna Weber", None, "1990-01-02"))
    r.upsert("r2", person("Anna Weber", None, "1990-01-02"))
    assert r.golden_id("r1") == r.golden_id("r2")
    r.upsert("r3", person("Zed Quux", None, "1990-01-02"))
    assert not r.is_candidate_pair("r1", "r2")
    assert r.golden_id("r1") != r.golden_id("r2")
    r.delete("r3")
    assert r.is_candidate_pair("r1", "r2")
    assert r.golden_id("r1") == r.golden_id("r2")


def test_explain_shows_links_with_breakdown_and_merges() -> None:
    r = Resolver(person_config())
    for rid, rec in [("x1", X1), ("x2", X2), ("x3", X3)]:
        r.upsert(rid, rec)
    ex = r.explain(r.golden_id("x1") or "")
    assert ex.members == ("x1", "x2", "x3")
    pairs = {(link.a, link.b) for link in ex.links}
    assert pairs == {("x1", "x3"), ("x2", "x3")}
    top = ex.links[0]
    assert (top.a, top.b) == ("x1", "x3") and top.probability > 0.99
    assert {d.comparison: d.level for d in top.comparisons} == {
        "name": "exact",
        "dob": "exact",
        "email": "null",
        "city": "exact",
    }
    assert abs(top.weight - (r.edge("x1", "x3") or (0.0, b""))[0]) < 1e-9
    assert len(ex.merges) == 2 and ex.merges[0].weight == top.weight


def test_pickled_state_continues_identically() -> None:
    r = Resolver(person_config())
    r.upsert("x1", X1)
    r.upsert("x2", X2)
    copy = pickle.loads(pickle.dumps(r))
    assert r.upsert("x3", X3) == copy.upsert("x3", X3)
    assert r.partition() == copy.partition()
    assert r.stats() == copy.stats()


def test_batch_and_single_upserts_give_the_same_entities() -> None:
    records = {"x1": X1, "x2": X2, "x3": X3, "x1b": X1B, "other": OTHER}
    one = Resolver(person_config())
    for rid, rec in records.items():
        one.upsert(rid, rec)
    batch = Resolver(person_config())
    batch.upsert_many(records.items())
    assert one.partition() == batch.partition()


def test_overrides_from_a_file_replace_the_current_set(tmp_path: Path) -> None:
    from flows.resolve.config import load_overrides

    path = tmp_path / "overrides.yaml"
    path.write_text("must_link:\n  - [x1, other]\ncannot_link:\n  - [x1, x1b]\n")
    r = Resolver(person_config())
    for rid, rec in [("x1", X1), ("x1b", X1B), ("other", OTHER)]:
        r.upsert(rid, rec)
    assert r.golden_id("x1") == r.golden_id("x1b") != r.golden_id("other")
    r.set_overrides(load_overrides(path))
    assert r.golden_id("x1") == r.golden_id("other") != r.golden_id("x1b")
    r.set_overrides(Overrides())
    assert r.golden_id("x1") == r.golden_id("x1b") != r.golden_id("other")


def test_big_batches_score_column_wise_and_agree_with_one_by_one() -> None:
    # 45 records in one block: 990 candidate pairs, scored column-wise in one batch.
    names = ["anna weber", "anna webber", "ana weber", "jo lee", "joe lee", "piotr nowak", "peter nowak"]
    records = {
        f"r{i:02d}": person(names[i % len(names)], "berlin" if i % 3 else None, f"1990-01-0{1 + i % 4}")
        for i in range(45)
    }
    one = Resolver(person_config())
    for rid, rec in records.items():
        one.upsert(rid, rec)
    batch = Resolver(person_config())
    batch.upsert_many(records.items())
    assert batch.stats().pairs_scored > SCALAR_MAX_PAIRS
    assert one.partition() == batch.partition()
    assert one.adj == batch.adj
