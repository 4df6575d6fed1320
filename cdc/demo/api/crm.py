"""The demo CRM's HTTP API (Salesforce/HubSpot-like) over database ``crm``.

Auth: OAuth2 client credentials. ``POST /oauth/token`` (form or JSON body ``grant_type=
client_credentials``, ``client_id``, ``client_secret``; or HTTP Basic) returns a bearer token valid
for ``demo_apis.token_ttl_s``; every ``/v1`` call sends ``Authorization: Bearer <token>``.

Resources (``/v1/accounts``, ``/v1/contacts``): cursor pagination (``page_size``, ``cursor`` ->
``next_cursor``), get by id or external id with ``ETag``, upsert by external id, ``PATCH`` with
``If-Match``, batch upsert, activate / deactivate, delete (children cascade), and
``POST /v1/accounts/{id}/merge``. Field names are the table's column names; a contact may name its
account by ``account_id`` or by ``account_external_id``. Decimals travel as strings.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdc.demo.api.common import (
    BadRequestError,
    Clock,
    ConflictError,
    NotFoundError,
    RateLimiter,
    ServiceState,
    TokenIssuer,
    UnprocessableError,
    client_credentials,
    create_base_app,
    env_secret,
    etag,
    jsonable,
    parse_body,
)
from cdc.demo.api.resources import (
    Caller,
    IfMatch,
    ResourceService,
    WriteModel,
    add_resource_routes,
    check_preconditions,
    idempotent,
)
from cdc.demo.api.store import Generated, ResourceSpec, Row, Store, Tx
from cdc.demo.systems import crm as demo_crm
from core.settings import Settings

SYSTEM = "crm"
_contact_ids = itertools.count(10_000_000)  # memory store only; PostgreSQL uses the identity


def _now() -> datetime:
    return datetime.now(UTC)


_CREATED = Generated("now()", _now)

ACCOUNTS = ResourceSpec(
    name="accounts",
    schema="public",
    table="accounts",
    key="account_id",
    parse_key=uuid.UUID,
    columns=demo_crm.ACCOUNTS.columns,
    required=("account_type", "name"),
    not_null=frozenset({"account_type", "name", "status", "custom_fields"}),
    create_defaults={"status": "Active", "custom_fields": {}},
    on_insert={
        "account_id": Generated("gen_random_uuid()", uuid.uuid4),
        "created_at": _CREATED,
        "updated_at": _CREATED,
    },
    on_update={"updated_at": _CREATED},
    status=("status", "Active", "Inactive"),
)
CONTACTS = ResourceSpec(
    name="contacts",
    schema="public",
    table="contacts",
    key="contact_id",
    parse_key=int,
    columns=demo_crm.CONTACTS.columns,
    required=("account_id", "last_name"),
    not_null=frozenset({"account_id", "last_name", "status", "has_opted_out_of_email"}),
    create_defaults={"status": "Active", "has_opted_out_of_email": False},
    on_insert={
        "contact_id": Generated("DEFAULT", lambda: next(_contact_ids)),
        "created_at": _CREATED,
        "updated_at": _CREATED,
    },
    on_update={"updated_at": _CREATED},
    references={"account_id": "accounts"},
    status=("status", "Active", "Inactive"),
)
SPECS = (ACCOUNTS, CONTACTS)

Text = Annotated[str, Field(max_length=500)]
LongText = Annotated[str, Field(max_length=200_000)]
Status = Literal["Active", "Inactive"]
Country = Annotated[str, Field(max_length=100, description="English country name, e.g. 'Germany'")]


class AccountIn(WriteModel):
    """Account fields a client may write (all optional: fields left out stay as they are)."""

    account_type: Literal["Person", "Organization"] | None = None
    name: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    industry: Text | None = None
    website: Text | None = None
    phone: Text | None = None
    billing_street: Text | None = None
    billing_city: Text | None = None
    billing_postal_code: Text | None = None
    billing_country: Country | None = None
    status: Status | None = None
    owner_email: Text | None = None
    annual_revenue: Annotated[Decimal, Field(max_digits=16, decimal_places=2)] | None = None
    currency_iso_code: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    custom_fields: dict[str, Any] | None = None
    description: LongText | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class ContactIn(WriteModel):
    """Contact fields a client may write; the account by ``account_id`` or ``account_external_id``."""

    account_id: uuid.UUID | None = None
    account_external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    salutation: Text | None = None
    first_name: Text | None = None
    last_name: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    title: Text | None = None
    email: Text | None = None
    phone: Text | None = None
    mobile_phone: Text | None = None
    birthdate: date | None = None
    mailing_street: Text | None = None
    mailing_city: Text | None = None
    mailing_postal_code: Text | None = None
    mailing_country: Country | None = None
    lead_source: Text | None = None
    status: Status | None = None
    has_opted_out_of_email: bool | None = None
    notes: LongText | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_account_reference(self) -> ContactIn:
        if self.account_id is not None and self.account_external_id is not None:
            raise ValueError("give account_id or account_external_id, not both")
        return self


def _resolve_account(tx: Tx, fields: Row) -> Row:
    """``account_external_id`` -> ``account_id`` (422 if there is no such account)."""
    if "account_external_id" not in fields:
        return fields
    external = fields.pop("account_external_id")
    if external is None:
        raise UnprocessableError("account_external_id may not be null")
    account = tx.find(ACCOUNTS, "external_id", external)
    if account is None:
        raise UnprocessableError(f"no account with external id {external!r}")
    fields["account_id"] = account["account_id"]
    return fields


class MergeIn(BaseModel):
    """Body of ``POST /v1/accounts/{survivor}/merge``: the account that goes away."""

    model_config = ConfigDict(extra="forbid")
    retired_id: uuid.UUID | None = None
    retired_external_id: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MergeIn:
        if (self.retired_id is None) == (self.retired_external_id is None):
            raise ValueError("give exactly one of retired_id, retired_external_id")
        return self


CHILD_TABLES = (("public.contacts", "account_id"), ("public.opportunities", "account_id"))


def merge_accounts(
    store: Store, survivor_text: str, body: MergeIn, *, by: str, if_match: str | None = None
) -> dict[str, Any]:
    """Re-point the retired account's contacts and opportunities to the survivor; deactivate it.

    One transaction; both rows locked in key order (two opposite merges cannot deadlock). Repeating
    a merge moves nothing and leaves the retired account as it is. ``If-Match`` applies to the survivor.
    """
    try:
        survivor_id = uuid.UUID(survivor_text)
    except ValueError as exc:
        raise NotFoundError(f"no accounts {survivor_text!r}") from exc
    with store.transaction(by) as tx:
        if body.retired_id is not None:
            retired_id = body.retired_id
        else:
            found = tx.find(ACCOUNTS, "external_id", body.retired_external_id)
            if found is None:
                raise NotFoundError(f"no accounts with external id {body.retired_external_id!r}")
            retired_id = found["account_id"]
        if retired_id == survivor_id:
            raise ConflictError("an account cannot be merged into itself")
        rows = {k: tx.get(ACCOUNTS, k, lock=True) for k in sorted((survivor_id, retired_id))}
        survivor, retired = rows[survivor_id], rows[retired_id]
        if survivor is None:
            raise NotFoundError(f"no accounts {survivor_text!r}")
        if retired is None:
            raise NotFoundError(f"no accounts {retired_id}")
        check_preconditions(survivor, if_match, None)
        moved = {
            table.split(".")[1]: tx.repoint(table, column, retired_id, survivor_id)
            for table, column in CHILD_TABLES
        }
        if retired["status"] != "Inactive":
            retired = tx.update(ACCOUNTS, retired_id, {"status": "Inactive"})
    return {"survivor": jsonable(survivor), "retired": jsonable(retired), "moved": moved}


async def _token_form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw or b"{}")
        except ValueError as exc:
            raise BadRequestError("body is not valid JSON") from exc
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}


def create_app(settings: Settings, store: Store, *, clock: Clock = time.monotonic) -> FastAPI:
    """The CRM API over ``store``; credentials from the environment variables named in settings."""
    cfg = settings.demo_apis
    api = cfg.crm
    issuer = TokenIssuer(
        {api.client_id: env_secret(api.secret_env, "demo_apis.crm.secret_env")},
        ttl_s=cfg.token_ttl_s,
        clock=clock,
    )
    state = ServiceState(
        system=SYSTEM,
        authenticate=issuer.authenticate,
        limiter=RateLimiter(api.rate_limit_per_s, api.rate_limit_burst, clock=clock),
        admin_token=env_secret(cfg.admin_token_env, "demo_apis.admin_token_env"),
        ping=store.ping,
        batch_max=cfg.batch_max,
        page_size_max=cfg.page_size_max,
    )
    app = create_base_app(
        state,
        title="goldstream demo CRM",
        description=__doc__ or "",
    )

    @app.post("/oauth/token", tags=["auth"], summary="OAuth2 client-credentials grant")
    async def token(request: Request) -> JSONResponse:
        client_id, secret = client_credentials(
            await _token_form(request), request.headers.get("authorization")
        )
        body = issuer.issue(client_id, secret)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    accounts = ResourceService(ACCOUNTS, store)
    contacts = ResourceService(CONTACTS, store, resolve=_resolve_account)

    @app.post("/v1/accounts/{key}/merge", tags=["accounts"], summary="Merge a retired account into this one")
    async def merge(request: Request, caller: Caller, key: str, if_match: IfMatch = None) -> JSONResponse:
        async def compute() -> JSONResponse:
            body = await parse_body(request, MergeIn)
            result = await run_in_threadpool(
                merge_accounts, store, key, body, by=caller.client_id, if_match=if_match
            )
            return JSONResponse(result, headers={"ETag": etag(result["survivor"]["version"])})

        return await idempotent(request, caller, compute)

    add_resource_routes(
        app, accounts, AccountIn, paging="cursor", status_actions=("activate", "deactivate"), hard_delete=True
    )
    add_resource_routes(
        app, contacts, ContactIn, paging="cursor", status_actions=("activate", "deactivate"), hard_delete=True
    )
    return app
