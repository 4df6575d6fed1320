"""The seeders' output, checked without a database: shape, keys, references, each system's formats."""

import re
from datetime import date, datetime
from decimal import Decimal
from functools import cache

import pytest

from cdc.demo.assign import plan
from cdc.demo.names import fold_ascii
from cdc.demo.noise import edit_distance
from cdc.demo.systems import SYSTEMS
from cdc.demo.systems.base import SeedData
from cdc.demo.world import World, build_world


@cache
def world() -> World:
    return build_world(200, 11)


@cache
def rows(system: str) -> SeedData:
    w = world()
    return SYSTEMS[system].seed_rows(w, plan(w))


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_rows_have_every_column_and_unique_keys(system: str) -> None:
    data = rows(system)
    for table in SYSTEMS[system].tables:
        table_rows = data.rows.get(table.name, [])
        assert table_rows, table.qualified
        keys = [table.key_of(r) for r in table_rows]
        assert len(keys) == len(set(keys)), table.qualified
        for r in table_rows:
            assert set(r) == set(table.columns), table.qualified


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_seed_rows_are_deterministic(system: str) -> None:
    w = build_world(200, 11)
    again = SYSTEMS[system].seed_rows(w, plan(w))
    assert again.rows == rows(system).rows
    assert again.truth == rows(system).truth


@pytest.mark.parametrize(
    ("system", "child", "column", "parent", "key"),
    [
        ("crm", "contacts", "account_id", "accounts", "account_id"),
        ("crm", "opportunities", "account_id", "accounts", "account_id"),
        ("erp", "debtor_contacts", "debtor_no", "debtors", "debtor_no"),
        ("erp", "sales_orders", "debtor_no", "debtors", "debtor_no"),
        ("erp", "sales_order_items", "order_no", "sales_orders", "order_no"),
        ("erp", "sales_order_items", "material_no", "materials", "material_no"),
        ("shop", "addresses", "customer_id", "customers", "customer_id"),
        ("shop", "orders", "customer_id", "customers", "customer_id"),
        ("shop", "order_lines", "order_id", "orders", "order_id"),
        ("shop", "order_lines", "sku", "products", "sku"),
        ("billing", "invoices", "account_number", "accounts", "account_number"),
        ("billing", "invoice_lines", "invoice_id", "invoices", "invoice_id"),
        ("billing", "payments", "invoice_id", "invoices", "invoice_id"),
        ("billing", "payments", "account_number", "accounts", "account_number"),
    ],
)
def test_foreign_keys_resolve(system: str, child: str, column: str, parent: str, key: str) -> None:
    data = rows(system)
    parents = {r[key] for r in data.rows[parent]}
    assert {r[column] for r in data.rows[child]} <= parents


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_truth_points_at_real_rows(system: str) -> None:
    data = rows(system)
    by_table = {t.name: {t.key_of(r) for r in data.rows.get(t.name, [])} for t in SYSTEMS[system].tables}
    for t in data.truth:
        assert t.system == system
        assert t.source_key in by_table[t.table]
        assert re.fullmatch(r"[PO]\d+", t.person_id)


def test_cross_system_truth_overlap() -> None:
    systems_of: dict[str, set[str]] = {}
    for system in SYSTEMS:
        for t in rows(system).truth:
            if t.person_id.startswith("P"):
                systems_of.setdefault(t.person_id, set()).add(system)
    multi = sum(len(s) >= 2 for s in systems_of.values()) / len(world().people)
    assert multi >= 0.5


MDY = re.compile(r"(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/\d{4}")


