"""HTTP APIs of the demo CRM and ERP, over their own databases, the way SaaS systems expose them.

* :mod:`cdc.demo.api.crm` - Salesforce/HubSpot-like: OAuth2 client credentials, accounts and
  contacts, cursor pagination, merge.
* :mod:`cdc.demo.api.erp` - SAP-like: ``X-API-Key``, debtors, offset pagination, block/unblock.
* :mod:`cdc.demo.api.common` - what both share: errors, auth, rate limits, fault injection,
  pagination, ETags, idempotency keys, admin endpoints.
* :mod:`cdc.demo.api.resources` - upsert by external id, optimistic concurrency, batch: the
  resource semantics, independent of storage.
* :mod:`cdc.demo.api.store` - PostgreSQL storage (and an in-memory double with the same behaviour
  for tests), plus the additive schema changes the APIs need.
* :mod:`cdc.demo.api.stack` - the two services as components of the local stack.

Run one with ``python -m cdc.demo.api crm`` (``goldstream stack up`` does it for both). Writes go to
the database, so Debezium sees them like any other edit; every row written records its writer in
``last_modified_by`` (the API client id, or ``db:<user>`` for direct SQL).

This package imports nothing heavy at import time; the submodules pull in FastAPI and psycopg.
"""
