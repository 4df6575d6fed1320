"""Load-generator operations on the CRM: which rows change, and how."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cdc.demo.formats import crm_status
from cdc.demo.render import big_text
from cdc.demo.systems.base import Conn, IdBlocks, KeyPool, Stmt, SystemLoad, TruthLog, insert_stmt
from cdc.demo.systems.crm import (
    ACCOUNTS,
    CONTACTS,
    OPPORTUNITIES,
    STAGES,
    SYSTEM,
    contact,
    opportunity,
    person_account,
)
from cdc.demo.world import Person


class CrmLoad(SystemLoad):
    """Load-generator operations on the CRM."""

    system = SYSTEM

    def __init__(self, conn: Conn, truth: TruthLog, next_person: Callable[[str], Person]) -> None:
        super().__init__(conn, truth, next_person)
        self.person_accounts: KeyPool[uuid.UUID] = KeyPool()
        self.org_accounts: KeyPool[uuid.UUID] = KeyPool()
        self.contacts: KeyPool[int] = KeyPool()
        self.opportunities: KeyPool[str] = KeyPool()
        self.contact_ids = IdBlocks(conn, CONTACTS)
        self.next_opp = 0

    def prepare(self) -> None:
        """Read the live keys."""
        for account_id, kind in self.conn.execute("SELECT account_id, account_type FROM public.accounts"):
            (self.org_accounts if kind == "Organization" else self.person_accounts).add(account_id)
        for contact_id, account_id in self.conn.execute("SELECT contact_id, account_id FROM public.contacts"):
            self.contacts.add(contact_id, account_id)
        for opp_id, account_id in self.conn.execute(
            "SELECT opportunity_id, account_id FROM public.opportunities"
        ):
            self.opportunities.add(opp_id, account_id)
        row = self.conn.execute(
            "SELECT coalesce(max(substr(opportunity_id, 5)::bigint), 0) FROM public.opportunities"
        ).fetchone()
        self.next_opp = int(row[0]) if row else 0
        self.conn.commit()

    def insert(self, rng: random.Random) -> Sequence[Stmt]:
        """A new private customer (account + contact), a business contact, or an opportunity."""
        now = datetime.now(UTC)
        roll = rng.random()
        if roll < 0.2 and len(self.org_accounts):
            account_id = self.org_accounts.pick(rng)
            assert account_id is not None
            self.next_opp += 1
            row = opportunity(self.next_opp, account_id, rng.choice(("USD", "EUR", "GBP")), rng, now)
            self.opportunities.add(row["opportunity_id"], account_id)
            return [insert_stmt(OPPORTUNITIES, row)]
        person = self.next_person(SYSTEM)
        if roll < 0.5 and len(self.org_accounts):
            account_id = self.org_accounts.pick(rng)
            assert account_id is not None
            row = contact(person, account_id, self.contact_ids.next(), rng, now, None)
            self.contacts.add(row["contact_id"], account_id)
            self.truth.add(SYSTEM, CONTACTS, row, person.person_id)
            return [insert_stmt(CONTACTS, row)]
        account = person_account(person, rng, now)
        account["account_id"] = uuid.uuid4()  # not from rng: a rerun with the same seed must not collide
        row = contact(person, account["account_id"], self.contact_ids.next(), rng, now, None)
        self.person_accounts.add(account["account_id"])
        self.contacts.add(row["contact_id"], account["account_id"])
        self.truth.add(SYSTEM, ACCOUNTS, account, person.person_id)
        self.truth.add(SYSTEM, CONTACTS, row, person.person_id)
        return [insert_stmt(ACCOUNTS, account), insert_stmt(CONTACTS, row)]

    def update(self, rng: random.Random) -> Sequence[Stmt]:
        """One-column contact edits, TOAST-sized notes/descriptions, address moves, pipeline stages."""
        roll = rng.random()
        contact_id = self.contacts.pick(rng)
        if roll < 0.35 and contact_id is not None:
            # A single column, nothing else (no updated_at): the smallest possible change event.
            choice = rng.randrange(4)
            if choice == 0:
                return [
                    Stmt(
                        "contacts",
                        "update",
                        "UPDATE public.contacts SET title = %s WHERE contact_id = %s",
                        (rng.choice(("Head of Purchasing", "CFO", "Buyer", None)), contact_id),
                    )
                ]
            if choice == 1:
                return [
                    Stmt(
                        "contacts",
                        "update",
                        "UPDATE public.contacts SET status = %s WHERE contact_id = %s",
                        (crm_status(rng.random() < 0.8), contact_id),
                    )
                ]
            if choice == 2:
                return [
                    Stmt(
                        "contacts",
                        "update",
                        "UPDATE public.contacts SET has_opted_out_of_email = NOT has_opted_out_of_email "
                        "WHERE contact_id = %s",
                        (contact_id,),
                    )
                ]
            return [
                Stmt(
                    "contacts",
                    "update",
                    "UPDATE public.contacts SET phone = %s WHERE contact_id = %s",
                    (f"+1 415 555 0{rng.randrange(100, 200)}", contact_id),
                )
            ]
        if roll < 0.5 and contact_id is not None:
            return [
                Stmt(
                    "contacts",
                    "update",
                    "UPDATE public.contacts SET notes = %s, updated_at = now() WHERE contact_id = %s",
                    (big_text(rng, rng.randrange(2500, 6000)), contact_id),
                )
            ]
        pool = self.org_accounts if rng.random() < 0.5 and len(self.org_accounts) else self.person_accounts
        account_id = pool.pick(rng)
        if roll < 0.6 and account_id is not None:
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE public.accounts SET status = %s WHERE account_id = %s",
                    (crm_status(rng.random() < 0.85), account_id),
                )
            ]
        if roll < 0.7 and account_id is not None:
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE public.accounts SET description = %s, updated_at = now() WHERE account_id = %s",
                    (big_text(rng, rng.randrange(2500, 6000)), account_id),
                )
            ]
        if roll < 0.8 and account_id is not None:
            return [
                Stmt(
                    "accounts",
                    "update",
                    "UPDATE public.accounts SET billing_street = %s, billing_city = %s, "
                    "billing_postal_code = %s, custom_fields = custom_fields || %s, updated_at = now() "
                    "WHERE account_id = %s",
                    (
                        f"{rng.randrange(1, 300)} Market Street",
                        rng.choice(("Leeds", "Lyon", "Köln")),
                        str(rng.randrange(10000, 99999)),
                        '{"moved": true}',
                        account_id,
                    ),
                )
            ]
        opp = self.opportunities.pick(rng)
        if opp is None:
            return []
        return [
            Stmt(
                "opportunities",
                "update",
                "UPDATE public.opportunities SET stage = %s, probability = %s WHERE opportunity_id = %s",
                (rng.choice(STAGES), rng.randrange(0, 101, 10), opp),
            )
        ]

    def delete(self, rng: random.Random) -> Sequence[Stmt]:
        """A contact, an opportunity, or a whole account with its contacts and opportunities."""
        roll = rng.random()
        if roll < 0.3:
            contact_id = self.contacts.pick(rng)
            if contact_id is not None:
                self.contacts.remove(contact_id)
                return [
                    Stmt(
                        "contacts",
                        "delete",
                        "DELETE FROM public.contacts WHERE contact_id = %s",
                        (contact_id,),
                    )
                ]
        if roll < 0.6:
            opp = self.opportunities.pick(rng)
            if opp is not None:
                self.opportunities.remove(opp)
                return [
                    Stmt(
                        "opportunities",
                        "delete",
                        "DELETE FROM public.opportunities WHERE opportunity_id = %s",
                        (opp,),
                    )
                ]
        # Accounts have children: ON DELETE CASCADE removes contacts and opportunities with them.
        pool = self.org_accounts if roll > 0.9 and len(self.org_accounts) > 5 else self.person_accounts
        account_id = pool.pick(rng)
        if account_id is None:
            return []
        pool.remove(account_id)
        self.contacts.remove_children(account_id)
        self.opportunities.remove_children(account_id)
        return [
            Stmt("accounts", "delete", "DELETE FROM public.accounts WHERE account_id = %s", (account_id,))
        ]
