"""Each stage function of the staged resolution on its own (small ``person`` config, 2 key groups)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest

from cdc.demo.world import make_person
from core.golden import Cause, RecordChange
from flows.resolve.config import TermFrequencies, TermFrequencyTable
from flows.resolve.stages.blocks import BlockStage
from flows.resolve.stages.cluster import ClusterStage
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.golden import GoldenStage
from flows.resolve.stages.pairs import PairStage
from flows.resolve.stages.protocol import (
    Assignment,
    BlockEntry,
    BlocksIn,
    Completeness,
    GoldenUpdate,
    MemberValues,
    PairsIn,
    RecordEntry,
    RecordsIn,
    Report,
    ValueEntry,
    encode_features,
    encode_row,
    shard_of,
    stable_hash,
    stage_key,
)
from flows.resolve.stages.records import RecordStage, ValueStage, split_batch
from tests.unit.flows.resolve.resolve_helpers import person, person_config
from tests.unit.flows.resolve.test_golden import FIELDS, SURVIVORSHIP
from tests.unit.flows.resolve.test_operator import customer

ANNA = person("Anna Weber", "berlin", "1990-01-02", "anna@x.org")
ANNA2 = person("Anna Weber", "berlin", "1990-01-02", None)


def ctx(shards: int = 2, **cfg: Any) -> StageContext:
    return StageContext(person_config(**cfg), SURVIVORSHIP, shards, fields=FIELDS)


def change(rid: str, values: dict[str, Any] | None, ts: int = 1) -> RecordChange:
    return RecordChange("person", rid, rid.split(":")[0], values, ts, Cause(rid, ts, ts))


# -- keys and the completeness protocol ---------------------------------------------------------


def test_stable_hash_is_crc32_so_every_process_agrees() -> None:
    assert stable_hash("person/x") == zlib.crc32(b"person/x")
    assert {shard_of(f"k{i}", 3) for i in range(50)} == {0, 1, 2}
    assert stage_key("person", "b", 2) == "person/b2" and stage_key("person", "c") == "person/c"


def test_a_token_completes_only_when_every_message_sent_was_received() -> None:
    c = Completeness()
    c.note(Report("s", sent=(("m1", ("t",)), ("m2", ("t",))), root="t"))
    c.hold(("t",), {"a"})
    assert c.complete({"t"}) == []
    # The receiver of m1 reports before m1's sender would (nothing else sent): still incomplete.
    c.note(Report("r", received=(("m1", ("t",)),), sent=(("m3", ("t",)),)))
    assert c.complete({"t"}) == []
    c.note(Report("b", received=(("m3", ("t",)), ("m2", ("t",)))))
    assert c.complete({"t"}) == ["a"]
    assert not c.holds and c.pending() == 0


def test_a_receipt_ahead_of_its_senders_report_does_not_cancel_out() -> None:
    """Counting messages would call this complete: matching ids does not."""
    c = Completeness()
    c.note(Report("split", sent=(("x", ("t",)), ("y", ("t",))), root="t"))
    c.note(Report("b1", received=(("z", ("t",)),), sent=(("w", ("t",)),)))  # z comes from r1 (not yet)
    c.note(Report("r2", received=(("y", ("t",)),)))
    c.note(Report("p1", received=(("w", ("t",)),)))
    assert c.complete({"t"}) == [] and c.pending() == 1
    c.note(Report("r1", received=(("x", ("t",)),), sent=(("z", ("t",)),)))
    assert c.complete({"t"}) == [] and c.pending() == 0


# -- records and values ------------------------------------------------------------------------------


def test_split_sends_one_message_per_record_shard_and_a_root_report() -> None:
    c = ctx(3)
    out = split_batch([change(f"crm:p:{i}", ANNA) for i in range(6)], lambda e: c, lambda: "t1")
    to_r = [(k, m) for k, m in out if "/r" in k]
    root = [m for k, m in out if k == "person/c"]
    assert len(to_r) == len({shard_of(f"crm:p:{i}", 3) for i in range(6)})
    assert sum(len(m.changes) for _, m in to_r) == 6  # type: ignore[attr-defined]
    (rep,) = root
    assert isinstance(rep, Report) and rep.root == "t1"
    assert sorted(mid for mid, _ in rep.sent) == sorted(m.mid for _, m in to_r)  # type: ignore[attr-defined]
    assert split_batch([change("crm:p:1", ANNA)], lambda e: None, lambda: "t2") == []


def test_record_stage_versions_records_and_tells_old_and_new_block_shards() -> None:
    c = ctx(2)
    r = RecordStage(c, "person/r0")

    def run(*chs: RecordChange) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for k, m in r.apply([RecordsIn("m", ("t",), chs)]):
            out.setdefault(k, []).append(m)
        return out

    first = run(change("crm:p:1", ANNA))
    (rep,) = first["person/c"]
    assert [(e.seq, e.kind) for e in rep.records] == [(1, "upsert")]
    shards = {k for k in first if "/b" in k}
    assert shards
    # Only a value the matching does not use changed: no block shard hears of it.
    again = run(change("crm:p:1", {**ANNA, "note": "vip"}))
    assert [(e.seq, e.kind) for e in again["person/c"][0].records] == [(2, "same")]
    assert not [k for k in again if "/b" in k]
    # Deleted: every shard that held a key of it is told.
    gone = run(change("crm:p:1", None))
    assert {k for k in gone if "/b" in k} == shards
    assert [(e.seq, e.kind) for e in gone["person/c"][0].records] == [(3, "delete")]
    assert run(change("crm:p:9", None))["person/c"][0].records == ()  # unknown: nothing


def test_value_stage_releases_a_version_only_once_clustering_assigned_that_version() -> None:
    v = ValueStage(ctx(), "person/v0")
    row = encode_row(("anna", "berlin", None, None))
    assert v.apply([(Assignment("a", 2, "g1"),)]) == []  # values of version 2 not here yet
    assert v.apply([(ValueEntry("a", 1, "crm", 5, row),)]) == []  # older values: wait
    (out,) = v.apply([(ValueEntry("a", 2, "crm", 6, row),)])
    assert out[0] == stage_key("person", "g", shard_of("g1", 2))
    assert out[1] == (MemberValues("a", 2, "g1", "crm", 6, row),)
    assert v.apply([(ValueEntry("a", 3, "crm", 7, row),)]) == []  # newer values, old decision
    assert v.apply([(Assignment("a", 4, None),), (ValueEntry("a", 4, "crm", 8, None),)]) == []
    assert "a" not in v.vals


# -- blocks and pairs -------------------------------------------------------------------------------


def test_block_stage_claims_pairs_and_withdraws_them_when_a_block_grows_past_the_cap() -> None:
    c = ctx(1, blocking={"max_block_size": 2, "keys": [{"name": "dob", "features": ["dob"]}]})
    b = BlockStage(c, "person/b0")
    f = c.extract(ANNA)
    (key,) = c.keyer(f)

    def entry(rid: str, seq: int = 1) -> BlocksIn:
        return BlocksIn(f"m{rid}{seq}", ("t",), (BlockEntry(rid, seq, encode_features(f), (key,)),))

    claims = [m for _, m in b.apply([entry("a"), entry("b")]) if isinstance(m, PairsIn)]
    assert [cl for m in claims for cl in m.claims] == [("a", "b", 1, 1, True)]
    assert set(claims[0].features) == {"a", "b"}
    out = [m for _, m in b.apply([entry("c")]) if isinstance(m, PairsIn)]
    # (a, b) loses its only support; c's pairs were never supported, so nothing is said of them.
    assert sorted(cl for m in out for cl in m.claims) == [("a", "b", 1, 1, False)]
    assert b.oversized == 1
    gone = BlocksIn("mc2", ("t",), (BlockEntry("c", 2, None, ()),))
    back = [m for _, m in b.apply([gone]) if isinstance(m, PairsIn)]
    assert sorted(cl for m in back for cl in m.claims) == [("a", "b", 1, 1, True)]
    assert b.oversized == 0 and "c" not in b.members


def test_pair_stage_scores_a_pair_once_whatever_the_number_of_supporting_shards() -> None:
    c = ctx(1)
    p = PairStage(c, "person/p0")
    fa, fb = c.extract(ANNA), c.extract(ANNA2)
    feats = {"a": (1, encode_features(fa)), "b": (1, encode_features(fb))}
    (rep,) = p.apply([PairsIn("m1", ("t",), 0, (("a", "b", 1, 1, True),), feats)])
    ((a, b, w, lv),) = rep[1].edges  # type: ignore[attr-defined]
    assert (a, b) == ("a", "b") and w is not None and w >= c.floor
    assert len(lv) >= c.n_comparisons
    (rep,) = p.apply([PairsIn("m2", ("t",), 1, (("a", "b", 1, 1, True),), feats)])
    assert rep[1].edges == () and p.scored == 1  # type: ignore[attr-defined]
    (rep,) = p.apply([PairsIn("m3", ("t",), 0, (("a", "b", 1, 1, False),), {})])
    assert rep[1].edges == ()  # shard 1 still supports it
    (rep,) = p.apply([PairsIn("m4", ("t",), 1, (("a", "b", 1, 1, False),), {})])
    assert rep[1].edges == (("a", "b", None, b""),) and not p.pairs  # type: ignore[attr-defined]


def test_pair_breakdown_matches_the_scorers_explanation() -> None:
    """Links rebuilt from stored levels + tf adjustments equal ``explain`` (the customer config has
    term-frequency levels)."""
    base = StageContext.from_config_dir(Path("config"), "customer", 1)
    people = [make_person(i, 3, org_count=10) for i in range(1, 4)]
    names = {base.extract(customer(p, "crm"))[base.extract.index["name"]] for p in people}
    cities = {base.extract(customer(p, "crm"))[base.extract.index["city"]] for p in people}
    tables = {
        "name": TermFrequencyTable(total=1000, counts={n: 7 for n in names if n}),
        "city": TermFrequencyTable(total=1000, counts={n: 90 for n in cities if n}),
    }
    matching = base.matching.model_copy(update={"term_frequencies": TermFrequencies(tables=tables)})
    c = StageContext(matching, base.survivorship, 1)
    seen_tf = False
    for p in people:
        fa, fb = c.extract(customer(p, "crm")), c.extract(customer(p, "shop"))
        w, details = c.scorer.explain(fa, fb)
        lv, ws = c.scorer.score_features([fa], [fb])
        got = c.scorer.link_comparisons(lv[0].tobytes(), c.scorer.tf_adjustments(fa, lv[0].tolist()))
        assert got == tuple((d.comparison, d.level, d.weight + d.tf_adjustment) for d in details)
        assert float(ws[0]) == w
        seen_tf = seen_tf or any(d.tf_adjustment for d in details)
    assert seen_tf


# -- cluster and golden ------------------------------------------------------------------------------


def test_cluster_waits_for_the_whole_token_before_it_reclusters() -> None:
    c = ClusterStage(ctx(1), "person/c")
    cause = Cause("a", 1, 1)
    root = Report("person/split", sent=(("x", ("t",)),), root="t")
    recs = Report(
        "person/r0",
        received=(("x", ("t",)),),
        sent=(("y", ("t",)),),
        records=(RecordEntry("a", 1, "upsert", cause), RecordEntry("b", 1, "upsert", cause)),
    )
    assert c.apply([root, recs]) == []  # the pair stage has not reported yet
    pairs = Report("person/p0", received=(("y", ("t",)),), edges=(("a", "b", 20.0, b"\x01"),))
    out = c.apply([pairs])
    assert c.partition() == frozenset({frozenset({"a", "b"})})
    (g,) = c.golden_members
    updates = [u for _, m in out if m and isinstance(m[0], GoldenUpdate) for u in m]
    assert [(u.golden_id, u.members, u.relinked, u.best) for u in updates] == [
        (g, (("a", 1), ("b", 1)), True, (20.0, 20.0))
    ]
    assigned = [a for _, m in out if m and isinstance(m[0], Assignment) for a in m]
    assert sorted((a.record_id, a.seq, a.golden_id) for a in assigned) == [("a", 1, g), ("b", 1, g)]
    assert c.idle()


def test_golden_stage_waits_for_member_values_and_versions_only_on_change() -> None:
    gs = GoldenStage(ctx(1), "person/g0")
    upd = GoldenUpdate("g1", (("a", 1), ("b", 1)), moved_in=("a", "b"), relinked=True, best=(None, None))
    assert gs.step([(upd,)], now_us=5) is None
    values = ("Anna Weber", "berlin", "1990-01-02", "anna@x.org")
    row = encode_row(values)
    assert gs.step([(MemberValues("a", 1, "g1", "crm", 1, row),)], now_us=6) is None
    batch = gs.step([(MemberValues("b", 1, "g1", "erp", 2, row),)], now_us=7)
    assert batch is not None
    (ch,) = batch.changes
    assert (ch.golden_id, ch.version, ch.members) == ("g1", 1, ("a", "b"))
    assert gs.row("g1") == values
    assert sorted(x.record_id for x in batch.crosswalk) == ["a", "b"]
    # The same members at a newer version with the same values: no new golden version.
    again = GoldenUpdate("g1", (("a", 2), ("b", 1)))
    assert gs.step([(MemberValues("a", 2, "g1", "crm", 3, row),), (again,)], now_us=8) is None


@pytest.mark.parametrize("shards", [1, 4])
def test_context_refuses_mismatched_configs_and_bad_shards(shards: int) -> None:
    assert ctx(shards).shards == shards
    with pytest.raises(ValueError):
        StageContext(person_config(), SURVIVORSHIP, 0, fields=FIELDS)
