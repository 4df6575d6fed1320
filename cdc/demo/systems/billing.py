"""billing: a Stripe/Zuora-style subscription billing system (database ``billing``, schema ``billing``).

One holder-name field, E.164 phones, alpha-3 countries, lower-case currencies, integer cents, epoch
seconds, a Postgres enum status and jsonb metadata. Account numbers are natural keys that get
renumbered (invoices and payments follow by ON UPDATE CASCADE).
"""

from __future__ import annotations

import random
import secrets
import string
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cdc.demo.assign import Plan
from cdc.demo.countries import COUNTRIES
from cdc.demo.formats import billing_status, epoch
from cdc.demo.noise import NoiseProfile
from cdc.demo.render import org_name, pick_email, pick_phone, render_name
from cdc.demo.systems.base import Row, SeedData, Table
from cdc.demo.world import ANCHOR, HISTORY_START, Organisation, Person, World, between

SYSTEM = "billing"
PLANS = Table(
    "billing",
    "plans",
    ("plan_code", "name", "unit_amount", "currency", "billing_interval", "active"),
    ("plan_code",),
)
ACCOUNTS = Table(
    "billing",
    "accounts",
    (
        "account_number", "holder_name", "company_name", "email", "phone", "address_line1", "address_line2",
        "city", "postal_code", "country", "tax_id", "currency", "status", "balance_cents", "metadata",
        "created", "updated",
    ),
    ("account_number",),
)  # fmt: skip
INVOICES = Table(
    "billing",
    "invoices",
    (
        "invoice_id", "account_number", "number", "status", "currency", "subtotal", "tax", "total",
        "amount_paid", "period_start", "period_end", "due_date", "created", "memo",
    ),
    ("invoice_id",),
)  # fmt: skip
INVOICE_LINES = Table(
    "billing",
    "invoice_lines",
    ("invoice_id", "line_no", "plan_code", "description", "quantity", "unit_amount", "amount"),
    ("invoice_id", "line_no"),
)
PAYMENTS = Table(
    "billing",
    "payments",
    ("payment_id", "invoice_id", "account_number", "amount", "currency", "method", "card_last4", "status",
     "paid_at", "raw_response"),
    ("payment_id",),
)  # fmt: skip
TABLES = (PLANS, ACCOUNTS, INVOICES, INVOICE_LINES, PAYMENTS)
# Tables whose rows are people or organisations (the ground truth maps them).
TRUTH_TABLES = (ACCOUNTS,)

PROFILE = NoiseProfile(
    nickname=0.05,
    typo=0.03,
    case=0.15,  # card-holder style upper case
    whitespace=0.02,
    swap_names=0.02,
    romanize=0.5,
    missing_email=0.02,
    missing_phone=0.4,
    stale_email=0.2,
)
_PLANS: tuple[Row, ...] = tuple(
    {"plan_code": code, "name": name, "unit_amount": amount, "currency": cur, "billing_interval": interval,
     "active": True}
    for code, name, amount, cur, interval in (
        ("starter-monthly", "Starter", 900, "eur", "month"),
        ("pro-monthly", "Pro", 2900, "eur", "month"),
        ("pro-yearly", "Pro (annual)", 29000, "eur", "year"),
        ("team-monthly", "Team", 9900, "eur", "month"),
        ("seat-addon", "Extra seat", 700, "eur", "month"),
        ("support-premium", "Premium support", 4900, "eur", "month"),
    )
)  # fmt: skip
_METHODS = ("card", "card", "card", "sepa_debit", "bank_transfer", "paypal")
_ID_CHARS = string.ascii_letters + string.digits


def opaque_id(prefix: str, rng: random.Random | None) -> str:
    """A Stripe-like id (``in_8fK2...``): from ``rng`` when seeding, else from the OS.

    Seeded ids keep seed data reproducible; the load generator uses OS randomness so that a rerun
    with the same seed never collides with ids it created before.
    """
    chars = rng.choices(_ID_CHARS, k=14) if rng else [secrets.choice(_ID_CHARS) for _ in range(14)]
    return prefix + "".join(chars)


def account_no(n: int) -> str:
    """Account number ``n`` (``ACC-100001`` for 1)."""
    return f"ACC-{100000 + n}"


