"""crm: a Salesforce-style CRM (database ``crm``, schema ``public``).

Organisations are accounts with contacts; private customers are "person accounts" (one full-name
field) with one contact carrying first/last name. Native scripts are kept, dates are ISO, countries
are names, statuses 'Active'/'Inactive', missing values NULL.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from cdc.demo.assign import Plan
from cdc.demo.countries import COUNTRIES, COUNTRY_NAME_VARIANTS
from cdc.demo.formats import Phone, crm_status, money
from cdc.demo.noise import NoiseProfile
from cdc.demo.render import note_text, org_name, pick_birth_date, pick_email, pick_phone, render_name
from cdc.demo.systems.base import Row, SeedData, Table
from cdc.demo.world import ANCHOR, Organisation, Person, World, between

SYSTEM = "crm"
ACCOUNTS = Table(
    "public",
    "accounts",
    (
        "account_id", "account_type", "name", "industry", "website", "phone", "billing_street",
        "billing_city", "billing_postal_code", "billing_country", "status", "owner_email",
        "annual_revenue", "currency_iso_code", "custom_fields", "description", "created_at", "updated_at",
    ),
    ("account_id",),
)  # fmt: skip
CONTACTS = Table(
    "public",
    "contacts",
    (
        "contact_id", "account_id", "salutation", "first_name", "last_name", "title", "email", "phone",
        "mobile_phone", "birthdate", "mailing_street", "mailing_city", "mailing_postal_code",
        "mailing_country", "lead_source", "status", "has_opted_out_of_email", "notes", "created_at",
        "updated_at",
    ),
    ("contact_id",),
    identity="contact_id",
)  # fmt: skip
OPPORTUNITIES = Table(
    "public",
    "opportunities",
    (
        "opportunity_id", "account_id", "name", "stage", "amount", "currency_iso_code", "probability",
        "close_date", "created_at",
    ),
    ("opportunity_id",),
)  # fmt: skip
TABLES = (ACCOUNTS, CONTACTS, OPPORTUNITIES)
# Tables whose rows are people or organisations (the ground truth maps them).
TRUTH_TABLES = (ACCOUNTS, CONTACTS)

PROFILE = NoiseProfile(
    nickname=0.12,
    typo=0.04,
    case=0.02,
    whitespace=0.03,
    swap_names=0.01,
    romanize=0.3,
    missing_email=0.08,
    missing_phone=0.25,
    missing_birth_date=0.7,
    wrong_birth_date=0.02,
    stale_email=0.1,
)
_REPS = ("anna.keller@crm-demo.example", "j.okafor@crm-demo.example", "m.rossi@crm-demo.example")
_LEAD_SOURCES = ("Web", "Trade Show", "Referral", "Partner", "Cold Call", None)
STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost")
_SEGMENTS = ("Consumer", "SMB", "Mid-Market", "Enterprise")
_PRODUCTS = ("Platform licence", "Support renewal", "Onboarding", "Hardware refresh", "Consulting")


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _country(iso2: str, rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.2 and iso2 in COUNTRY_NAME_VARIANTS:
        return rng.choice(COUNTRY_NAME_VARIANTS[iso2])
    return COUNTRIES[iso2].name


def _phone_text(phone: Phone, rng: random.Random) -> str:
    # US users type national numbers; everyone else mostly the international form.
    if phone.country == "US" or rng.random() < 0.2:
        return phone.national()
    return phone.international()


def _custom_fields(rng: random.Random, segment: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "segment": segment,
        "tags": rng.sample(("vip", "newsletter", "beta", "churn-risk"), 2),
    }
    if rng.random() < 0.6:
        fields["nps"] = rng.randrange(0, 11)
    if rng.random() < 0.3:
        fields["preferred_language"] = rng.choice(("en", "de", "fr", "es", "ja"))
    return fields


def org_account(org: Organisation, rng: random.Random, created: datetime) -> Row:
    """The account row of an organisation."""
    return {
        "account_id": _uuid(rng),
        "account_type": "Organization",
        "name": org_name(org.name, rng, noise=0.25),
        "industry": org.industry,
        "website": f"https://www.{org.domain}" if rng.random() < 0.8 else org.domain,
        "phone": _phone_text(org.phone, rng),
        "billing_street": org.address.street,
        "billing_city": org.address.city,
        "billing_postal_code": org.address.postcode or None,
        "billing_country": _country(org.country, rng),
        "status": crm_status(org.active),
        "owner_email": rng.choice(_REPS),
        "annual_revenue": money(rng.randrange(50, 50_000) * 1000) if rng.random() < 0.7 else None,
        "currency_iso_code": COUNTRIES[org.country].currency,
        "custom_fields": _custom_fields(rng, rng.choice(_SEGMENTS[1:])),
        "description": note_text(rng),
        "created_at": created,
        "updated_at": between(rng, created, max(created, ANCHOR) + timedelta(seconds=1)),
    }


def person_account(person: Person, rng: random.Random, created: datetime) -> Row:
    """A "person account": a private customer, full name in one field."""
    rendered = render_name(person, PROFILE, rng)
    phone = pick_phone(person, PROFILE, rng)
    return {
        "account_id": _uuid(rng),
        "account_type": "Person",
        "name": rendered.full(),
        "industry": None,
        "website": None,
        "phone": _phone_text(phone, rng) if phone else None,
        "billing_street": person.address.street,
        "billing_city": person.address.city,
        "billing_postal_code": person.address.postcode or None,
        "billing_country": _country(person.country, rng),
        "status": crm_status(person.active),
        "owner_email": rng.choice(_REPS),
        "annual_revenue": None,
        "currency_iso_code": COUNTRIES[person.country].currency,
        "custom_fields": _custom_fields(rng, "Consumer"),
        "description": note_text(rng) if rng.random() < 0.5 else None,
        "created_at": created,
        "updated_at": created,
    }


def contact(
    person: Person,
    account_id: uuid.UUID,
    contact_id: int,
    rng: random.Random,
    created: datetime,
    employer: Organisation | None,
) -> Row:
    """A contact: first/last name, at the employer's address for business contacts."""
    rendered = render_name(person, PROFILE, rng)
    # Business contacts are reached on the company switchboard; private ones on their own number.
    phone = employer.phone if employer else pick_phone(person, PROFILE, rng)
    address = employer.address if employer else person.address
    birth = None if employer else pick_birth_date(person, PROFILE, rng)
    return {
        "contact_id": contact_id,
        "account_id": account_id,
        "salutation": (("Mr." if person.gender == "M" else "Ms.") if rng.random() < 0.6 else None),
        "first_name": rendered.name.given or None,
        "last_name": rendered.name.family or rendered.name.given,
        "title": person.job_title or None,
        "email": pick_email(person, PROFILE, rng, work_domain=employer.domain if employer else None),
        "phone": _phone_text(phone, rng) if phone else None,
        "mobile_phone": person.mobile.international() if person.mobile and rng.random() < 0.5 else None,
        "birthdate": birth,
        "mailing_street": address.street,
        "mailing_city": address.city,
        "mailing_postal_code": address.postcode or None,
        "mailing_country": _country(address.country, rng),
        "lead_source": rng.choice(_LEAD_SOURCES),
        "status": crm_status(person.active),
        "has_opted_out_of_email": rng.random() < 0.1,
        "notes": note_text(rng),
        "created_at": created,
        "updated_at": created,
    }


