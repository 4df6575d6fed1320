"""Resource semantics shared by the CRM and the ERP, independent of storage, and their HTTP routes.

* **Upsert by external id** (``PUT .../by-external-id/{external_id}``): the external id is the
  caller's key for the record (goldstream's golden id). Absent -> created (201, version 1). Present
  -> the fields in the body are set, fields not in the body are left alone. If nothing would change,
  nothing is written: 200, same version, no database change (so Debezium sees nothing either).
* **Optimistic concurrency**: every record has a ``version`` (bumped by every write, by anyone) and
  ``ETag: "<version>"``. ``If-Match`` on a write must name the current version, else 412 with the
  current ETag; ``If-None-Match: *`` on an upsert means "create only".
* **Batch** (``POST .../batch``): up to ``batch_max`` upserts, each in its own transaction, so one bad
  record does not fail the rest: 200 with one result per input, in input order.
* **Writer**: every write is recorded as made by the authenticated client (``last_modified_by``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cdc.demo.api.common import (
    ApiError,
    BadRequestError,
    ConflictError,
    IdempotencyCache,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    Principal,
    ServiceState,
    UnprocessableError,
    decode_cursor,
    encode_cursor,
    etag,
    guard,
    if_match_ok,
    if_none_match_star,
    json_body,
    jsonable,
    request_hash,
    state_of,
    validation_details,
)
from cdc.demo.api.store import ResourceSpec, Row, Store, Tx

ExternalId = Annotated[str, Field(min_length=1, max_length=200)]
Resolver = Callable[[Tx, Row], Row]
"""Turns virtual input fields into columns inside the write's transaction (``account_external_id``)."""


