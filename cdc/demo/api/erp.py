"""The demo ERP's HTTP API (SAP-like) over database ``erp``, schema ``erp``.

Auth: an ``X-API-Key`` header (the key belongs to client ``demo_apis.erp.client_id``).

Debtors (``/v1/debtors``): offset pagination (``offset``, ``limit`` -> ``total``, ``next_offset``),
get by debtor number or external id with ``ETag``, upsert by external id, ``PATCH`` with
``If-Match``, batch upsert, ``POST .../{debtor_no}/block`` (status ``I``) and ``.../unblock``
(status ``A``). Debtors are never deleted through the API (as in SAP: block them).

Legacy conventions hold: text fields are never null (null is stored as ``''``), countries are
ISO alpha-2, currencies ISO 4217, statuses ``A``/``I``, ``credit_limit`` a decimal string.
Debtors created through the API are numbered from their own range, ``DX0000001`` upwards, so
they never collide with numbers the ERP's own users (the load generator) hand out.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from pydantic import BeforeValidator, Field

from cdc.demo.api.common import ApiKeys, Clock, RateLimiter, ServiceState, create_base_app, env_secret
from cdc.demo.api.resources import ResourceService, WriteModel, add_resource_routes
from cdc.demo.api.store import Generated, ResourceSpec, Store
from cdc.demo.formats import mdy, naive_local
from cdc.demo.systems import erp as demo_erp
from core.settings import Settings

SYSTEM = "erp"
_debtor_numbers = itertools.count(1)  # memory store only


def _local_now() -> datetime:
    return naive_local(datetime.now(UTC))


_TEXT_COLUMNS = (
    "name2", "search_term", "street", "postal_code", "city", "telephone", "email", "vat_reg_no", "long_text",
)  # fmt: skip

DEBTORS = ResourceSpec(
    name="debtors",
    schema="erp",
    table="debtors",
    key="debtor_no",
    parse_key=str,
    columns=demo_erp.DEBTORS.columns,
    required=("name1", "country", "currency"),
    not_null=frozenset(demo_erp.DEBTORS.columns) - {"debtor_no", "created_on", "changed_at"},
    create_defaults={
        **dict.fromkeys(_TEXT_COLUMNS, ""),
        "payment_terms": "NT30",
        "credit_limit": Decimal("0.00"),
        "status": "A",
    },
    on_insert={
        "debtor_no": Generated(
            "'DX' || lpad(nextval('erp.debtor_api_no_seq')::text, 7, '0')",
            lambda: f"DX{next(_debtor_numbers):07d}",
        ),
        "created_on": Generated("to_char(current_date, 'MM/DD/YYYY')", lambda: mdy(date.today())),
        "changed_at": Generated("localtimestamp", _local_now),
    },
    on_update={"changed_at": Generated("localtimestamp", _local_now)},
    status=("status", "A", "I"),
    ddl=("CREATE SEQUENCE IF NOT EXISTS erp.debtor_api_no_seq",),
)
SPECS = (DEBTORS,)


def _empty_if_null(value: Any) -> Any:
    return "" if value is None else value


# The ERP stores '' where other systems store NULL: an explicit null is written as ''.
ErpText = Annotated[str | None, BeforeValidator(_empty_if_null), Field(max_length=500)]


class DebtorIn(WriteModel):
    """Debtor fields a client may write (all optional: fields left out stay as they are)."""

    name1: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    name2: ErpText = None
    search_term: ErpText = None
    street: ErpText = None
    postal_code: ErpText = None
    city: ErpText = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2")] | None = None
    telephone: ErpText = None
    email: ErpText = None
    vat_reg_no: ErpText = None
    payment_terms: Annotated[str, Field(min_length=1, max_length=4)] | None = None
    credit_limit: Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=2)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    status: Literal["A", "I"] | None = None
    long_text: Annotated[str | None, BeforeValidator(_empty_if_null), Field(max_length=200_000)] = None
    external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


def create_app(settings: Settings, store: Store, *, clock: Clock = time.monotonic) -> FastAPI:
    """The ERP API over ``store``; the API key and admin token from the environment."""
    cfg = settings.demo_apis
    api = cfg.erp
    keys = ApiKeys({env_secret(api.secret_env, "demo_apis.erp.secret_env"): api.client_id})
    state = ServiceState(
        system=SYSTEM,
        authenticate=keys.authenticate,
        limiter=RateLimiter(api.rate_limit_per_s, api.rate_limit_burst, clock=clock),
        admin_token=env_secret(cfg.admin_token_env, "demo_apis.admin_token_env"),
        ping=store.ping,
        batch_max=cfg.batch_max,
        page_size_max=cfg.page_size_max,
    )
    app = create_base_app(state, title="goldstream demo ERP", description=__doc__ or "")
    debtors = ResourceService(DEBTORS, store)
    add_resource_routes(app, debtors, DebtorIn, paging="offset", status_actions=("unblock", "block"))
    return app