def test_crm_formats() -> None:
    data = rows("crm")
    country_names = {"Germany", "United Kingdom", "United States", "UK", "USA", "Deutschland"}
    assert {r["billing_country"] for r in data.rows["accounts"]} & country_names
    for r in data.rows["accounts"]:
        assert r["status"] in ("Active", "Inactive")
        assert r["account_type"] in ("Person", "Organization")
        assert isinstance(r["custom_fields"], dict)
        assert r["billing_country"] is None or len(r["billing_country"]) > 1
    for r in data.rows["contacts"]:
        assert r["birthdate"] is None or type(r["birthdate"]) is date
        assert r["email"] != ""  # the CRM uses NULL, not ''
    us_phones = [r["phone"] for r in data.rows["contacts"] if r["phone"] and r["phone"].startswith("(")]
    assert us_phones and all(re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", p) for p in us_phones)
    # Some descriptions/notes are big enough to be TOASTed.
    assert any(r["notes"] and len(r["notes"]) > 2500 for r in data.rows["contacts"])


def test_erp_formats() -> None:
    data = rows("erp")
    for r in data.rows["debtors"]:
        assert MDY.fullmatch(r["created_on"]), r["created_on"]
        assert r["status"] in ("A", "I")
        assert re.fullmatch(r"[A-Z]{2}", r["country"])
        assert r["telephone"] == "" or re.fullmatch(r"00\d{1,3}-\d+-\d+", r["telephone"]), r["telephone"]
        assert all(r[c] is not None for c in ("name2", "email", "vat_reg_no", "telephone"))  # '' not NULL
        assert r["name1"].isascii()
        assert isinstance(r["credit_limit"], Decimal) and len(r["currency"]) == 3
        assert type(r["changed_at"]) is datetime and r["changed_at"].tzinfo is None
    persons = [r for r in data.rows["debtors"] if ", " in r["name1"] and r["vat_reg_no"] == ""]
    assert persons  # "FAMILY, GIVEN" in one field
    assert any(r["email"] == "" for r in data.rows["debtors"])


def test_shop_formats() -> None:
    data = rows("shop")
    for r in data.rows["customers"]:
        assert r["date_of_birth"] == "" or MDY.fullmatch(r["date_of_birth"])
        assert r["phone"] == "" or r["phone"].isdigit()
        assert r["is_active"] in (0, 1)
        assert r["created_at"].tzinfo is None
    for r in data.rows["orders"]:
        assert all(isinstance(r[c], int) for c in ("subtotal_cents", "tax_cents", "total_cents"))
        assert r["total_cents"] == r["subtotal_cents"] + r["shipping_cents"] + r["tax_cents"]
    assert any(r["date_of_birth"] == "" for r in data.rows["customers"])


def test_billing_formats() -> None:
    data = rows("billing")
    for r in data.rows["accounts"]:
        assert isinstance(r["created"], int) and r["created"] > 1_400_000_000
        assert r["phone"] is None or re.fullmatch(r"\+\d{7,15}", r["phone"])
        assert r["country"] is None or re.fullmatch(r"[A-Z]{3}", r["country"])
        assert r["currency"] == r["currency"].lower()
        assert r["status"] in ("active", "past_due", "suspended", "closed")
        assert re.fullmatch(r"ACC-\d+", r["account_number"])
    for r in data.rows["invoices"]:
        assert r["total"] == r["subtotal"] + r["tax"]
        assert isinstance(r["period_start"], int)


def _norm(text: str) -> str:
    return fold_ascii(" ".join(text.split())).casefold()


def test_names_stay_recognisable_across_systems() -> None:
    """Every shop customer's last or first name is within one edit of the person's (after folding),
    or is a nickname: the noise makes matching hard, not impossible."""
    w = world()
    people = {p.person_id: p for p in w.people}
    customers = {str(r["customer_id"]): r for r in rows("shop").rows["customers"]}
    misses = 0
    for t in rows("shop").truth:
        person = people[t.person_id]
        row = customers[t.source_key]
        typed = {_norm(row["first_name"]), _norm(row["last_name"])}
        known = {_norm(n) for n in (person.given, person.family, person.given_latin, person.family_latin)}
        known |= {_norm(n) for n in person.family_variants + person.given_variants}
        if not any(edit_distance(a, b) <= 1 for a in typed for b in known):
            misses += 1
    assert misses == 0