def opportunity(
    opp_no: int, account_id: uuid.UUID, currency: str, rng: random.Random, created: datetime
) -> Row:
    """A sales opportunity on an account."""
    stage = rng.choice(STAGES)
    return {
        "opportunity_id": f"OPP-{opp_no:07d}",
        "account_id": account_id,
        "name": rng.choice(_PRODUCTS),
        "stage": stage,
        "amount": money(Decimal(rng.randrange(500, 250_000))),
        "currency_iso_code": currency,
        "probability": {"Closed Won": 100, "Closed Lost": 0}.get(stage, rng.randrange(10, 90, 10)),
        "close_date": (created + timedelta(days=rng.randrange(14, 180))).date(),
        "created_at": created,
    }


def seed_rows(world: World, plan: Plan) -> SeedData:
    """All CRM rows for the world."""
    rng = random.Random(f"goldstream-demo:{world.seed}:{SYSTEM}")
    data = SeedData()
    org_accounts: dict[str, uuid.UUID] = {}
    opp_no = 0
    for i in plan.orgs[SYSTEM]:
        org = world.orgs[i]
        created = between(rng, datetime.combine(org.founded, datetime.min.time(), UTC), ANCHOR)
        created = max(created, ANCHOR - timedelta(days=3000))
        row = org_account(org, rng, created)
        org_accounts[org.org_id] = row["account_id"]
        data.add(ACCOUNTS, row, org.org_id, system=SYSTEM)
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            opp_no += 1
            data.add(
                OPPORTUNITIES, opportunity(opp_no, row["account_id"], row["currency_iso_code"], rng, created)
            )
    contact_id = 0
    for index, _copy in plan.people[SYSTEM]:
        person = world.people[index]
        created = between(rng, person.first_seen, ANCHOR)
        contact_id += 1
        if person.org_id and person.org_id in org_accounts:
            employer = world.org(person.org_id)
            row = contact(person, org_accounts[person.org_id], contact_id, rng, created, employer)
            data.add(CONTACTS, row, person.person_id, system=SYSTEM)
            continue
        account = person_account(person, rng, created)
        data.add(ACCOUNTS, account, person.person_id, system=SYSTEM)
        row = contact(person, account["account_id"], contact_id, rng, created, None)
        data.add(CONTACTS, row, person.person_id, system=SYSTEM)
    return data
