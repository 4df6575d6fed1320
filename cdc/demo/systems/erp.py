"""erp: an SAP-style ERP (database ``erp``, schema ``erp``).

Debtors are organisations and some private customers ("FAMILY, GIVEN" in one upper-case-ish field),
with contact persons under a composite key; vendors, materials, sales orders with items. Legacy
conventions: ASCII only, '' instead of NULL, 'A'/'I', alpha-2 countries, '0049-30-1234567' phones,
'MM/DD/YYYY' text dates, timestamps without zone, numeric money with a currency code.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from cdc.demo.assign import Plan
from cdc.demo.countries import COUNTRIES
from cdc.demo.formats import erp_status, mdy, money, naive_local
from cdc.demo.names import fold_ascii
from cdc.demo.noise import NoiseProfile
from cdc.demo.render import big_text, org_name, pick_email, pick_phone, render_name
from cdc.demo.systems.base import Row, SeedData, Table
from cdc.demo.world import ANCHOR, HISTORY_START, Organisation, Person, World, between

SYSTEM = "erp"
DEBTORS = Table(
    "erp",
    "debtors",
    (
        "debtor_no", "name1", "name2", "search_term", "street", "postal_code", "city", "country",
        "telephone", "email", "vat_reg_no", "payment_terms", "credit_limit", "currency", "status",
        "created_on", "changed_at", "long_text",
    ),
    ("debtor_no",),
)  # fmt: skip
DEBTOR_CONTACTS = Table(
    "erp",
    "debtor_contacts",
    ("debtor_no", "contact_no", "first_name", "last_name", "function", "telephone", "email"),
    ("debtor_no", "contact_no"),
)
VENDORS = Table(
    "erp",
    "vendors",
    (
        "vendor_no", "name1", "name2", "street", "postal_code", "city", "country", "telephone", "email",
        "vat_reg_no", "iban", "status", "created_on",
    ),
    ("vendor_no",),
)  # fmt: skip
MATERIALS = Table(
    "erp",
    "materials",
    (
        "material_no",
        "description",
        "material_group",
        "base_unit",
        "net_price",
        "currency",
        "vendor_no",
        "status",
    ),
    ("material_no",),
)
SALES_ORDERS = Table(
    "erp",
    "sales_orders",
    (
        "order_no", "debtor_no", "doc_date", "requested_delivery", "customer_ref", "net_value", "currency",
        "delivery_status", "created_by", "changed_at",
    ),
    ("order_no",),
    identity="order_no",
)  # fmt: skip
SALES_ORDER_ITEMS = Table(
    "erp",
    "sales_order_items",
    ("order_no", "item_no", "material_no", "quantity", "unit", "net_price", "net_value"),
    ("order_no", "item_no"),
)
TABLES = (VENDORS, MATERIALS, DEBTORS, DEBTOR_CONTACTS, SALES_ORDERS, SALES_ORDER_ITEMS)
# Tables whose rows are people or organisations (the ground truth maps them).
TRUTH_TABLES = (DEBTORS, DEBTOR_CONTACTS, VENDORS)

PROFILE = NoiseProfile(
    nickname=0.03,
    typo=0.05,
    case=0.0,
    whitespace=0.02,
    swap_names=0.0,
    romanize=1.0,
    missing_email=0.4,
    missing_phone=0.15,
    stale_email=0.2,
)
_MATERIALS = (
    ("Hex bolt M8x40 zinc plated", "FASTENER", "PC"),
    ("Hex nut M8 DIN 934", "FASTENER", "PC"),
    ("Washer 8.4 mm A2", "FASTENER", "PC"),
    ("Ball bearing 6204-2RS", "BEARING", "PC"),
    ("Steel sheet 2 mm S235", "RAW", "KG"),
    ("Aluminium profile 40x40", "RAW", "M"),
    ("Hydraulic hose 1/2in", "HYDRAULIC", "M"),
    ("Pressure gauge 0-16 bar", "INSTRUMENT", "PC"),
    ("Servo motor 400 W", "DRIVE", "PC"),
    ("PLC controller S-200", "CONTROL", "PC"),
    ("Cable 3x1.5 mm2", "ELECTRIC", "M"),
    ("Lubricant ISO VG 68", "CONSUMABLE", "L"),
    ("Safety gloves size 9", "PPE", "PR"),
    ("Pallet EUR 1200x800", "PACKAGING", "PC"),
)
_USERS = ("SMUELLER", "JDOE", "BATCH", "KWEBER", "RFC_SHOP")
_TERMS = ("NT30", "NT14", "NT60", "PP10")


def debtor_number(n: int) -> str:
    """Debtor number ``n`` (``D100001`` for 1)."""
    return f"D{100000 + n}"


def _phone(phone_text: str | None) -> str:
    return phone_text or ""


def _naive(value: datetime) -> datetime:
    return naive_local(value)


def org_debtor(debtor_no: str, org: Organisation, rng: random.Random, created: datetime) -> Row:
    """A business debtor."""
    name = org_name(org.name, rng, noise=0.3, ascii_only=True)
    if rng.random() < 0.3:
        name = name.upper()
    return {
        "debtor_no": debtor_no,
        "name1": name,
        "name2": rng.choice(("", "", "", "Accounts Payable", "Attn. Purchasing")),
        "search_term": name.split(" ")[0].upper()[:10],
        "street": fold_ascii(org.address.street, german=True),
        "postal_code": org.address.postcode,
        "city": fold_ascii(org.address.city_latin, german=True) or org.address.city_latin,
        "country": org.country,
        "telephone": org.phone.dashed_idd() if rng.random() < 0.9 else "",
        "email": rng.choice((f"ap@{org.domain}", f"info@{org.domain}", "")),
        "vat_reg_no": org.vat_id,
        "payment_terms": rng.choice(_TERMS),
        "credit_limit": money(rng.randrange(5, 500) * 1000),
        "currency": COUNTRIES[org.country].currency,
        "status": erp_status(org.active),
        "created_on": mdy(created.date()),
        "changed_at": _naive(between(rng, created, ANCHOR + timedelta(seconds=1))),
        "long_text": big_text(rng, rng.randrange(2500, 6000)) if rng.random() < 0.3 else "",
    }


def person_debtor(debtor_no: str, person: Person, rng: random.Random, created: datetime) -> Row:
    """A private debtor: 'FAMILY, GIVEN' in name1, ASCII only."""
    rendered = render_name(person, PROFILE, rng, ascii_only=True)
    name1 = f"{rendered.name.family}, {rendered.name.given}".strip(", ")
    if rng.random() < 0.5:
        name1 = name1.upper()
    phone = pick_phone(person, PROFILE, rng)
    return {
        "debtor_no": debtor_no,
        "name1": name1,
        "name2": "",
        "search_term": fold_ascii(rendered.name.family).upper()[:10],
        "street": fold_ascii(person.address.street, german=True),
        "postal_code": person.address.postcode,
        "city": fold_ascii(person.address.city_latin, german=True) or person.address.city_latin,
        "country": person.country,
        "telephone": phone.dashed_idd() if phone else "",
        "email": pick_email(person, PROFILE, rng) or "",
        "vat_reg_no": "",
        "payment_terms": "PP10" if rng.random() < 0.5 else "NT14",
        "credit_limit": money(rng.choice((0, 500, 1000, 2500))),
        "currency": COUNTRIES[person.country].currency,
        "status": erp_status(person.active),
        "created_on": mdy(created.date()),
        "changed_at": _naive(created),
        "long_text": "",
    }


def debtor_contact(
    debtor_no: str, contact_no: int, person: Person, org: Organisation, rng: random.Random
) -> Row:
    """A contact person of a business debtor (composite key debtor_no + contact_no)."""
    rendered = render_name(person, PROFILE, rng, ascii_only=True)
    phone = pick_phone(person, PROFILE, rng)
    return {
        "debtor_no": debtor_no,
        "contact_no": contact_no,
        "first_name": rendered.name.given,
        "last_name": rendered.name.family or rendered.name.given,
        "function": fold_ascii(person.job_title)[:40],
        "telephone": phone.dashed_idd() if phone else "",
        "email": pick_email(person, PROFILE, rng, work_domain=org.domain) or "",
    }


def vendor(vendor_no: str, org: Organisation, rng: random.Random) -> Row:
    """A supplier."""
    return {
        "vendor_no": vendor_no,
        "name1": org_name(org.name, rng, noise=0.2, ascii_only=True),
        "name2": "",
        "street": fold_ascii(org.address.street, german=True),
        "postal_code": org.address.postcode,
        "city": fold_ascii(org.address.city_latin, german=True),
        "country": org.country,
        "telephone": org.phone.dashed_idd(),
        "email": f"sales@{org.domain}" if rng.random() < 0.7 else "",
        "vat_reg_no": org.vat_id,
        "iban": f"{org.country}{rng.randrange(10, 99)}{rng.randrange(10**15, 10**16)}" if org.vat_id else "",
        "status": erp_status(org.active),
        "created_on": mdy(org.founded if org.founded.year > 2000 else date(2001, 1, 2)),
    }


def order_with_items(
    order_no: int, debtor_no: str, currency: str, materials: Sequence[Row], rng: random.Random, when: datetime
) -> tuple[Row, list[Row]]:
    """A sales order and its items (SAP-style item numbers 10, 20, ...)."""
    items: list[Row] = []
    for k in range(rng.randrange(1, 6)):
        mat = rng.choice(materials)
        qty = (
            Decimal(rng.randrange(1, 500))
            if mat["base_unit"] == "PC"
            else Decimal(rng.randrange(100, 99999)) / 100
        )
        value = money(mat["net_price"] * qty)
        items.append(
            {
                "order_no": order_no,
                "item_no": (k + 1) * 10,
                "material_no": mat["material_no"],
                "quantity": qty.quantize(Decimal("0.001")),
                "unit": mat["base_unit"],
                "net_price": mat["net_price"],
                "net_value": value,
            }
        )
    delivery = when + timedelta(days=rng.randrange(3, 40))
    order = {
        "order_no": order_no,
        "debtor_no": debtor_no,
        "doc_date": when.date(),
        "requested_delivery": mdy(delivery.date()) if rng.random() < 0.7 else "",
        "customer_ref": f"PO-{rng.randrange(10000, 99999)}" if rng.random() < 0.6 else "",
        "net_value": money(sum((i["net_value"] for i in items), Decimal(0))),
        "currency": currency,
        "delivery_status": rng.choice("ABCC"),
        "created_by": rng.choice(_USERS),
        "changed_at": _naive(when),
    }
    return order, items


def material_rows(vendors: Sequence[str], rng: random.Random) -> list[Row]:
    """The material master: every catalogue item, sourced from a vendor or not."""
    return [
        {
            "material_no": f"M-{i + 1:06d}",
            "description": desc,
            "material_group": group,
            "base_unit": unit,
            "net_price": money(Decimal(rng.randrange(5, 200_000)) / 100),
            "currency": "EUR",
            "vendor_no": rng.choice(vendors) if vendors and rng.random() < 0.7 else "",
            "status": "A" if rng.random() < 0.95 else "I",
        }
        for i, (desc, group, unit) in enumerate(_MATERIALS)
    ]


def seed_rows(world: World, plan: Plan) -> SeedData:
    """All ERP rows for the world."""
    rng = random.Random(f"goldstream-demo:{world.seed}:{SYSTEM}")
    data = SeedData()
    vendor_nos: list[str] = []
    for org in world.orgs:
        if org.is_vendor:
            vendor_nos.append(f"V{200000 + len(vendor_nos) + 1}")
            data.add(VENDORS, vendor(vendor_nos[-1], org, rng), org.org_id, system=SYSTEM)
    materials = material_rows(vendor_nos, rng)
    for m in materials:
        data.add(MATERIALS, m)
    debtors: list[tuple[str, str]] = []  # (debtor_no, currency)
    org_debtors: dict[str, str] = {}
    for i in plan.orgs[SYSTEM]:
        org = world.orgs[i]
        debtor_no = debtor_number(len(debtors) + 1)
        created = between(rng, HISTORY_START, ANCHOR)
        row = org_debtor(debtor_no, org, rng, created)
        data.add(DEBTORS, row, org.org_id, system=SYSTEM)
        debtors.append((debtor_no, row["currency"]))
        org_debtors[org.org_id] = debtor_no
    contact_counts: dict[str, int] = {}
    for index, _copy in plan.people[SYSTEM]:
        person = world.people[index]
        if person.org_id and person.org_id in org_debtors:
            debtor_no = org_debtors[person.org_id]
            contact_counts[debtor_no] = contact_counts.get(debtor_no, 0) + 1
            row = debtor_contact(debtor_no, contact_counts[debtor_no], person, world.org(person.org_id), rng)
            data.add(DEBTOR_CONTACTS, row, person.person_id, system=SYSTEM)
            continue
        debtor_no = debtor_number(len(debtors) + 1)
        row = person_debtor(debtor_no, person, rng, between(rng, person.first_seen, ANCHOR))
        data.add(DEBTORS, row, person.person_id, system=SYSTEM)
        debtors.append((debtor_no, row["currency"]))
    order_no = 4_500_000_000
    for debtor_no, currency in debtors:
        for _ in range(rng.choice((0, 1, 1, 2, 3, 4))):
            order_no += 1
            order, items = order_with_items(
                order_no,
                debtor_no,
                currency,
                materials,
                rng,
                between(rng, ANCHOR - timedelta(days=900), ANCHOR),
            )
            data.add(SALES_ORDERS, order)
            for item in items:
                data.add(SALES_ORDER_ITEMS, item)
    return data