class Outcome(StrEnum):
    """What a write did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Result:
    """A record after a write, and what the write did."""

    row: Row
    outcome: Outcome


class WriteModel(BaseModel):
    """Base of the write payloads: unknown fields are errors, fields left out stay unchanged."""

    model_config = ConfigDict(extra="forbid")


class BatchItem(BaseModel):
    """One record of a batch upsert."""

    model_config = ConfigDict(extra="forbid")
    external_id: ExternalId
    properties: dict[str, Any]
    if_match: str | None = Field(default=None, description='like the If-Match header: "3"')


def fields_of(model: type[WriteModel], data: Any) -> Row:
    """The fields present in ``data``, validated by ``model``; 422 with field errors otherwise."""
    try:
        return model.model_validate(data).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise UnprocessableError("invalid record", details=validation_details(exc)) from exc


class ResourceService:
    """Reads and writes of one resource through a :class:`~cdc.demo.api.store.Store` (blocking)."""

    def __init__(self, spec: ResourceSpec, store: Store, *, resolve: Resolver | None = None) -> None:
        self.spec = spec
        self.store = store
        self._resolve = resolve

    # --- reads ---

    def key(self, text: str) -> Any:
        """The primary key from its path text; 404 if it cannot be one."""
        try:
            return self.spec.parse_key(text)
        except ValueError as exc:
            raise NotFoundError(f"no {self.spec.name} {text!r}") from exc

    def get(self, key_text: str, *, by: str) -> Row:
        """The record; 404 if absent."""
        key = self.key(key_text)
        with self.store.transaction(by) as tx:
            row = tx.get(self.spec, key)
        if row is None:
            raise NotFoundError(f"no {self.spec.name} {key_text!r}")
        return row

    def get_external(self, external_id: str, *, by: str) -> Row:
        """The record with this external id; 404 if absent."""
        with self.store.transaction(by) as tx:
            row = tx.find(self.spec, "external_id", external_id)
        if row is None:
            raise NotFoundError(f"no {self.spec.name} with external id {external_id!r}")
        return row

    def list_after(self, cursor: str | None, page_size: int, *, by: str) -> tuple[list[Row], str | None]:
        """One page in key order and the cursor of the next (None on the last page)."""
        after = self.key(decode_cursor(cursor)) if cursor else None
        with self.store.transaction(by) as tx:
            rows = tx.page_after(self.spec, after, page_size + 1)
        more = len(rows) > page_size
        rows = rows[:page_size]
        return rows, (encode_cursor(str(rows[-1][self.spec.key])) if more else None)

    def list_offset(self, offset: int, limit: int, *, by: str) -> tuple[list[Row], int]:
        """Rows ``offset .. offset+limit`` in key order and the total."""
        with self.store.transaction(by) as tx:
            return tx.page_offset(self.spec, offset, limit)

    # --- writes ---

    def _checked(self, fields: Row) -> Row:
        nulls = sorted(c for c, v in fields.items() if v is None and c in self.spec.not_null)
        if nulls:
            raise UnprocessableError(
                "fields that cannot be null",
                details=[{"field": c, "message": "may not be null"} for c in nulls],
            )
        return fields

    def _apply(self, tx: Tx, row: Row, values: Row) -> Result:
        changes = {c: v for c, v in values.items() if row.get(c) != v}
        if not changes:
            return Result(row, Outcome.UNCHANGED)
        return Result(tx.update(self.spec, row[self.spec.key], changes), Outcome.UPDATED)

    def _resolved(self, tx: Tx, fields: Row) -> Row:
        return self._checked(self._resolve(tx, dict(fields)) if self._resolve else dict(fields))

    def _upsert_in(
        self,
        tx: Tx,
        external_id: str,
        fields: Row,
        *,
        if_match: str | None,
        if_none_match: str | None,
    ) -> Result:
        """The upsert's reads, checks and write inside ``tx``.

        Every refusal of its own (preconditions, required fields, a missing referenced account) is
        raised before the write, so a batch transaction stays usable after it.
        """
        fields = self._checked(fields)
        if "external_id" in fields and fields["external_id"] != external_id:
            raise UnprocessableError("external_id in the body differs from the one in the path")
        row = tx.find(self.spec, "external_id", external_id, lock=True)
        check_preconditions(row, if_match, if_none_match)
        values = self._resolved(tx, fields)
        if row is not None:
            return self._apply(tx, row, values)
        values = {**copy.deepcopy(dict(self.spec.create_defaults)), **values}
        values["external_id"] = external_id
        missing = [c for c in self.spec.required if values.get(c) is None]
        if missing:
            raise UnprocessableError(
                f"cannot create {self.spec.name} {external_id!r}: required fields missing",
                details=[{"field": c, "message": "required to create"} for c in missing],
            )
        return Result(tx.insert(self.spec, values), Outcome.CREATED)

    def upsert(
        self,
        external_id: str,
        fields: Row,
        *,
        by: str,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Result:
        """Create or update the record with ``external_id`` (see the module docstring)."""
        for attempt in (1, 2):
            try:
                with self.store.transaction(by) as tx:
                    return self._upsert_in(
                        tx, external_id, fields, if_match=if_match, if_none_match=if_none_match
                    )
            except ConflictError:
                # Two upserts of the same new external id raced; the loser updates what the winner
                # made. (Any other conflict, of an update, fails the same way again.)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def patch(self, key_text: str, fields: Row, *, by: str, if_match: str | None = None) -> Result:
        """Set ``fields`` on the record (``external_id`` may be set too: links an existing record)."""
        key = self.key(key_text)
        fields = self._checked(fields)
        with self.store.transaction(by) as tx:
            row = tx.get(self.spec, key, lock=True)
            if row is None:
                raise NotFoundError(f"no {self.spec.name} {key_text!r}")
            check_preconditions(row, if_match, None)
            return self._apply(tx, row, self._resolved(tx, fields))

    def set_active(self, key_text: str, active: bool, *, by: str, if_match: str | None = None) -> Result:
        """Activate or deactivate (block / unblock) the record; unchanged if it already is."""
        assert self.spec.status is not None
        column, on, off = self.spec.status
        return self.patch(key_text, {column: on if active else off}, by=by, if_match=if_match)

    def delete(self, key_text: str, *, by: str, if_match: str | None = None) -> None:
        """Delete the record (its children cascade); 404 if absent."""
        key = self.key(key_text)
        with self.store.transaction(by) as tx:
            row = tx.get(self.spec, key, lock=True)
            if row is None:
                raise NotFoundError(f"no {self.spec.name} {key_text!r}")
            check_preconditions(row, if_match, None)
            tx.delete(self.spec, key)

    def batch(self, items: Sequence[Any], model: type[WriteModel], *, by: str) -> list[dict[str, Any]]:
        """Upsert each item; one result per item, failures included.

        Fast path: the whole batch in one transaction (one commit instead of one per record: the
        per-record transactions were most of the endpoint's time, ~1.5 ms a record). An item refused
        by the checks (invalid, precondition, missing field) fails alone and the others still commit.
        When a *write* fails in the database (a unique or foreign-key violation, a lock timeout, a
        deadlock) or the commit does, the transaction is rolled back and the batch is done again
        item by item, each in its own transaction, so one bad record never blocks the rest.
        """
        parsed = [_parse_item(item) for item in items]
        try:
            with self.store.transaction(by) as tx:
                guarded = _WriteGuard(tx)
                ids = [p.external_id for _, p in parsed if not isinstance(p, ApiError)]
                guarded.prefetch(self.spec, list(dict.fromkeys(ids)))

                def in_batch(external_id: str, fields: Row, if_match: str | None) -> Result:
                    return self._upsert_in(
                        guarded, external_id, fields, if_match=if_match, if_none_match=None
                    )

                results = [self._batch_result(i, item, model, in_batch) for i, item in enumerate(parsed)]
            return results
        except (ApiError, _WriteFailedError):
            pass  # rolled back: nothing of the batch was written

        def alone(external_id: str, fields: Row, if_match: str | None) -> Result:
            return self.upsert(external_id, fields, by=by, if_match=if_match)

        return [self._batch_result(i, item, model, alone) for i, item in enumerate(parsed)]

    def _batch_result(
        self,
        index: int,
        item: tuple[Any, BatchItem | ApiError],
        model: type[WriteModel],
        write: Callable[[str, Row, str | None], Result],
    ) -> dict[str, Any]:
        """One item's entry in the batch response (its refusal, or what the write did)."""
        external_id, parsed = item
        try:
            if isinstance(parsed, ApiError):
                raise parsed
            result = write(parsed.external_id, fields_of(model, parsed.properties), parsed.if_match)
        except ApiError as exc:
            return {"index": index, "external_id": external_id, "status": exc.status, **exc.body()}
        return {
            "index": index,
            "external_id": parsed.external_id,
            "status": 201 if result.outcome is Outcome.CREATED else 200,
            "outcome": result.outcome.value,
            "id": jsonable(result.row[self.spec.key]),
            "version": result.row["version"],
        }


def _parse_item(item: Any) -> tuple[Any, BatchItem | ApiError]:
    """A raw batch item's external id (as sent, for the response) and the item or its refusal."""
    external_id = item.get("external_id") if isinstance(item, dict) else None
    try:
        return external_id, BatchItem.model_validate(item)
    except ValidationError as exc:
        return external_id, UnprocessableError("invalid batch item", details=validation_details(exc))


class _WriteFailedError(Exception):
    """A database write failed inside a batch transaction: roll it back, redo item by item."""


class _WriteGuard:
    """A :class:`Tx` whose writes raise :class:`_WriteFailedError` instead of their own error.

    In a batch transaction a refusal of the checks fails one item and the transaction goes on; a
    failed write must end the transaction instead (PostgreSQL has aborted it). Wrapping the writes
    keeps the two apart without relying on the error types, which both kinds share.

    :meth:`prefetch` reads (and locks) the rows of every external id of the batch with one statement
    up front; :meth:`find` then answers those ids from memory, kept current by this guard's own
    writes (one SELECT ... FOR UPDATE per item was a third of a batch's statements).
    """

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._spec: ResourceSpec | None = None
        self._known: dict[Any, Row | None] = {}

    def prefetch(self, spec: ResourceSpec, external_ids: Sequence[Any]) -> None:
        """Read and lock ``spec``'s rows with these external ids (missing ones are remembered too)."""
        found = self._tx.find_all(spec, "external_id", external_ids, lock=True)
        self._spec = spec
        self._known = {x: found.get(x) for x in external_ids}

    def _remember(self, spec: ResourceSpec, row: Row) -> Row:
        if spec is self._spec and row.get("external_id") is not None:
            self._known[row["external_id"]] = row
        return row

    def get(self, spec: ResourceSpec, key: Any, *, lock: bool = False) -> Row | None:
        """As :meth:`Tx.get`."""
        return self._tx.get(spec, key, lock=lock)

    def find(self, spec: ResourceSpec, column: str, value: Any, *, lock: bool = False) -> Row | None:
        """As :meth:`Tx.find` (answered from :meth:`prefetch` where it can)."""
        if spec is self._spec and column == "external_id" and value in self._known:
            row = self._known[value]
            return dict(row) if row is not None else None
        return self._tx.find(spec, column, value, lock=lock)

    def find_all(
        self, spec: ResourceSpec, column: str, values: Sequence[Any], *, lock: bool = False
    ) -> dict[Any, Row]:
        """As :meth:`Tx.find_all`."""
        return self._tx.find_all(spec, column, values, lock=lock)

    def insert(self, spec: ResourceSpec, values: Row) -> Row:
        """As :meth:`Tx.insert`; a failure ends the batch transaction."""
        try:
            return self._remember(spec, self._tx.insert(spec, values))
        except Exception as exc:
            raise _WriteFailedError(str(exc)) from exc

    def update(self, spec: ResourceSpec, key: Any, values: Row) -> Row:
        """As :meth:`Tx.update`; a failure ends the batch transaction."""
        try:
            return self._remember(spec, self._tx.update(spec, key, values))
        except Exception as exc:
            raise _WriteFailedError(str(exc)) from exc

    def delete(self, spec: ResourceSpec, key: Any) -> bool:
        """As :meth:`Tx.delete`; a failure ends the batch transaction."""
        try:
            return self._tx.delete(spec, key)
        except Exception as exc:
            raise _WriteFailedError(str(exc)) from exc

    def page_after(self, spec: ResourceSpec, after: Any | None, limit: int) -> list[Row]:
        """As :meth:`Tx.page_after`."""
        return self._tx.page_after(spec, after, limit)

    def page_offset(self, spec: ResourceSpec, offset: int, limit: int) -> tuple[list[Row], int]:
        """As :meth:`Tx.page_offset`."""
        return self._tx.page_offset(spec, offset, limit)

    def repoint(self, table: str, column: str, old: Any, new: Any) -> int:
        """As :meth:`Tx.repoint`; a failure ends the batch transaction."""
        try:
            return self._tx.repoint(table, column, old, new)
        except Exception as exc:
            raise _WriteFailedError(str(exc)) from exc


def check_preconditions(row: Row | None, if_match: str | None, if_none_match: str | None) -> None:
    """412 (with the current ETag) unless ``If-Match`` / ``If-None-Match: *`` hold for ``row``."""
    version = row["version"] if row is not None else None
    headers = {"ETag": etag(version)} if version is not None else {}
    if if_none_match_star(if_none_match) and row is not None:
        raise PreconditionFailedError(
            "the record exists (If-None-Match: *)", details={"current_version": version}, headers=headers
        )
    if not if_match_ok(if_match, version):
        message = "the record does not exist" if row is None else "stale version (If-Match)"
        raise PreconditionFailedError(message, details={"current_version": version}, headers=headers)


# --- HTTP ------------------------------------------------------------------------------------------


def record_response(
    row: Row, *, status: int = 200, outcome: Outcome | None = None, location: str = ""
) -> JSONResponse:
    """A record with its ``ETag`` (and ``X-Outcome`` after a write, ``Location`` after a create)."""
    headers = {"ETag": etag(row["version"])}
    if outcome is not None:
        headers["X-Outcome"] = outcome.value
    if location:
        headers["Location"] = location
    return JSONResponse(jsonable(row), status_code=status, headers=headers)


async def idempotent(request: Request, principal: Principal, compute: Callable[[], Any]) -> JSONResponse:
    """Run a POST once per ``Idempotency-Key`` (when the client sends one) and replay its response."""
    key = request.headers.get(IdempotencyCache.HEADER)
    if not key:
        response: JSONResponse = await compute()
        return response
    cache = state_of(request).idempotency
    fingerprint = request_hash(await request.body())
    replay = cache.replay(principal.client_id, request.url.path, key, fingerprint)
    if replay is not None:
        return replay
    response = await compute()
    cache.store(principal.client_id, request.url.path, key, fingerprint, response)
    return response


DEFAULT_PAGE_SIZE = 100
_SIZE_DOC = f"records per page: default {DEFAULT_PAGE_SIZE}, at most demo_apis.page_size_max"
Caller = Annotated[Principal, Depends(guard)]
IfMatch = Annotated[str | None, Header(description='current ETag, e.g. "3"; 412 if stale')]


def add_resource_routes(
    app: FastAPI,
    service: ResourceService,
    model: type[WriteModel],
    *,
    paging: Literal["cursor", "offset"],
    status_actions: tuple[str, str] | None = None,
    hard_delete: bool = False,
) -> None:
    """The standard routes of one resource under ``/v1/<name>``.

    ``status_actions`` names the POST actions that activate / deactivate (``("activate",
    "deactivate")``, ``("unblock", "block")``).
    """
    name = service.spec.name
    base = f"/v1/{name}"
    tags: list[str | Any] = [name]
    body_schema = {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}}}}
    state_limits: ServiceState = app.state.service

    def _page_size(requested: int | None, name: str) -> int:
        if requested is None:
            return min(DEFAULT_PAGE_SIZE, state_limits.page_size_max)
        if requested > state_limits.page_size_max:
            raise UnprocessableError(f"{name} is at most {state_limits.page_size_max}")
        return requested

    def location(row: Row) -> str:
        return f"{base}/{jsonable(row[service.spec.key])}"

    if paging == "cursor":

        @app.get(base, tags=tags, summary=f"List {name} (cursor pagination)")
        async def list_cursor(
            caller: Caller,
            page_size: Annotated[int | None, Query(ge=1, description=_SIZE_DOC)] = None,
            cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        ) -> JSONResponse:
            size = _page_size(page_size, "page_size")
            rows, next_cursor = await run_in_threadpool(service.list_after, cursor, size, by=caller.client_id)
            return JSONResponse({"items": jsonable(rows), "next_cursor": next_cursor})

    else:

        @app.get(base, tags=tags, summary=f"List {name} (offset pagination)")
        async def list_offset(
            caller: Caller,
            offset: Annotated[int, Query(ge=0)] = 0,
            limit: Annotated[int | None, Query(ge=1, description=_SIZE_DOC)] = None,
        ) -> JSONResponse:
            limit = _page_size(limit, "limit")
            rows, total = await run_in_threadpool(service.list_offset, offset, limit, by=caller.client_id)
            next_offset = offset + len(rows) if offset + len(rows) < total else None
            body = {
                "items": jsonable(rows),
                "offset": offset,
                "limit": limit,
                "total": total,
                "next_offset": next_offset,
            }
            return JSONResponse(body)

    @app.get(f"{base}/by-external-id/{{external_id}}", tags=tags, summary=f"Get one of {name} by external id")
    async def get_external(caller: Caller, external_id: str) -> JSONResponse:
        return record_response(
            await run_in_threadpool(service.get_external, external_id, by=caller.client_id)
        )

    @app.put(
        f"{base}/by-external-id/{{external_id}}",
        tags=tags,
        summary=f"Upsert one of {name} by external id",
        openapi_extra=body_schema,
    )
    async def upsert(
        request: Request,
        caller: Caller,
        external_id: str,
        if_match: IfMatch = None,
        if_none_match: Annotated[str | None, Header(description="* = create only")] = None,
    ) -> JSONResponse:
        fields = fields_of(model, await json_body(request))
        result: Result = await run_in_threadpool(
            service.upsert,
            external_id,
            fields,
            by=caller.client_id,
            if_match=if_match,
            if_none_match=if_none_match,
        )
        created = result.outcome is Outcome.CREATED
        return record_response(
            result.row,
            status=201 if created else 200,
            outcome=result.outcome,
            location=location(result.row) if created else "",
        )

    @app.post(
        f"{base}/batch",
        tags=tags,
        summary=f"Upsert up to batch_max {name} by external id; per-record results",
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "inputs": {"type": "array", "items": BatchItem.model_json_schema()}
                            },
                            "required": ["inputs"],
                        }
                    }
                }
            }
        },
    )
    async def batch(request: Request, caller: Caller) -> JSONResponse:
        async def compute() -> JSONResponse:
            body = await json_body(request)
            inputs = body.get("inputs") if isinstance(body, dict) else None
            if not isinstance(inputs, list):
                raise BadRequestError(
                    'expected {"inputs": [{"external_id", "properties", "if_match"?}, ...]}'
                )
            limit = state_of(request).batch_max
            if len(inputs) > limit:
                raise PayloadTooLargeError(f"{len(inputs)} records; at most {limit} per batch")
            results = await run_in_threadpool(service.batch, inputs, model, by=caller.client_id)
            counts = {k: 0 for k in ("created", "updated", "unchanged", "failed")}
            for r in results:
                counts[r.get("outcome", "failed")] += 1
            return JSONResponse({"results": results, **counts})

        return await idempotent(request, caller, compute)

    @app.get(f"{base}/{{key}}", tags=tags, summary=f"Get one of {name}")
    async def get_one(
        caller: Caller, key: str, if_none_match: Annotated[str | None, Header()] = None
    ) -> Response:
        row = await run_in_threadpool(service.get, key, by=caller.client_id)
        if if_none_match is not None and etag(row["version"]) in [
            t.strip() for t in if_none_match.split(",")
        ]:
            return Response(status_code=304, headers={"ETag": etag(row["version"])})
        return record_response(row)

    @app.patch(f"{base}/{{key}}", tags=tags, summary=f"Change one of {name}", openapi_extra=body_schema)
    async def patch(request: Request, caller: Caller, key: str, if_match: IfMatch = None) -> JSONResponse:
        fields = fields_of(model, await json_body(request))
        result: Result = await run_in_threadpool(
            service.patch, key, fields, by=caller.client_id, if_match=if_match
        )
        return record_response(result.row, outcome=result.outcome)

    if status_actions is not None:
        for action, active in zip(status_actions, (True, False), strict=True):
            _add_status_action(app, service, base, action, active, tags)

    if hard_delete:

        @app.delete(f"{base}/{{key}}", tags=tags, summary=f"Delete one of {name} (children cascade)")
        async def delete(caller: Caller, key: str, if_match: IfMatch = None) -> Response:
            await run_in_threadpool(service.delete, key, by=caller.client_id, if_match=if_match)
            return Response(status_code=204)


def _add_status_action(
    app: FastAPI, service: ResourceService, base: str, action: str, active: bool, tags: list[str | Any]
) -> None:
    @app.post(
        f"{base}/{{key}}/{action}", tags=tags, summary=f"{action.capitalize()} one of {service.spec.name}"
    )
    async def set_status(caller: Caller, key: str, if_match: IfMatch = None) -> JSONResponse:
        result: Result = await run_in_threadpool(
            service.set_active, key, active, by=caller.client_id, if_match=if_match
        )
        return record_response(result.row, outcome=result.outcome)
