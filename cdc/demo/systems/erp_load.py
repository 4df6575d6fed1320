"""Load-generator operations on the ERP: which rows change, and how."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cdc.demo.formats import erp_status
from cdc.demo.render import big_text
from cdc.demo.systems.base import Conn, IdBlocks, KeyPool, Row, Stmt, SystemLoad, TruthLog, insert_stmt
from cdc.demo.systems.erp import (
    DEBTORS,
    SALES_ORDER_ITEMS,
    SALES_ORDERS,
    SYSTEM,
    debtor_number,
    order_with_items,
    person_debtor,
)
from cdc.demo.world import Person


class ErpLoad(SystemLoad):
    """Load-generator operations on the ERP."""

    system = SYSTEM

    def __init__(self, conn: Conn, truth: TruthLog, next_person: Callable[[str], Person]) -> None:
        super().__init__(conn, truth, next_person)
        self.debtors: KeyPool[str] = KeyPool()
        self.orders: KeyPool[int] = KeyPool()
        self.materials: list[Row] = []
        self.order_ids = IdBlocks(conn, SALES_ORDERS)
        self.next_debtor = 0

    def prepare(self) -> None:
        """Read the live keys and the material master."""
        for (debtor_no,) in self.conn.execute("SELECT debtor_no FROM erp.debtors"):
            self.debtors.add(debtor_no)
        for order_no, debtor_no in self.conn.execute("SELECT order_no, debtor_no FROM erp.sales_orders"):
            self.orders.add(order_no, debtor_no)
        self.materials = [
            {"material_no": m, "net_price": p, "base_unit": u}
            for m, p, u in self.conn.execute("SELECT material_no, net_price, base_unit FROM erp.materials")
        ]
        row = self.conn.execute(
            "SELECT coalesce(max(substr(debtor_no, 2)::bigint), 100000) - 100000 FROM erp.debtors "
            "WHERE debtor_no ~ '^D[0-9]+$'"
        ).fetchone()
        self.next_debtor = int(row[0]) if row else 0
        self.conn.commit()

    def insert(self, rng: random.Random) -> Sequence[Stmt]:
        """A new private debtor, or a sales order with items for an existing debtor."""
        now = datetime.now(UTC)
        debtor_no = self.debtors.pick(rng)
        if rng.random() < 0.3 or debtor_no is None or not self.materials:
            person = self.next_person(SYSTEM)
            self.next_debtor += 1
            row = person_debtor(debtor_number(self.next_debtor), person, rng, now)
            self.debtors.add(row["debtor_no"])
            self.truth.add(SYSTEM, DEBTORS, row, person.person_id)
            return [insert_stmt(DEBTORS, row)]
        order, items = order_with_items(self.order_ids.next(), debtor_no, "EUR", self.materials, rng, now)
        self.orders.add(order["order_no"], debtor_no)
        return [insert_stmt(SALES_ORDERS, order), *(insert_stmt(SALES_ORDER_ITEMS, i) for i in items)]

    def update(self, rng: random.Random) -> Sequence[Stmt]:
        """Phone or status alone, the long text (TOAST), an address move, an order's delivery status."""
        roll = rng.random()
        debtor_no = self.debtors.pick(rng)
        if debtor_no is not None and roll < 0.25:
            phone = f"0049-30-{rng.randrange(1_000_000, 9_999_999)}"
            return [
                Stmt(
                    "debtors",
                    "update",
                    "UPDATE erp.debtors SET telephone = %s WHERE debtor_no = %s",
                    (phone, debtor_no),
                )
            ]
        if debtor_no is not None and roll < 0.35:
            return [
                Stmt(
                    "debtors",
                    "update",
                    "UPDATE erp.debtors SET status = %s WHERE debtor_no = %s",
                    (erp_status(rng.random() < 0.8), debtor_no),
                )
            ]
        if debtor_no is not None and roll < 0.5:
            return [
                Stmt(
                    "debtors",
                    "update",
                    "UPDATE erp.debtors SET long_text = %s, changed_at = localtimestamp WHERE debtor_no = %s",
                    (big_text(rng, rng.randrange(2500, 6000)), debtor_no),
                )
            ]
        if debtor_no is not None and roll < 0.65:
            return [
                Stmt(
                    "debtors",
                    "update",
                    "UPDATE erp.debtors SET street = %s, postal_code = %s, city = %s, "
                    "changed_at = localtimestamp WHERE debtor_no = %s",
                    (
                        f"Industriestrasse {rng.randrange(1, 200)}",
                        str(rng.randrange(10000, 99999)),
                        rng.choice(("Berlin", "Hamburg", "Muenchen", "Koeln")),
                        debtor_no,
                    ),
                )
            ]
        order_no = self.orders.pick(rng)
        if order_no is None:
            return []
        return [
            Stmt(
                "sales_orders",
                "update",
                "UPDATE erp.sales_orders SET delivery_status = %s, changed_at = localtimestamp "
                "WHERE order_no = %s",
                (rng.choice("BC"), order_no),
            )
        ]

    def delete(self, rng: random.Random) -> Sequence[Stmt]:
        """A sales order (items cascade) or a debtor with its contacts, orders and items."""
        if rng.random() < 0.6:
            order_no = self.orders.pick(rng)
            if order_no is not None:
                self.orders.remove(order_no)
                return [
                    Stmt(
                        "sales_orders",
                        "delete",
                        "DELETE FROM erp.sales_orders WHERE order_no = %s",
                        (order_no,),
                    )
                ]
        debtor_no = self.debtors.pick(rng)
        if debtor_no is None:
            return []
        self.debtors.remove(debtor_no)
        self.orders.remove_children(debtor_no)
        return [Stmt("debtors", "delete", "DELETE FROM erp.debtors WHERE debtor_no = %s", (debtor_no,))]
