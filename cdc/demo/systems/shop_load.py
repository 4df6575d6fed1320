"""Load-generator operations on the shop: which rows change, and how."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cdc.demo.formats import naive_local
from cdc.demo.render import big_text
from cdc.demo.systems.base import Conn, IdBlocks, KeyPool, Row, Stmt, SystemLoad, TruthLog, insert_stmt
from cdc.demo.systems.shop import (
    ADDRESSES,
    CUSTOMERS,
    ORDER_LINES,
    ORDERS,
    SYSTEM,
    address,
    customer,
    order_with_lines,
)
from cdc.demo.world import Person


class ShopLoad(SystemLoad):
    """Load-generator operations on the shop."""

    system = SYSTEM

    def __init__(self, conn: Conn, truth: TruthLog, next_person: Callable[[str], Person]) -> None:
        super().__init__(conn, truth, next_person)
        self.customers: KeyPool[int] = KeyPool()
        self.addresses: KeyPool[int] = KeyPool()
        self.orders: KeyPool[int] = KeyPool()
        self.products: dict[str, Row] = {}
        self.skus: KeyPool[str] = KeyPool()
        self.customer_ids = IdBlocks(conn, CUSTOMERS)
        self.address_ids = IdBlocks(conn, ADDRESSES)
        self.order_ids = IdBlocks(conn, ORDERS)
        self.next_sku = 0

    def prepare(self) -> None:
        """Read the live keys and the catalogue."""
        for (cid,) in self.conn.execute("SELECT customer_id FROM public.customers"):
            self.customers.add(cid)
        for aid, cid in self.conn.execute("SELECT address_id, customer_id FROM public.addresses"):
            self.addresses.add(aid, cid)
        for oid, cid in self.conn.execute("SELECT order_id, customer_id FROM public.orders"):
            self.orders.add(oid, cid)
        for sku, name, price in self.conn.execute("SELECT sku, name, price_cents FROM public.products"):
            self.products[sku] = {"sku": sku, "name": name, "price_cents": price}
            self.skus.add(sku)
        numbers = [int(s[4:]) for s in self.products if s[4:].isdigit()]
        self.next_sku = max(numbers, default=0)
        self.conn.commit()

    def insert(self, rng: random.Random) -> Sequence[Stmt]:
        """A sign-up (customer + billing address) or an order with lines."""
        now = datetime.now(UTC)
        cid = self.customers.pick(rng)
        if rng.random() < 0.35 or cid is None or not self.products:
            person = self.next_person(SYSTEM)
            row = customer(self.customer_ids.next(), person, rng, now)
            row["last_login_at"] = naive_local(now)
            addr = address(self.address_ids.next(), row["customer_id"], person, "billing", rng)
            self.customers.add(row["customer_id"])
            self.addresses.add(addr["address_id"], row["customer_id"])
            self.truth.add(SYSTEM, CUSTOMERS, row, person.person_id)
            return [insert_stmt(CUSTOMERS, row), insert_stmt(ADDRESSES, addr)]
        order, lines = order_with_lines(
            self.order_ids.next(), cid, None, "EUR", list(self.products.values()), rng, now
        )
        order["status"] = "pending"
        self.orders.add(order["order_id"], cid)
        return [insert_stmt(ORDERS, order), *(insert_stmt(ORDER_LINES, line) for line in lines)]

    def update(self, rng: random.Random) -> Sequence[Stmt]:
        """Logins, phones, preferences, order status, prices, long descriptions, and sku renames."""
        roll = rng.random()
        cid = self.customers.pick(rng)
        if cid is not None and roll < 0.25:
            return [
                Stmt(
                    "customers",
                    "update",
                    "UPDATE public.customers SET last_login_at = localtimestamp WHERE customer_id = %s",
                    (cid,),
                )
            ]
        if cid is not None and roll < 0.3:
            return [
                Stmt(
                    "customers",
                    "update",
                    "UPDATE public.customers SET phone = %s WHERE customer_id = %s",
                    (str(rng.randrange(10**9, 10**10)), cid),
                )
            ]
        if cid is not None and roll < 0.4:
            return [
                Stmt(
                    "customers",
                    "update",
                    "UPDATE public.customers SET preferences = jsonb_set(preferences, '{marketing,email}', "
                    "to_jsonb(%s::boolean)) WHERE customer_id = %s",
                    (rng.random() < 0.5, cid),
                )
            ]
        aid = self.addresses.pick(rng)
        if aid is not None and roll < 0.5:
            return [
                Stmt(
                    "addresses",
                    "update",
                    "UPDATE public.addresses SET street = %s, street2 = '', city = %s, "
                    "postcode = %s WHERE address_id = %s",
                    (
                        f"{rng.randrange(1, 300)} High Street",
                        rng.choice(("Bristol", "Lyon", "Porto")),
                        str(rng.randrange(10000, 99999)),
                        aid,
                    ),
                )
            ]
        oid = self.orders.pick(rng)
        if oid is not None and roll < 0.8:
            return [
                Stmt(
                    "orders",
                    "update",
                    "UPDATE public.orders SET status = %s, updated_at = localtimestamp WHERE order_id = %s",
                    (rng.choice(("paid", "shipped", "cancelled")), oid),
                )
            ]
        sku = self.skus.pick(rng)
        if sku is None:
            return []
        if roll < 0.88:
            return [
                Stmt(
                    "products",
                    "update",
                    "UPDATE public.products SET price_cents = %s WHERE sku = %s",
                    (rng.randrange(500, 30000), sku),
                )
            ]
        if roll < 0.95:
            return [
                Stmt(
                    "products",
                    "update",
                    "UPDATE public.products SET description = %s, updated_at = localtimestamp WHERE sku = %s",
                    (f"<p>{big_text(rng, rng.randrange(3000, 7000))}</p>", sku),
                )
            ]
        # A primary-key change: Debezium emits a delete of the old key and a create of the new one.
        self.next_sku += 1
        new_sku = f"{sku[:3]}-{self.next_sku:05d}"
        self.skus.rename(sku, new_sku)
        self.products[new_sku] = {**self.products.pop(sku), "sku": new_sku}
        return [
            Stmt("products", "update", "UPDATE public.products SET sku = %s WHERE sku = %s", (new_sku, sku))
        ]

    def delete(self, rng: random.Random) -> Sequence[Stmt]:
        """An order (lines cascade) or a customer with addresses, orders and lines."""
        if rng.random() < 0.7:
            oid = self.orders.pick(rng)
            if oid is not None:
                self.orders.remove(oid)
                return [Stmt("orders", "delete", "DELETE FROM public.orders WHERE order_id = %s", (oid,))]
        cid = self.customers.pick(rng)
        if cid is None:
            return []
        self.customers.remove(cid)
        self.addresses.remove_children(cid)
        self.orders.remove_children(cid)
        return [Stmt("customers", "delete", "DELETE FROM public.customers WHERE customer_id = %s", (cid,))]
