"""Resource semantics below HTTP: the upsert race, the in-memory store's PostgreSQL-like behaviour."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc.demo.api import crm
from cdc.demo.api.common import ConflictError, UnprocessableError
from cdc.demo.api.resources import Outcome, ResourceService
from cdc.demo.api.store import MemoryStore, ResourceSpec, Row, Tx

ORG = {"account_type": "Organization", "name": "Race Corp"}


class _LosingTx:
    """Delegates to a real transaction, but the first insert loses a race (unique violation)."""

    def __init__(self, inner: Tx, store: RacingStore) -> None:
        self._inner = inner
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def insert(self, spec: ResourceSpec, values: Row) -> Row:
        if not self._store.raced:
            self._store.raced = True
            self._store.competitor = values
            raise ConflictError("duplicate value: accounts_external_id_key")
        return self._inner.insert(spec, values)


class RacingStore:
    """Another client inserts the same external id between our SELECT and our INSERT."""

    def __init__(self) -> None:
        self.memory = MemoryStore(crm.SPECS)
        self.raced = False
        self.competitor: Row | None = None

    @contextlib.contextmanager
    def transaction(self, modified_by: str) -> Iterator[Tx]:
        try:
            with self.memory.transaction(modified_by) as tx:
                yield _LosingTx(tx, self)  # type: ignore[misc]
        except ConflictError:
            if self.competitor is not None:  # the winner commits after our transaction failed
                self.memory.seed(crm.ACCOUNTS, {**self.competitor, "name": "Winner"}, modified_by="other")
                self.competitor = None
            raise

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


def test_an_upsert_that_loses_the_insert_race_updates_the_winner() -> None:
    store = RacingStore()
    service = ResourceService(crm.ACCOUNTS, store)  # type: ignore[arg-type]
    result = service.upsert("g-race", dict(ORG), by="goldstream")
    assert result.outcome is Outcome.UPDATED
    assert result.row["name"] == "Race Corp" and result.row["version"] == 2
    assert len(store.memory.tables["accounts"]) == 1


def test_other_conflicts_are_not_retried() -> None:
    store = MemoryStore(crm.SPECS)
    service = ResourceService(crm.ACCOUNTS, store)
    a = service.upsert("g-a", dict(ORG), by="goldstream").row
    service.upsert("g-b", dict(ORG), by="goldstream")
    with pytest.raises(ConflictError):  # taking another record's external id
        service.patch(str(a["account_id"]), {"external_id": "g-b"}, by="goldstream")


def test_memory_store_rolls_back_a_failed_transaction() -> None:
    store = MemoryStore(crm.SPECS)
    with pytest.raises(UnprocessableError), store.transaction("t") as tx:
        tx.insert(crm.ACCOUNTS, {"account_id": uuid.uuid4(), **ORG, "status": "Active", "custom_fields": {}})
        tx.insert(crm.CONTACTS, {"account_id": uuid.uuid4(), "last_name": "x", "status": "Active"})
    assert store.tables["accounts"] == {} and store.tables["contacts"] == {}


def test_specs_cover_every_column_of_the_demo_tables() -> None:
    from cdc.demo.api import erp
    from cdc.demo.systems import crm as demo_crm
    from cdc.demo.systems import erp as demo_erp

    assert crm.ACCOUNTS.columns == demo_crm.ACCOUNTS.columns
    assert crm.CONTACTS.columns == demo_crm.CONTACTS.columns
    assert erp.DEBTORS.columns == demo_erp.DEBTORS.columns
    writable = {
        crm.ACCOUNTS.name: crm.AccountIn,
        crm.CONTACTS.name: crm.ContactIn,
        erp.DEBTORS.name: erp.DebtorIn,
    }
    generated = {"created_at", "updated_at", "created_on", "changed_at"}
    for spec in (crm.ACCOUNTS, crm.CONTACTS, erp.DEBTORS):
        fields = set(writable[spec.name].model_fields)
        # Every business column but the key and the timestamps the store keeps is writable.
        assert set(spec.columns) - {spec.key} - generated <= fields, spec.name
        assert set(spec.required) <= fields, spec.name  # a client can create every record