def _metadata(rng: random.Random, source: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": source, "psp_customer": opaque_id("cus_", rng)}
    if rng.random() < 0.3:
        meta["crm_ref"] = f"{rng.getrandbits(32):08x}"
    if rng.random() < 0.2:
        meta["dunning"] = {"level": rng.randrange(1, 4), "paused": False}
    return meta


def person_account(number: str, person: Person, rng: random.Random, created: datetime) -> Row:
    """A private subscriber: the holder name in one field."""
    rendered = render_name(person, PROFILE, rng)
    phone = pick_phone(person, PROFILE, rng)
    country = COUNTRIES[person.country]
    return {
        "account_number": number,
        "holder_name": rendered.full(),
        "company_name": None,
        "email": pick_email(person, PROFILE, rng, tag="billing"),
        "phone": phone.e164() if phone else None,
        "address_line1": person.address.street,
        "address_line2": None,
        "city": person.address.city_latin if not rendered.native else person.address.city,
        "postal_code": person.address.postcode or None,
        "country": country.iso3,
        "tax_id": None,
        "currency": "usd" if person.country == "US" else "gbp" if person.country == "GB" else "eur",
        "status": billing_status(person.active, rng.random() < 0.05),
        "balance_cents": 0,
        "metadata": _metadata(rng, rng.choice(("shop", "self-serve"))),
        "created": epoch(created),
        "updated": epoch(created),
    }


def org_account(
    number: str, org: Organisation, holder: Person | None, rng: random.Random, created: datetime
) -> Row:
    """A company subscription; the holder is often the employee who signed up, not the company."""
    holder_name = render_name(holder, PROFILE, rng).full() if holder else org_name(org.name, rng, noise=0.2)
    return {
        "account_number": number,
        "holder_name": holder_name,
        "company_name": org_name(org.name, rng, noise=0.3),
        "email": f"billing@{org.domain}" if rng.random() < 0.7 else f"accounts@{org.domain}",
        "phone": org.phone.e164() if rng.random() < 0.7 else None,
        "address_line1": org.address.street,
        "address_line2": None,
        "city": org.address.city,
        "postal_code": org.address.postcode or None,
        "country": COUNTRIES[org.country].iso3,
        "tax_id": org.vat_id or None,
        "currency": COUNTRIES[org.country].currency.lower(),
        "status": billing_status(org.active),
        "balance_cents": 0,
        "metadata": _metadata(rng, "sales"),
        "created": epoch(created),
        "updated": epoch(created),
    }


def invoice_with_lines(
    invoice_id: str, number: str, account: str, currency: str, rng: random.Random, period_start: datetime
) -> tuple[Row, list[Row]]:
    """A monthly invoice with 1-3 plan lines."""
    lines: list[Row] = []
    for k, plan in enumerate(rng.sample(_PLANS, rng.randrange(1, 4))):
        qty = rng.choice((1, 1, 1, 2, 5))
        lines.append(
            {
                "invoice_id": invoice_id,
                "line_no": k + 1,
                "plan_code": plan["plan_code"],
                "description": f"{plan['name']} x {qty}",
                "quantity": qty,
                "unit_amount": plan["unit_amount"],
                "amount": qty * plan["unit_amount"],
            }
        )
    subtotal = sum(line["amount"] for line in lines)
    tax = subtotal * 19 // 100
    status = rng.choice(("paid", "paid", "paid", "open", "void", "uncollectible"))
    period_end = period_start + timedelta(days=30)
    return {
        "invoice_id": invoice_id,
        "account_number": account,
        "number": number,
        "status": status,
        "currency": currency,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "amount_paid": subtotal + tax if status == "paid" else 0,
        "period_start": epoch(period_start),
        "period_end": epoch(period_end),
        "due_date": epoch(period_end + timedelta(days=14)) if rng.random() < 0.9 else None,
        "created": epoch(period_end),
        "memo": rng.choice((None, None, None, "Thank you for your business.", "Reverse charge applies.")),
    }, lines


def payment(invoice: Row, rng: random.Random, paid_at: datetime, payment_id: uuid.UUID) -> Row:
    """The payment settling an invoice, with the PSP's raw response kept as jsonb."""
    method = rng.choice(_METHODS)
    return {
        "payment_id": payment_id,
        "invoice_id": invoice["invoice_id"],
        "account_number": invoice["account_number"],
        "amount": invoice["total"],
        "currency": invoice["currency"],
        "method": method,
        "card_last4": f"{rng.randrange(10000):04d}" if method == "card" else None,
        "status": "succeeded",
        "paid_at": paid_at,
        "raw_response": {"outcome": "authorized", "risk_score": rng.randrange(0, 60), "network": "visa"},
    }


def seed_rows(world: World, plan: Plan) -> SeedData:
    """All billing rows for the world."""
    rng = random.Random(f"goldstream-demo:{world.seed}:{SYSTEM}")
    data = SeedData()
    for p in _PLANS:
        data.add(PLANS, dict(p))
    accounts: list[Row] = []
    staff: dict[str, list[Person]] = {}
    for person in world.people:
        if person.org_id:
            staff.setdefault(person.org_id, []).append(person)
    for i in plan.orgs[SYSTEM]:
        org = world.orgs[i]
        holder = rng.choice(staff[org.org_id]) if org.org_id in staff and rng.random() < 0.6 else None
        row = org_account(
            account_no(len(accounts) + 1), org, holder, rng, between(rng, HISTORY_START, ANCHOR)
        )
        accounts.append(row)
        data.add(ACCOUNTS, row, org.org_id, system=SYSTEM)
    for index, _copy in plan.people[SYSTEM]:
        person = world.people[index]
        created = between(rng, person.first_seen, ANCHOR)
        row = person_account(account_no(len(accounts) + 1), person, rng, created)
        accounts.append(row)
        data.add(ACCOUNTS, row, person.person_id, system=SYSTEM)
    invoice_no = 0
    for account in accounts:
        start = datetime.fromtimestamp(account["created"], UTC)
        for month in range(rng.randrange(0, 9)):
            period = start + timedelta(days=30 * month)
            if period > ANCHOR:
                break
            invoice_no += 1
            inv, lines = invoice_with_lines(
                opaque_id("in_", rng),
                f"INV-{period.year}-{invoice_no:06d}",
                account["account_number"],
                account["currency"],
                rng,
                period,
            )
            data.add(INVOICES, inv)
            for line in lines:
                data.add(INVOICE_LINES, line)
            if inv["status"] == "paid":
                paid_at = datetime.fromtimestamp(inv["created"], UTC) + timedelta(hours=rng.randrange(1, 300))
                data.add(PAYMENTS, payment(inv, rng, paid_at, uuid.UUID(int=rng.getrandbits(128), version=4)))
    return data
