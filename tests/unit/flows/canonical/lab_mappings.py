"""Synthetic mappings for the property tests: every transform, condition, hook and option at least once.

Written to a temporary folder and compiled once per test session (``lab`` is a made-up system).
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

from flows.canonical import Mapping, load_mapping

PEOPLE = """
version: 3
entity: customer
source:
  system: lab
  schema: public
  table: people
  key: [id]
  replica_identity: full
  timezone: Europe/Berlin
  columns:
    id: int
    name: text
    first: text
    last: text
    email: text
    phone: text
    country: text
    status: text
    flag: int
    born: text
    birth: date
    seen: timestamp
    at: timestamptz
    opt: bool
    note: text
    cur: text
fields:
  kind:
    from: flag
    steps: [{enum: {1: person, 0: organisation}}]
  status:
    from: status
    steps: [trim, lower, {enum: {active: active, inactive: inactive, a: active, i: inactive}}]
  full_name:
    from: name
    when: {field: kind, equals: person}
    steps: [text]
  first_name:
    from: $full_name
    steps: [{split_name: {part: first, order: auto}}, fix_case]
  middle_name:
    from: $full_name
    steps: [{split_name: {part: middle, order: family_first}}]
  last_name:
    from: $full_name
    steps: [{split_name: last}, fix_case]
  organisation_name:
    from: [first, last]
    when: [{field: kind, equals: organisation}, {column: status, not_in: [closed, x]}]
    steps: [{join: " & "}, collapse_spaces, upper]
  job_title:
    from: [first, last]
    hook: tests.unit.flows.canonical.hooks_for_tests:initials
  email: {from: email, steps: [email]}
  country: {from: country, steps: [country]}
  phone:
    from: phone
    steps: [{phone: {region_from: country, region: DE}}]
  mobile_phone:
    from: phone
    when: {column: flag, in: [1, 2]}
    steps: [{phone: {digits_international: true, strict: true}}]
  birth_date: {from: born, steps: [{date: mdy}]}
  street: {from: note, steps: [nfc, trim, lower]}
  street2: {from: note, steps: [fix_text, {null_if: ["-", "n/a"]}]}
  postal_code:
    from: [first, last]
    steps: [coalesce, upper]
  region:
    from: note
    empty_as_null: false
    steps: [collapse_spaces]
  city: {from: flag, steps: [string]}
  tax_id: {from: id, steps: [ref]}
  currency: {from: cur, steps: [currency]}
  marketing_opt_in:
    from: opt
    when: {column: opt, is_null: false}
    steps: [not]
  parent_ref:
    from: [id, first]
    steps: [ref]
  created_at: {from: at}
  updated_at: {from: seen}
"""

LINES = """
version: 1
entity: order_line
source:
  system: lab
  schema: public
  table: lines
  key: [order_no, line]
  columns:
    order_no: int
    line: int
    sku: text
    qty: decimal
    price: decimal
    total: text
    cur: text
    unit: text
    birth: date
options:
  empty_as_null: true
  drift: evolve
fields:
  order_ref: {from: order_no, steps: [ref]}
  line_no: {from: line}
  product_ref:
    from: [sku, order_no]
    steps: [ref]
  quantity: {from: qty, steps: [{decimal: 3}]}
  description:
    from: sku
    steps: [{presence: {present: has sku, absent: no sku}}]
  unit: {from: total, steps: [int, string]}
  currency: {from: cur, steps: [currency]}
  unit_price_minor:
    from: price
    steps: [{money: {unit: major, currency_from: currency}}]
  line_total_minor:
    from: total
    steps: [{money: {unit: minor}}]
"""

ORDERS = """
version: 1
entity: order
source:
  system: lab
  schema: public
  table: orders
  key: [num]
  replica_identity: default
  timezone: America/New_York
  columns:
    num: text
    cust: int
    st: text
    cur: text
    amount: decimal
    amount_i: int
    day: date
    placed: timestamp_ms
    due: text
    iso: text
    po: text
    flag: bool
options:
  drift: lenient
fields:
  order_number: {from: num, steps: [text]}
  customer_ref: {from: cust, steps: [ref]}
  status:
    from: st
    steps: [{enum: {P: pending, S: shipped, X: cancelled}}]
  currency: {from: cur, steps: [upper, currency]}
  order_date: {from: day}
  placed_at: {from: placed}
  requested_delivery_date: {from: due, steps: [{date: dmy}]}
  customer_po: {from: flag, steps: [string]}
  subtotal_minor:
    from: amount
    steps: [{money: {unit: major, currency: JPY}}]
  shipping_minor:
    from: amount_i
    steps: [{money: {unit: major, minor_digits: 3}}]
  tax_minor: {from: po, steps: [int]}
  total_minor: {from: amount_i, steps: [{money: {unit: minor}}]}
  updated_at:
    from: iso
    steps: [{timestamp: {format: iso, timezone: Australia/Lord_Howe}}]
"""

INVOICES = """
version: 1
entity: invoice
source:
  system: lab
  schema: public
  table: invoices
  key: [id]
  replica_identity: full
  columns:
    id: uuid
    acct: text
    num: text
    st: text
    cur: text
    created: int
    pe: int
    due: int
    memo: text
    free: text
    ymd: text
    yn: text
options:
  empty_as_null: false
  drift: ignore
fields:
  invoice_number: {from: num, empty_as_null: true, steps: [text]}
  customer_ref: {from: acct, steps: [ref]}
  status:
    from: st
    steps: [{enum: {open: open, paid: paid, "": draft}}]
  currency:
    from: cur
    empty_as_null: true
    steps: [currency]
  issued_at:
    from: created
    steps: [{timestamp: {unit: ms}}]
  period_start:
    from: free
    steps: [{timestamp: {format: any, dayfirst: true}}]
  period_end:
    from: ymd
    steps: [{timestamp: ymd}]
  due_date:
    from: due
    steps: [{date: {unit: s}}]
  memo: {from: memo, steps: [text]}
  subtotal_minor:
    from: pe
    steps: [{money: {unit: major, currency_from: currency}}]
  tax_minor:
    from: yn
    steps: [bool, string, {enum: {"true": "1", "false": "0"}}, int]
"""


SOURCES = {"people": PEOPLE, "lines": LINES, "orders": ORDERS, "invoices": INVOICES}


def load_lab() -> dict[str, Mapping]:
    """Compile every lab mapping (in a fresh temporary folder)."""
    root = Path(tempfile.mkdtemp(prefix="goldstream-lab-")) / "lab"
    root.mkdir(parents=True)
    out = {}
    for table, text in SOURCES.items():
        path = root / f"{table}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        out[table] = load_mapping(path)
    return out
