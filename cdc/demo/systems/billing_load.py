"""Load-generator operations on billing: which rows change, and how."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cdc.demo.systems.base import Conn, KeyPool, Row, Stmt, SystemLoad, TruthLog, insert_stmt
from cdc.demo.systems.billing import (
    ACCOUNTS,
    INVOICE_LINES,
    INVOICES,
    PAYMENTS,
    SYSTEM,
    account_no,
    invoice_with_lines,
    opaque_id,
    payment,
    person_account,
)
from cdc.demo.world import Person


class BillingLoad(SystemLoad):
    """Load-generator operations on billing."""

    system = SYSTEM

    def __init__(self, conn: Conn, truth: TruthLog, next_person: Callable[[str], Person]) -> None:
        super().__init__(conn, truth, next_person)
        self.accounts: KeyPool[str] = KeyPool()
        self.invoices: KeyPool[str] = KeyPool()
        self.open_invoices: dict[str, Row] = {}
        self.next_account = 0
        self.next_invoice = 0

    def prepare(self) -> None:
        """Read the live keys and the counters behind account and invoice numbers."""
        for (number,) in self.conn.execute("SELECT account_number FROM billing.accounts"):
            self.accounts.add(number)
        for inv_id, account, status, total, currency in self.conn.execute(
            "SELECT invoice_id, account_number, status, total, currency FROM billing.invoices"
        ):
            self.invoices.add(inv_id, account)
            if status == "open":
                self.open_invoices[inv_id] = {
                    "invoice_id": inv_id,
                    "account_number": account,
                    "total": total,
                    "currency": currency,
                }
        row = self.conn.execute(
            "SELECT coalesce(max(substr(account_number, 5)::bigint), 100000) - 100000, "
            "(SELECT coalesce(max(substr(number, 10)::bigint), 0) FROM billing.invoices "
            " WHERE number ~ '^INV-[0-9]{4}-[0-9]+$') "
            "FROM billing.accounts WHERE account_number ~ '^ACC-[0-9]+$'"
        ).fetchone()
        self.next_account, self.next_invoice = (int(row[0]), int(row[1])) if row else (0, 0)
        self.conn.commit()

    def insert(self, rng: random.Random) -> Sequence[Stmt]:
        """A new subscriber, this month's invoice with lines, or a payment of an open invoice."""
        now = datetime.now(UTC)
        roll = rng.random()
        if roll < 0.2 and self.open_invoices:
            inv_id = next(iter(self.open_invoices))
            inv = self.open_invoices.pop(inv_id)
            account = self.invoices.parent_of(inv_id)  # current number, even after a renumbering
            if inv_id in self.invoices and account is not None:
                inv = {**inv, "account_number": account}
                return [insert_stmt(PAYMENTS, payment(inv, rng, now, uuid.uuid4()))]
        account = self.accounts.pick(rng)
        if roll < 0.45 or account is None:
            person = self.next_person(SYSTEM)
            self.next_account += 1
            row = person_account(account_no(self.next_account), person, rng, now)
            self.accounts.add(row["account_number"])
            self.truth.add(SYSTEM, ACCOUNTS, row, person.person_id)
            return [insert_stmt(ACCOUNTS, row)]
        self.next_invoice += 1
        inv, lines = invoice_with_lines(
            opaque_id("in_", None), f"INV-{now.year}-{self.next_invoice:06d}", account, "eur", rng, now
        )
        inv["status"] = "open"
        inv["amount_paid"] = 0
        self.invoices.add(inv["invoice_id"], account)
        self.open_invoices[inv["invoice_id"]] = inv
        return [insert_stmt(INVOICES, inv), *(insert_stmt(INVOICE_LINES, line) for line in lines)]

    def update(self, rng: random.Random) -> Sequence[Stmt]:
        """Email or status alone, metadata jsonb, invoice settlement, balances, and renumbering."""
        roll = rng.random()
        account = self.accounts.pick(rng)
        if account is not None and roll < 0.15:
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE billing.accounts SET email = %s WHERE account_number = %s",
                    (f"billing{rng.randrange(1000)}@example.com", account),
                )
            ]
        if account is not None and roll < 0.25:
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE billing.accounts SET status = %s, "
                    "updated = extract(epoch from now())::bigint WHERE account_number = %s",
                    (rng.choice(("active", "past_due", "suspended")), account),
                )
            ]
        if account is not None and roll < 0.35:
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE billing.accounts SET metadata = metadata || %s WHERE account_number = %s",
                    (f'{{"last_seen_ip": "10.0.{rng.randrange(256)}.{rng.randrange(256)}"}}', account),
                )
            ]
        if account is not None and roll < 0.45:
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE billing.accounts SET balance_cents = balance_cents + %s "
                    "WHERE account_number = %s",
                    (rng.randrange(-5000, 5000), account),
                )
            ]
        if account is not None and roll < 0.5:
            # A primary-key change; invoices and payments follow via ON UPDATE CASCADE.
            self.next_account += 1
            new = account_no(self.next_account)
            self.accounts.rename(account, new)
            self.invoices.reparent_children(account, new)
            self.truth.rename(SYSTEM, ACCOUNTS, account, new)
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE billing.accounts SET account_number = %s WHERE account_number = %s",
                    (new, account),
                )
            ]
        inv_id = self.invoices.pick(rng)
        if inv_id is None:
            return []
        self.open_invoices.pop(inv_id, None)
        return [
            Stmt(
                "invoices",
                "update",
                "UPDATE billing.invoices SET status = 'paid', amount_paid = total WHERE invoice_id = %s",
                (inv_id,),
            )
        ]

    def delete(self, rng: random.Random) -> Sequence[Stmt]:
        """An invoice (lines and payments cascade) or an account with everything under it."""
        if rng.random() < 0.6:
            inv_id = self.invoices.pick(rng)
            if inv_id is not None:
                self.invoices.remove(inv_id)
                self.open_invoices.pop(inv_id, None)
                return [
                    Stmt(
                        "invoices", "delete", "DELETE FROM billing.invoices WHERE invoice_id = %s", (inv_id,)
                    )
                ]
        account = self.accounts.pick(rng)
        if account is None:
            return []
        self.accounts.remove(account)
        for inv_id in list(self.invoices.children_of(account)):
            self.open_invoices.pop(inv_id, None)
        self.invoices.remove_children(account)
        return [
            Stmt("accounts", "delete", "DELETE FROM billing.accounts WHERE account_number = %s", (account,))
        ]
