"""The gold writer on real Delta tables: current, SCD2 history, crosswalk, links, lineage."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from core.errors import TerminalError, TransientError
from core.golden import (
    Cause,
    CrosswalkEntry,
    FieldProvenance,
    GoldBatch,
    GoldenChange,
    LineageEvent,
    LinkRecord,
    content_hash,
)
from sinks.delta.gold import (
    GoldWriter,
    gold_paths,
    read_crosswalk,
    read_golden,
    read_history,
    read_lineage,
    read_links,
)
from sinks.delta.maintenance import MaintenancePolicy

T0_US = 1_714_564_800_000_000  # 2024-05-01 12:00 UTC
A, B, C = "crm:public.customers:1", "erp:erp.debtors:D-7", "shop:public.users:x:y"


def ts(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)


def change(
    gid: str,
    version: int,
    *,
    kind: str = "UPSERT",
    members: tuple[str, ...] = (A, B),
    at: int | None = None,
    merged_into: str | None = None,
    merged_from: tuple[str, ...] = (),
    entity: str = "customer",
    **values: Any,
) -> GoldenChange:
    vals = {"full_name": "Ada Lovelace", "email": "ada@example.com", **values}
    prov = {k: FieldProvenance("crm", A, T0_US, "source_priority") for k in vals}
    prov["email"] = FieldProvenance("erp", B, T0_US + 5, "most_recent", group=None, support=0.5)
    return GoldenChange(
        entity=entity,
        golden_id=gid,
        version=version,
        kind=kind,  # type: ignore[arg-type]
        values=vals,
        provenance=prov,
        changed=tuple(sorted(vals)),
        members=members,
        emitted_at_us=(at if at is not None else T0_US + version * 1_000_000),
        cause=Cause(A, 100 + version, T0_US, "crm.public.customers", 0, version),
        merged_into=merged_into,
        merged_from=merged_from,
        content_hash=content_hash(vals),
    )


def link(gid: str, a: str = A, b: str = B, weight: float = 12.5) -> LinkRecord:
    return LinkRecord("customer", gid, a, b, weight, 0.999, (("name", "exact", 9.0), ("email", "exact", 3.5)))


def xw(rid: str, gid: str | None, since: int, score: float | None = 0.99) -> CrosswalkEntry:
    return CrosswalkEntry("customer", rid, gid, score, since)


@pytest.fixture
def writer(tmp_path: Path) -> GoldWriter:
    return GoldWriter(tmp_path, "customer", maintenance=None)


def golden(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {r["golden_id"]: r for r in read_golden(tmp_path, "customer").iter_rows(named=True)}


def first_batch() -> GoldBatch:
    return GoldBatch(
        "customer",
        changes=(change("G1", 1),),
        crosswalk=(xw(A, "G1", T0_US), xw(B, "G1", T0_US)),
        links=(link("G1"),),
    )


def test_first_batch_creates_every_table_with_typed_values(tmp_path: Path, writer: GoldWriter) -> None:
    batch = GoldBatch(
        "customer",
        changes=(change("G1", 1, birth_date="1815-12-10", created_at="2024-05-01T12:00:00+00:00"),),
        crosswalk=(xw(A, "G1", T0_US), xw(B, "G1", T0_US)),
        links=(link("G1"),),
    )
    result = writer.apply(batch)
    assert (result.golden_written, result.history_inserted, result.crosswalk_written) == (1, 1, 2)
    assert result.links_written == 1 and set(result.commits) == {
        "golden_customer",
        "golden_customer_history",
        "crosswalk",
        "links",
    }
    row = golden(tmp_path)["G1"]
    assert row["version"] == 1 and row["golden_status"] == "active"
    assert row["birth_date"] == dt.date(1815, 12, 10)
    assert row["created_at"] == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    assert row["members"] == [A, B]
    assert row["golden_updated_at"] == ts(T0_US + 1_000_000)
    email = next(p for p in row["provenance"] if p["field"] == "email")
    assert (email["source"], email["record_id"], email["rule"], email["support"]) == (
        "erp",
        B,
        "most_recent",
        0.5,
    )
    schema = read_golden(tmp_path, "customer").schema
    assert schema["birth_date"] == pl.Date and schema["golden_updated_at"] == pl.Datetime("us", "UTC")
    for name in ("lineage",):
        assert (gold_paths(tmp_path, "customer").__dict__[name] / "_delta_log").is_dir()


def test_unknown_attributes_become_string_columns(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(GoldBatch("customer", changes=(change("G1", 1, loyalty_tier="gold", score_x=7),)))
    row = golden(tmp_path)["G1"]
    assert row["loyalty_tier"] == "gold" and row["score_x"] == "7"


def test_value_that_does_not_fit_its_type_is_terminal(writer: GoldWriter) -> None:
    with pytest.raises(TerminalError, match="birth_date"):
        writer.apply(GoldBatch("customer", changes=(change("G1", 1, birth_date="not a date"),)))


def test_batch_of_another_entity_is_refused(writer: GoldWriter) -> None:
    with pytest.raises(TerminalError, match="product"):
        writer.apply(GoldBatch("customer", changes=(change("P1", 1, entity="product"),)))


def test_newer_version_replaces_and_closes_history(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(first_batch())
    result = writer.apply(GoldBatch("customer", changes=(change("G1", 2, email="ada@new.example"),)))
    assert result.history_inserted == 1 and result.history_closed == 1
    assert golden(tmp_path)["G1"]["email"] == "ada@new.example"
    hist = read_history(tmp_path, "customer", "G1")
    assert hist["version"].to_list() == [1, 2]
    assert hist["valid_to"].to_list() == [ts(T0_US + 2_000_000), None]
    assert hist["valid_from"].to_list() == [ts(T0_US + 1_000_000), ts(T0_US + 2_000_000)]
    assert hist["email"].to_list() == ["ada@example.com", "ada@new.example"]


def test_several_versions_in_one_batch_chain_their_history(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(first_batch())
    writer.apply(GoldBatch("customer", changes=(change("G1", 3, email="c@x"), change("G1", 2, email="b@x"))))
    assert golden(tmp_path)["G1"]["email"] == "c@x"
    hist = read_history(tmp_path, "customer", "G1")
    assert hist["version"].to_list() == [1, 2, 3]
    assert hist["valid_to"].to_list() == [ts(T0_US + 2_000_000), ts(T0_US + 3_000_000), None]


def test_replaying_a_batch_changes_nothing(tmp_path: Path, writer: GoldWriter) -> None:
    batch = GoldBatch(
        "customer",
        changes=(change("G1", 1),),
        crosswalk=(xw(A, "G1", T0_US), xw(B, "G1", T0_US)),
        links=(link("G1"),),
        lineage=(LineageEvent("customer", "MERGED", "G1", ("G9",), T0_US),),
    )
    writer.apply(batch)
    paths = gold_paths(tmp_path, "customer")
    before = {
        name: pl.read_delta(str(p)).sort(pl.all().exclude(pl.List, pl.Struct))
        for name, p in vars(paths).items()
    }
    # a fresh writer, as after a restart
    result = GoldWriter(tmp_path, "customer", maintenance=None).apply(batch)
    assert (result.history_inserted, result.lineage_inserted) == (0, 0)
    for name, p in vars(paths).items():
        after = pl.read_delta(str(p)).sort(pl.all().exclude(pl.List, pl.Struct))
        assert after.equals(before[name]), name
    assert "golden_customer_history" not in result.commits and "lineage" not in result.commits


def test_older_version_after_newer_is_ignored(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(GoldBatch("customer", changes=(change("G1", 1),), links=(link("G1", weight=1.0),)))
    writer.apply(
        GoldBatch("customer", changes=(change("G1", 2, email="new@x"),), links=(link("G1", weight=2.0),))
    )
    result = writer.apply(GoldBatch("customer", changes=(change("G1", 1),), links=(link("G1", weight=1.0),)))
    assert result.golden_written == 0 and result.golden_ignored_stale == 1
    row = golden(tmp_path)["G1"]
    assert (row["version"], row["email"]) == (2, "new@x")
    assert read_links(tmp_path, "customer", "G1")["weight"].to_list() == [2.0]
    hist = read_history(tmp_path, "customer", "G1")
    assert hist["version"].to_list() == [1, 2] and hist["valid_to"].null_count() == 1


def test_a_missing_older_version_arriving_late_is_closed_by_the_next(
    tmp_path: Path, writer: GoldWriter
) -> None:
    writer.apply(GoldBatch("customer", changes=(change("G1", 1),)))
    writer.apply(GoldBatch("customer", changes=(change("G1", 3, email="c@x"),)))
    writer.apply(GoldBatch("customer", changes=(change("G1", 2, email="b@x"),)))
    hist = read_history(tmp_path, "customer", "G1")
    assert hist["version"].to_list() == [1, 2, 3]
    assert hist["valid_to"].to_list() == [ts(T0_US + 2_000_000), ts(T0_US + 3_000_000), None]
    assert golden(tmp_path)["G1"]["version"] == 3


def test_duplicate_keys_inside_a_batch_are_folded(tmp_path: Path, writer: GoldWriter) -> None:
    batch = GoldBatch(
        "customer",
        changes=(change("G1", 1), change("G1", 1)),
        crosswalk=(xw(A, "G1", T0_US, 0.5), xw(A, "G1", T0_US + 1, 0.7)),
        links=(link("G1", weight=1.0), link("G1", a=B, b=A, weight=3.0)),
        lineage=(LineageEvent("customer", "SPLIT", "G1", ("G2",), T0_US),) * 2,
    )
    writer.apply(batch)
    assert read_golden(tmp_path, "customer").height == 1
    assert read_history(tmp_path, "customer").height == 1
    assert read_crosswalk(tmp_path, "customer")["score"].to_list() == [0.7]
    assert read_links(tmp_path, "customer")["weight"].to_list() == [3.0]
    assert read_lineage(tmp_path, "customer").height == 1


def test_crosswalk_moves_and_deletes_without_regressing(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(first_batch())
    writer.apply(GoldBatch("customer", crosswalk=(xw(B, "G2", T0_US + 10),)))
    writer.apply(GoldBatch("customer", crosswalk=(xw(B, "G1", T0_US),)))  # replay of the old entry
    rows = {r["record_id"]: r for r in read_crosswalk(tmp_path, "customer").iter_rows(named=True)}
    assert rows[B]["golden_id"] == "G2" and rows[B]["since"] == ts(T0_US + 10)
    assert (rows[B]["source_system"], rows[B]["source_table"], rows[B]["source_key"]) == (
        "erp",
        "erp.debtors",
        "D-7",
    )
    writer.apply(GoldBatch("customer", crosswalk=(xw(A, None, T0_US + 20, None),)))
    row = read_crosswalk(tmp_path, "customer").filter(pl.col("record_id") == A).row(0, named=True)
    assert row["deleted"] is True and row["golden_id"] == "G1"  # keeps where it last belonged
    assert read_crosswalk(tmp_path, "customer", "G2")["record_id"].to_list() == [B]


def test_record_key_with_colons_is_split_at_the_first_two(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(GoldBatch("customer", crosswalk=(xw(C, "G1", T0_US),)))
    row = read_crosswalk(tmp_path, "customer").row(0, named=True)
    assert (row["source_system"], row["source_table"], row["source_key"]) == ("shop", "public.users", "x:y")


def test_links_of_a_cluster_are_replaced_and_dropped_on_retire(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(
        GoldBatch(
            "customer",
            changes=(change("G1", 1), change("G2", 1, members=(C, "crm:t:9"))),
            links=(link("G1"), link("G2", a=C, b="crm:t:9")),
        )
    )
    three = (A, B, C)
    writer.apply(
        GoldBatch("customer", changes=(change("G1", 2, members=three),), links=(link("G1", a=B, b=C),))
    )
    g1 = read_links(tmp_path, "customer", "G1")
    assert list(zip(g1["a"], g1["b"], strict=True)) == [(B, C)]
    assert read_links(tmp_path, "customer", "G2").height == 1  # another cluster's links stay
    result = writer.apply(
        GoldBatch(
            "customer",
            changes=(change("G2", 2, kind="RETIRED", members=(), merged_into="G1"),),
        )
    )
    assert result.links_deleted == 1 and read_links(tmp_path, "customer", "G2").height == 0
    comps = read_links(tmp_path, "customer", "G1")["comparisons"][0].to_list()
    assert comps[0] == {"comparison": "name", "level": "exact", "weight": 9.0}


def test_links_follow_relinked(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(GoldBatch("customer", changes=(change("G1", 1),), links=(link("G1"),), relinked=("G1",)))
    # a value change that does not touch the cluster's pairs: the stored links stay
    writer.apply(GoldBatch("customer", changes=(change("G1", 2, email="new@x"),)))
    assert read_links(tmp_path, "customer", "G1").height == 1
    # a split left G1 a single record: relinked without links means it has none now
    result = writer.apply(GoldBatch("customer", changes=(change("G1", 3, members=(A,)),), relinked=("G1",)))
    assert result.links_deleted == 1 and read_links(tmp_path, "customer", "G1").height == 0


def test_merge_retires_and_lineage_is_idempotent(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(
        GoldBatch("customer", changes=(change("G1", 1, members=(A,)), change("G2", 1, members=(B,))))
    )
    merged = GoldBatch(
        "customer",
        changes=(
            change("G1", 2, merged_from=("G2",)),
            change("G2", 2, kind="RETIRED", members=(), merged_into="G1"),
        ),
        lineage=(LineageEvent("customer", "MERGED", "G1", ("G2",), T0_US + 9),),
    )
    assert writer.apply(merged).lineage_inserted == 1
    assert writer.apply(merged).lineage_inserted == 0
    rows = golden(tmp_path)
    assert rows["G2"]["golden_status"] == "retired" and rows["G2"]["merged_into"] == "G1"
    assert rows["G1"]["merged_from"] == ["G2"]
    assert read_golden(tmp_path, "customer", include_retired=False)["golden_id"].to_list() == ["G1"]
    events = read_lineage(tmp_path, "customer", "G2")
    assert events["kind"].to_list() == ["MERGED"] and events["others"].to_list() == [["G2"]]


def test_entities_share_crosswalk_links_lineage_tables(tmp_path: Path) -> None:
    GoldWriter(tmp_path, "customer", maintenance=None).apply(first_batch())
    product = GoldBatch(
        "product",
        changes=(change("P1", 1, entity="product", members=("erp:erp.items:1",), price_minor=1999),),
        crosswalk=(CrosswalkEntry("product", "erp:erp.items:1", "P1", None, T0_US),),
    )
    GoldWriter(tmp_path, "product", maintenance=None).apply(product)
    assert read_crosswalk(tmp_path, "customer").height == 2
    assert read_crosswalk(tmp_path, "product")["golden_id"].to_list() == ["P1"]
    assert read_golden(tmp_path, "product")["price_minor"].to_list() == [1999]


def test_decimal_attribute_round_trips(tmp_path: Path) -> None:
    vals = {"quantity": "2.500", "line_no": 1}
    c = GoldenChange("order_line", "L1", 1, "UPSERT", vals, {}, ("quantity",), (A,), T0_US)
    GoldWriter(tmp_path, "order_line", maintenance=None).apply(GoldBatch("order_line", changes=(c,)))
    assert read_golden(tmp_path, "order_line")["quantity"].to_list() == [Decimal("2.500")]


def test_tables_are_readable_by_duckdb(tmp_path: Path, writer: GoldWriter) -> None:
    writer.apply(first_batch())
    arrow = DeltaTable(str(gold_paths(tmp_path, "customer").golden)).to_pyarrow_table()  # noqa: F841
    rows = duckdb.sql(
        "SELECT golden_id, p.field, p.source, p.rule"
        " FROM (SELECT golden_id, unnest(provenance) AS p FROM arrow)"
        " WHERE p.field = 'email'"
    ).fetchall()
    assert rows == [("G1", "email", "erp", "most_recent")]


def test_concurrent_commit_conflict_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    writer = GoldWriter(tmp_path, "customer", maintenance=None, sleep=sleeps.append)
    writer.apply(GoldBatch("customer", changes=(change("G0", 1),)))
    original = DeltaTable.merge
    failures = iter([True, True])

    def flaky(self: DeltaTable, *args: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise CommitFailedError("conflict")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "merge", flaky)
    result = writer.apply(first_batch())
    assert len(sleeps) == 2 and result.attempts >= 7
    assert golden(tmp_path)["G1"]["version"] == 1


def test_conflicts_that_never_end_are_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = GoldWriter(tmp_path, "customer", maintenance=None, max_attempts=3, sleep=lambda _: None)

    def always(self: DeltaTable, *args: Any, **kwargs: Any) -> Any:
        raise CommitFailedError("conflict")

    monkeypatch.setattr(DeltaTable, "merge", always)
    with pytest.raises(TransientError, match="3 attempts"):
        writer.apply(first_batch())


def test_reading_a_missing_table_says_so(tmp_path: Path) -> None:
    with pytest.raises(TerminalError, match="no gold table"):
        read_golden(tmp_path, "customer")


def test_batches_of_the_resolver_replayed_end_in_its_state(tmp_path: Path) -> None:
    """The real producer of GoldBatch (flows.resolve.GoldenBook with the repo's customer config):
    every batch applied once gives the book's clusters; replaying all of them changes nothing."""
    import random

    from core.golden import RecordChange
    from flows.resolve.golden import GoldenBook

    repo = Path(__file__).resolve().parents[4]
    book = GoldenBook.from_config_dir(repo / "config", "customer")
    rng = random.Random(11)
    people = [
        {
            "kind": "person",
            "status": "active",
            "full_name": f"{first} {last}",
            "email": f"{first}.{last}@example.org",
            "birth_date": f"19{rng.randrange(50, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(10)}",
            "city": rng.choice(["Berlin", "Lyon", "Porto"]),
            "postal_code": str(rng.randrange(10000, 99999)),
            "country": "DE",
            "marketing_opt_in": rng.random() < 0.5,
            "created_at": "2024-01-02T03:04:05+00:00",
        }
        for first, last in zip(
            ["anna", "piotr", "li", "maria", "tom", "olga", "jan", "eva"],
            ["weber", "nowak", "chen", "rossi", "berg", "lind", "meyer", "silva"],
            strict=True,
        )
    ]
    systems = [("crm", "public.customers"), ("erp", "erp.debtors"), ("shop", "public.users")]
    live: dict[str, dict[str, Any]] = {}
    batches = []
    for step in range(20):
        p = rng.randrange(len(people))
        system, table = systems[rng.randrange(3)]
        rid = f"{system}:{table}:{p}"
        values: dict[str, Any] | None = dict(people[p])
        if rid in live and rng.random() < 0.3:
            values = None  # a delete
        elif rng.random() < 0.3:
            values = {**people[p], "email": f"new{step}@example.org"}
        if values is None:
            live.pop(rid, None)
        else:
            live[rid] = values
        ts = T0_US + step
        change_ = RecordChange("customer", rid, system, values, ts, Cause(rid, step, ts, "t", 0, step))
        batches.append(book.apply([change_], now_us=ts + 1))
    # a bridge: two records that do not match each other, a third that matches both (MERGED), then
    # the third goes away again (SPLIT)
    zoe = {"kind": "person", "status": "active", "full_name": "Zoe Quist"}
    bridge = [
        ("crm:public.customers:z", {**zoe, "email": "zoe@quist.org"}),
        ("erp:erp.debtors:z", {**zoe, "birth_date": "1977-07-07", "postal_code": "12345"}),
        ("shop:public.users:z", {**zoe, "email": "zoe@quist.org", "birth_date": "1977-07-07"}),
        ("shop:public.users:z", None),
    ]
    for step, (rid, values) in enumerate(bridge, start=100):
        if values is None:
            live.pop(rid, None)
        else:
            live[rid] = values
        ts = T0_US + step
        change_ = RecordChange("customer", rid, rid.split(":")[0], values, ts, Cause(rid, step, ts))
        batches.append(book.apply([change_], now_us=ts + 1))
    writer = GoldWriter(tmp_path, "customer", maintenance=None)
    for batch in batches:
        writer.apply(batch)

    assert sorted(read_lineage(tmp_path, "customer")["kind"]) == ["MERGED", "SPLIT"]
    current = read_golden(tmp_path, "customer", include_retired=False)
    clusters = book.resolver.clusters()
    assert {g: tuple(m) for g, m in zip(current["golden_id"], current["members"], strict=True)} == clusters
    xwalk = read_crosswalk(tmp_path, "customer").filter(~pl.col("deleted"))
    assert dict(zip(xwalk["record_id"], xwalk["golden_id"], strict=True)) == {
        rid: book.resolver.golden_id(rid) for rid in live
    }
    history = read_history(tmp_path, "customer")
    for (gid,), rows in history.group_by("golden_id"):
        assert rows["version"].sort().to_list() == list(range(1, rows.height + 1)), gid
        assert rows["valid_to"].null_count() == 1, gid
    links = read_links(tmp_path, "customer")
    assert set(links["golden_id"]) <= set(clusters)

    paths = gold_paths(tmp_path, "customer")
    snapshot = {
        n: pl.read_delta(str(p)).sort(pl.all().exclude(pl.List, pl.Struct)) for n, p in vars(paths).items()
    }
    replay = GoldWriter(tmp_path, "customer", maintenance=None)
    for batch in batches:
        replay.apply(batch)
    for n, p in vars(paths).items():
        assert pl.read_delta(str(p)).sort(pl.all().exclude(pl.List, pl.Struct)).equals(snapshot[n]), n


def test_automatic_maintenance_compacts_small_files(tmp_path: Path) -> None:
    policy = MaintenancePolicy(every_commits=1000, max_files=6, compact_min_files=4)
    writer = GoldWriter(tmp_path, "customer", maintenance=policy)
    for i in range(8):
        event = LineageEvent("customer", "MERGED", f"G{i}", (f"H{i}",), T0_US + i)
        writer.apply(GoldBatch("customer", lineage=(event,)))
    lineage = DeltaTable(str(gold_paths(tmp_path, "customer").lineage))
    assert len(lineage.file_uris()) <= 6
    assert read_lineage(tmp_path, "customer").height == 8


def test_concurrent_writers_of_one_entity_lose_nothing(tmp_path: Path) -> None:
    """Workers own different golden ids but share the tables: real commit conflicts are retried."""
    from concurrent.futures import ThreadPoolExecutor

    GoldWriter(tmp_path, "customer", maintenance=None).apply(GoldBatch("customer"))

    def work(w: int) -> None:
        writer = GoldWriter(tmp_path, "customer", maintenance=None)
        for i in range(4):
            gid, rid = f"W{w}-{i}", f"crm:public.customers:{w}-{i}"
            batch = GoldBatch(
                "customer",
                changes=(change(gid, 1, members=(rid,)),),
                crosswalk=(xw(rid, gid, T0_US),),
                links=(link(gid, a=rid, b=rid + "x"),),
                lineage=(LineageEvent("customer", "MERGED", gid, ("old-" + gid,), T0_US),),
            )
            writer.apply(batch)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(work, range(3)))
    for read in (read_golden, read_history, read_crosswalk, read_links, read_lineage):
        frame = read(tmp_path, "customer")
        assert frame.height == 12, read.__name__
