"""shop: a web shop (database ``shop``, schema ``public``).

Customers type their own names (case, whitespace, nicknames, swapped fields, Latin letters), forms
store '' for empty fields, phones are digits only, birthdays 'MM/DD/YYYY' text, activity 1/0,
timestamps without zone, money in integer cents. Products have a natural key (sku) that is renamed now
and then; order lines follow through ON UPDATE CASCADE.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cdc.demo.assign import Plan
from cdc.demo.countries import COUNTRIES
from cdc.demo.formats import cents, mdy, naive_local, shop_status
from cdc.demo.noise import NoiseProfile
from cdc.demo.render import big_text, pick_birth_date, pick_email, pick_phone, render_name
from cdc.demo.systems.base import Row, SeedData, Table
from cdc.demo.world import ANCHOR, HISTORY_START, Person, World, between

SYSTEM = "shop"
CUSTOMERS = Table(
    "public",
    "customers",
    (
        "customer_id", "email", "first_name", "last_name", "phone", "date_of_birth", "is_active",
        "newsletter", "preferences", "created_at", "last_login_at",
    ),
    ("customer_id",),
    identity="customer_id",
)  # fmt: skip
ADDRESSES = Table(
    "public",
    "addresses",
    (
        "address_id", "customer_id", "kind", "full_name", "company", "street", "street2", "city",
        "region", "postcode", "country_code", "phone", "is_default",
    ),
    ("address_id",),
    identity="address_id",
)  # fmt: skip
PRODUCTS = Table(
    "public",
    "products",
    (
        "sku", "name", "description", "price_cents", "currency", "attributes", "stock", "is_active",
        "created_at", "updated_at",
    ),
    ("sku",),
)  # fmt: skip
ORDERS = Table(
    "public",
    "orders",
    (
        "order_id", "order_number", "customer_id", "status", "currency", "subtotal_cents", "shipping_cents",
        "tax_cents", "total_cents", "shipping_address", "placed_at", "updated_at",
    ),
    ("order_id",),
    identity="order_id",
)  # fmt: skip
ORDER_LINES = Table(
    "public",
    "order_lines",
    ("order_id", "line_no", "sku", "product_name", "quantity", "unit_price_cents", "line_total_cents"),
    ("order_id", "line_no"),
)
TABLES = (PRODUCTS, CUSTOMERS, ADDRESSES, ORDERS, ORDER_LINES)
# Tables whose rows are people or organisations (the ground truth maps them).
TRUTH_TABLES = (CUSTOMERS,)

PROFILE = NoiseProfile(
    nickname=0.2,
    typo=0.08,
    case=0.1,
    whitespace=0.08,
    swap_names=0.06,
    romanize=0.6,
    missing_email=0.0,  # the email is the login
    missing_phone=0.35,
    missing_birth_date=0.5,
    wrong_birth_date=0.04,
    stale_email=0.15,
)
_CATALOGUE = (
    ("TSH", "Organic cotton T-shirt", 1999),
    ("HOD", "Zip hoodie", 4999),
    ("SNK", "Running sneakers", 8999),
    ("BAG", "Canvas tote bag", 1499),
    ("MUG", "Stoneware mug", 1299),
    ("LMP", "Desk lamp", 3499),
    ("BTL", "Insulated bottle 750 ml", 2499),
    ("HDP", "Wireless headphones", 12999),
    ("BKS", "Notebook A5 dotted", 899),
    ("CHR", "Ergonomic office chair", 24999),
)
_COLOURS = ("black", "white", "navy", "olive", "red", "sand")
_SIZES = ("XS", "S", "M", "L", "XL")
_STATUSES = ("pending", "paid", "shipped", "shipped", "shipped", "cancelled", "refunded")


def _currency(country: str) -> str:
    return {"US": "USD", "GB": "GBP"}.get(country, "EUR")


def _preferences(person: Person, rng: random.Random) -> dict[str, Any]:
    prefs: dict[str, Any] = {
        "language": COUNTRIES[person.country].locale.split("_")[0],
        "currency": _currency(person.country),
        "marketing": {"email": rng.random() < 0.4, "sms": rng.random() < 0.1},
    }
    if rng.random() < 0.5:
        prefs["sizes"] = {"top": rng.choice(_SIZES), "shoe": rng.randrange(36, 47)}
    if rng.random() < 0.3:
        prefs["wishlist"] = [f"{rng.choice(_CATALOGUE)[0]}-{rng.randrange(1, 60):05d}" for _ in range(3)]
    return prefs


def customer(customer_id: int, person: Person, rng: random.Random, created: datetime) -> Row:
    """A shop account as the customer typed it."""
    rendered = render_name(person, PROFILE, rng)
    phone = pick_phone(person, PROFILE, rng)
    birth = pick_birth_date(person, PROFILE, rng)
    email = pick_email(person, PROFILE, rng, tag="shop") or person.email
    return {
        "customer_id": customer_id,
        "email": email.lower() if rng.random() < 0.85 else email,
        "first_name": rendered.name.given,
        "last_name": rendered.name.family,
        "phone": phone.digits(international=rng.random() < 0.5) if phone else "",
        "date_of_birth": mdy(birth) if birth else "",
        "is_active": shop_status(person.active),
        "newsletter": rng.random() < 0.3,
        "preferences": _preferences(person, rng),
        "created_at": naive_local(created),
        "last_login_at": naive_local(between(rng, created, ANCHOR)) if rng.random() < 0.8 else None,
    }


def address(address_id: int, customer_id: int, person: Person, kind: str, rng: random.Random) -> Row:
    """A billing or shipping address; the recipient name is typed again (and may differ)."""
    rendered = render_name(person, PROFILE, rng)
    phone = pick_phone(person, PROFILE, rng)
    latin = not rendered.native
    return {
        "address_id": address_id,
        "customer_id": customer_id,
        "kind": kind,
        "full_name": rendered.full(),
        "company": "",
        "street": person.address.street,
        "street2": rng.choice(("", "", "", "Apt 4", "2nd floor", "c/o Reception")),
        "city": person.address.city_latin if latin else person.address.city,
        "region": person.address.region if rng.random() < 0.5 else "",
        "postcode": person.address.postcode,
        "country_code": person.country,
        "phone": phone.digits() if phone else "",
        "is_default": kind == "billing",
    }


def product_rows(rng: random.Random) -> list[Row]:
    """The catalogue: each base product in a few colours; some with long HTML descriptions."""
    rows: list[Row] = []
    n = 0
    for code, name, price in _CATALOGUE:
        for colour in rng.sample(_COLOURS, 4):
            n += 1
            created = naive_local(between(rng, HISTORY_START, ANCHOR))
            desc = big_text(rng, rng.randrange(3000, 7000)) if rng.random() < 0.4 else big_text(rng, 200)
            rows.append(
                {
                    "sku": f"{code}-{n:05d}",
                    "name": f"{name} ({colour})",
                    "description": f"<h2>{name}</h2><p>{desc}</p>",
                    "price_cents": price + rng.choice((0, 0, 500, -300)),
                    "currency": "EUR",
                    "attributes": {
                        "colour": colour,
                        "sizes": rng.sample(_SIZES, 3),
                        "weight_g": rng.randrange(50, 9000),
                    },
                    "stock": rng.randrange(0, 500),
                    "is_active": shop_status(rng.random() < 0.9),
                    "created_at": created,
                    "updated_at": created,
                }
            )
    return rows


def order_with_lines(
    order_id: int,
    customer_id: int,
    addr: Row | None,
    currency: str,
    products: Sequence[Row],
    rng: random.Random,
    when: datetime,
) -> tuple[Row, list[Row]]:
    """An order with 1-4 lines, totals in cents, a jsonb snapshot of the shipping address."""
    lines: list[Row] = []
    for k, prod in enumerate(rng.sample(list(products), rng.randrange(1, min(4, len(products)) + 1))):
        qty = rng.choice((1, 1, 1, 2, 3))
        lines.append(
            {
                "order_id": order_id,
                "line_no": k + 1,
                "sku": prod["sku"],
                "product_name": prod["name"],
                "quantity": qty,
                "unit_price_cents": prod["price_cents"],
                "line_total_cents": qty * prod["price_cents"],
            }
        )
    subtotal = sum(line["line_total_cents"] for line in lines)
    shipping = 0 if subtotal > 5000 else 495
    tax = cents(subtotal * 0.19 / 100)
    snapshot = None
    if addr is not None:
        snapshot = {k: addr[k] for k in ("full_name", "street", "city", "postcode", "country_code")}
    return {
        "order_id": order_id,
        "order_number": str(100_000_000 + order_id),
        "customer_id": customer_id,
        "status": rng.choice(_STATUSES),
        "currency": currency,
        "subtotal_cents": subtotal,
        "shipping_cents": shipping,
        "tax_cents": tax,
        "total_cents": subtotal + shipping + tax,
        "shipping_address": snapshot,
        "placed_at": naive_local(when),
        "updated_at": naive_local(when),
    }, lines


def seed_rows(world: World, plan: Plan) -> SeedData:
    """All shop rows for the world."""
    rng = random.Random(f"goldstream-demo:{world.seed}:{SYSTEM}")
    data = SeedData()
    products = product_rows(rng)
    for p in products:
        data.add(PRODUCTS, p)
    address_id = order_id = 0
    for n, (index, _copy) in enumerate(plan.people[SYSTEM], start=1):
        person = world.people[index]
        created = between(rng, person.first_seen, ANCHOR)
        row = customer(n, person, rng, created)
        data.add(CUSTOMERS, row, person.person_id, system=SYSTEM)
        addresses: list[Row] = []
        for kind in ("billing", "shipping") if rng.random() < 0.3 else ("billing",):
            address_id += 1
            addresses.append(address(address_id, n, person, kind, rng))
            data.add(ADDRESSES, addresses[-1])
        for _ in range(rng.choice((0, 1, 1, 2, 3, 5))):
            order_id += 1
            when = between(rng, created, ANCHOR + timedelta(seconds=1))
            order, lines = order_with_lines(
                order_id, n, addresses[-1], _currency(person.country), products, rng, when
            )
            data.add(ORDERS, order)
            for line in lines:
                data.add(ORDER_LINES, line)
    return data
