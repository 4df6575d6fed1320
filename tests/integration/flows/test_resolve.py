"""Entity resolution on the real stack: source changes -> silver -> golden records, crosswalk, lineage
and the ``golden.customer`` topic, with the ingest flow running as its own process.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from cdc.pg import admin_dsn
from core.golden import decode_change, record_id
from core.settings import Settings
from sinks.delta.gold import gold_paths, read_crosswalk, read_golden, read_lineage
from tests.integration.flows.test_ingest_crash import db_record_ids
from tests.integration.helpers import FlowProcess, isolated_config, wait_for

TOPIC = f"golden.customer.it{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def flow(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FlowProcess]]:
    tmp = tmp_path_factory.mktemp("resolve")
    config = isolated_config(tmp, stack)
    doc = yaml.safe_load(config.read_text())
    doc["propagation"] = {"topics": {"customer": TOPIC}}  # golden.customer stays the demo's
    config.write_text(yaml.safe_dump(doc))
    with FlowProcess(config, "ingest", "--no-dlq", log=tmp / "flow.log") as proc:
        yield tmp / "delta", proc


FIRST = ["Ingrid", "Astrid", "Sigrid", "Maja", "Elsa", "Linnea", "Ebba", "Saga", "Tove", "Freja"]
STEMS = ["Lund", "Berg", "Sand", "Holm", "Lind", "Ek", "Nord", "Dahl", "Wall", "Sjö"]
ENDS = ["qvist", "gren", "ström", "mark", "blad", "sten", "vall", "by", "fors", "näs"]
ERP_ASCII = str.maketrans({"ö": "oe", "ä": "ae", "å": "aa", "Ö": "OE", "Ä": "AE", "Å": "AA"})


def person(rnd: random.Random) -> tuple[str, str]:
    """A first name and a double-barrelled surname: unique enough that runs against the same
    databases (and the seeded people) stay different people."""
    last = "-".join(rnd.choice(STEMS) + rnd.choice(ENDS) for _ in range(2))
    return rnd.choice(FIRST), last


def crosswalk(delta_root: Path, rids: list[str]) -> dict[str, str | None] | None:
    """record id -> golden id once every record is in the crosswalk, else None."""
    if not (gold_paths(delta_root, "customer").crosswalk / "_delta_log").exists():
        return None
    cw = read_crosswalk(delta_root, "customer").filter(pl.col("record_id").is_in(rids))
    got = dict(zip(cw["record_id"].to_list(), cw["golden_id"].to_list(), strict=True))
    return got if len(got) == len(rids) else None


def members(delta_root: Path, golden_id: str | None) -> list[str] | None:
    """Sorted members of a golden record in the golden table (None while it is not there)."""
    if golden_id is None or not (gold_paths(delta_root, "customer").golden / "_delta_log").exists():
        return None
    rows = read_golden(delta_root, "customer", golden_id)
    return sorted(rows["members"][0].to_list()) if rows.height else None


def org_account(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
    row = conn.execute(
        "SELECT account_id::text FROM public.accounts WHERE account_type = 'Organization' LIMIT 1"
    ).fetchone()
    assert row is not None, "the seeded crm has organisation accounts"
    return str(row[0])


def topic_end(bootstrap: str, topic: str) -> list[TopicPartition]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        out = []
        for p in md.partitions:
            _lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out.append(TopicPartition(topic, p, hi))
        return out
    finally:
        c.close()


def read_from(bootstrap: str, start: list[TopicPartition], seconds: float) -> list[bytes]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    c.assign(start)
    out: list[bytes] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            m = c.poll(0.5)
            if m is not None and m.error() is None and m.value() is not None:
                out.append(m.value())
    finally:
        c.close()
    return out


def test_one_person_in_four_systems_is_one_golden_record_and_an_edit_splits_it_off(
    stack: Settings, flow: tuple[Path, FlowProcess]
) -> None:
    delta_root, proc = flow
    tag = uuid.uuid4().hex[:8]
    rnd = random.Random(tag)
    first, last = person(rnd)
    full = f"{first} {last}"
    email = f"{first}.{last}.{tag}@example.se".lower()
    local = f"{rnd.randrange(10_000_000, 99_999_999)}"
    born = dt.date(1950, 1, 1) + dt.timedelta(days=rnd.randrange(18_000))
    rids: dict[str, str] = {}
    with psycopg.connect(admin_dsn(stack, "crm"), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.contacts (account_id, first_name, last_name, email, phone, birthdate, "
            "mailing_street, mailing_city, mailing_postal_code, mailing_country) VALUES (%s::uuid, "
            "%s, %s, %s, %s, %s, 'Storgatan 1', 'Stockholm', '111 22', 'Sweden') "
            "RETURNING contact_id::text",
            (org_account(conn), first, last, email, f"08-{local}", born.isoformat()),
        ).fetchone()
        assert row is not None
        rids["crm"] = record_id("crm", "public.contacts", row[0])
    with psycopg.connect(admin_dsn(stack, "erp"), autocommit=True) as conn:
        key = f"IT{tag}"
        # no VAT number: the ERP's rule reads 'FAMILY, GIVEN' with one as an organisation
        conn.execute(
            "INSERT INTO erp.debtors (debtor_no, name1, country, telephone, currency, created_on, "
            "changed_at) VALUES (%s, %s, 'SE', %s, 'SEK', '01/31/2024', '2024-02-01 10:00:00')",
            (key, f"{last}, {first}".upper().translate(ERP_ASCII), f"0046-8-{local}"),
        )
        rids["erp"] = record_id("erp", "erp.debtors", key)
    with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.customers (email, first_name, last_name, date_of_birth) "
            "VALUES (%s, %s, %s, %s) RETURNING customer_id::text",
            (email.upper(), first.lower(), last.lower(), born.strftime("%m/%d/%Y")),
        ).fetchone()
        assert row is not None
        rids["shop"] = record_id("shop", "public.customers", row[0])
    with psycopg.connect(admin_dsn(stack, "billing"), autocommit=True) as conn:
        key = f"IT-{tag}"
        conn.execute(
            "INSERT INTO billing.accounts (account_number, holder_name, email, phone, address_line1, city, "
            "postal_code, country, tax_id, currency, created, updated) VALUES (%s, %s, %s, "
            "%s, 'Storgatan 1', 'Stockholm', '111 22', 'SWE', 'se800101-1234', 'sek', 1700000000, "
            "1700000000)",
            (key, full, email, f"+468{local}"),
        )
        rids["billing"] = record_id("billing", "billing.accounts", key)

    seen: list[dict[str, str | None]] = []

    def joined() -> dict[str, str | None] | None:
        got = crosswalk(delta_root, list(rids.values()))
        if got is None:
            return None
        seen[:] = [got]
        ids = set(got.values())
        # the golden table is committed after the crosswalk: wait for both
        return got if len(ids) == 1 and members(delta_root, ids.pop()) == sorted(rids.values()) else None

    try:
        gid = next(iter(wait_for("one golden id for the four records", joined, timeout=180).values()))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; crosswalk: {seen}") from None
    assert gid is not None
    assert proc.alive(), proc.tail()
    golden = read_golden(delta_root, "customer", gid).row(0, named=True)
    assert golden["golden_status"] == "active"
    assert sorted(golden["members"]) == sorted(rids.values())
    prov = {p["field"]: p for p in golden["provenance"]}
    # config/survivorship/customer.yaml: full_name by source priority crm > erp > billing > shop
    assert golden["full_name"] == full
    assert (prov["full_name"]["source"], prov["full_name"]["rule"]) == ("crm", "source_priority")
    # tax id: erp first, but only billing has one; currency: billing first; phone: most frequent
    assert golden["tax_id"] == "SE800101-1234" and prov["tax_id"]["source"] == "billing"
    assert golden["currency"] == "SEK" and prov["currency"]["source"] == "billing"
    assert golden["phone"] == f"+468{local}" and prov["phone"]["rule"] == "most_frequent"
    assert golden["email"] == email and golden["birth_date"] == born
    # the address group comes from one record
    assert len({prov[f]["record_id"] for f in ("street", "postal_code", "city", "country")}) == 1
    assert (golden["street"], golden["city"], golden["country"]) == ("Storgatan 1", "Stockholm", "SE")

    # the shop customer is edited into someone else: it splits off, the larger part keeps the id
    edited_at = dt.datetime.now(dt.UTC)
    with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
        conn.execute(
            "UPDATE public.customers SET first_name = 'Olaf', last_name = 'Hansen', email = %s, "
            "date_of_birth = '11/02/1955' WHERE customer_id = %s::bigint",
            (f"olaf.{tag}@example.no", rids["shop"].rsplit(":", 1)[1]),
        )

    def split() -> dict[str, str | None] | None:
        got = crosswalk(delta_root, list(rids.values()))
        if got is None or got[rids["shop"]] == gid:
            return None
        return got if members(delta_root, gid) == sorted(rids[s] for s in ("crm", "erp", "billing")) else None

    after = wait_for("the edited record in its own golden record", split, timeout=120)
    assert {after[rids[s]] for s in ("crm", "erp", "billing")} == {gid}
    lineage = read_lineage(delta_root, "customer", gid)
    # only the SPLIT caused by this edit (the id may have a history from before the test)
    splits = lineage.filter(
        (pl.col("kind") == "SPLIT") & (pl.col("golden_id") == gid) & (pl.col("at") >= edited_at)
    )
    assert [o.to_list() for o in splits["others"]] == [[after[rids["shop"]]]]
    assert sorted(read_golden(delta_root, "customer", gid)["members"][0].to_list()) == sorted(
        rids[s] for s in ("crm", "erp", "billing")
    )


def test_a_bridging_record_merges_two_golden_records(stack: Settings, flow: tuple[Path, FlowProcess]) -> None:
    delta_root, proc = flow
    tag = uuid.uuid4().hex[:8]
    rnd = random.Random(tag)
    first, maiden = person(rnd)
    _, married = person(rnd)
    email = f"{first}.{maiden}.{tag}@example.de".lower()
    street = f"{rnd.choice(['Haupt', 'Linden', 'Garten', 'Schul'])}strasse {rnd.randrange(1, 300)}"
    postcode = f"{rnd.randrange(10_000, 99_999)}"
    phone = f"030 {rnd.randrange(1_000_000, 9_999_999)}"
    born = dt.date(1950, 1, 1) + dt.timedelta(days=rnd.randrange(18_000))
    with psycopg.connect(admin_dsn(stack, "erp"), autocommit=True) as conn:
        key = f"IM{tag}"
        conn.execute(
            "INSERT INTO erp.debtors (debtor_no, name1, street, postal_code, city, country, telephone, "
            "currency, created_on, changed_at) VALUES (%s, %s, %s, %s, 'Berlin', 'DE', %s, 'EUR', "
            "'01/31/2024', '2024-02-01 10:00:00')",
            (key, f"{married}, {first}".upper().translate(ERP_ASCII), street, postcode, phone),
        )
        a = record_id("erp", "erp.debtors", key)
    with psycopg.connect(admin_dsn(stack, "shop"), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.customers (email, first_name, last_name, date_of_birth) "
            "VALUES (%s, %s, %s, %s) RETURNING customer_id::text",
            (email, first, maiden, born.strftime("%m/%d/%Y")),
        ).fetchone()
        assert row is not None
        b = record_id("shop", "public.customers", row[0])
    apart = wait_for("both records resolved", lambda: crosswalk(delta_root, [a, b]), timeout=180)
    assert apart[a] != apart[b], "nothing links a married name with a phone to a maiden name with an email"
    older, newer = sorted([apart[a], apart[b]])  # type: ignore[type-var]

    start = topic_end(stack.kafka.bootstrap_servers, TOPIC)
    # the CRM knows both her phone and her email: the bridge
    with psycopg.connect(admin_dsn(stack, "crm"), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.contacts (account_id, first_name, last_name, email, phone, birthdate, "
            "mailing_country) VALUES (%s::uuid, %s, %s, %s, %s, %s, 'Germany') RETURNING contact_id::text",
            (org_account(conn), first, married, email, phone, born.isoformat()),
        ).fetchone()
        assert row is not None
        c = record_id("crm", "public.contacts", row[0])

    def merged() -> dict[str, str | None] | None:
        got = crosswalk(delta_root, [a, b, c])
        if got is None or len(set(got.values())) != 1:
            return None
        return got if members(delta_root, next(iter(got.values()))) == sorted([a, b, c]) else None

    together = wait_for("the three records in one golden record", merged, timeout=180)
    assert set(together.values()) == {older}, "the older golden id survives a merge"
    assert proc.alive(), proc.tail()
    lineage = read_lineage(delta_root, "customer", older)
    lineage = lineage.filter((pl.col("kind") == "MERGED") & (pl.col("golden_id") == older))
    assert [o.to_list() for o in lineage["others"]] == [[newer]]
    retired = read_golden(delta_root, "customer", newer).row(0, named=True)
    assert (retired["golden_status"], retired["merged_into"]) == ("retired", older)

    changes = [decode_change(v) for v in read_from(stack.kafka.bootstrap_servers, start, 10)]
    survivor = [ch for ch in changes if ch.golden_id == older and newer in ch.merged_from]
    gone = [ch for ch in changes if ch.golden_id == newer and ch.kind == "RETIRED"]
    assert len(survivor) == 1 and sorted(survivor[0].members) == sorted([a, b, c])
    assert len(gone) == 1 and gone[0].merged_into == older
    assert survivor[0].version > 1 and survivor[0].changed


def test_seeded_demo_customers_resolve_against_the_truth(
    stack: Settings, flow: tuple[Path, FlowProcess]
) -> None:
    """The seeded people across the four systems, scored against the demo's ground truth.

    Precision must be near perfect (a wrong merge corrupts a golden record and is pushed to the CRM
    and ERP); recall is bounded by records that share nothing but a name (left apart on purpose).
    Current numbers for the demo set: ``bench/results/er.json`` (``demo_handset``).
    """
    delta_root, proc = flow
    truth = pl.read_parquet(stack.state_dir / "demo" / "truth.parquet").select(
        pl.concat_str(
            ["system", pl.lit(":"), "schema", pl.lit("."), "table", pl.lit(":"), "source_key"]
        ).alias("record_id"),
        "person_id",
    )

    def resolved() -> pl.DataFrame | None:
        if not (gold_paths(delta_root, "customer").crosswalk / "_delta_log").exists():
            return None
        cw = read_crosswalk(delta_root, "customer").filter(~pl.col("deleted"))
        live = truth.filter(pl.col("record_id").is_in(list(db_record_ids(stack))))
        got = live.join(cw.select("record_id", "golden_id"), on="record_id", how="left")
        return got if got["golden_id"].null_count() == 0 else None

    got = wait_for("every seeded customer record resolved", resolved, timeout=300, every=3)
    assert proc.alive(), proc.tail()

    def pairs(col: str) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for ids in got.group_by(col).agg(pl.col("record_id").sort())["record_id"].to_list():
            out.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
        return out

    true_pairs, found = pairs("person_id"), pairs("golden_id")
    hit = len(true_pairs & found)
    precision, recall = hit / max(1, len(found)), hit / max(1, len(true_pairs))
    print(f"seeded demo: {got.height} records, precision {precision:.3f}, recall {recall:.3f}")
    assert len(true_pairs) > 50
    assert precision >= 0.98
    assert recall >= 0.75
