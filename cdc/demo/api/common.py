"""What the demo CRM and ERP APIs share: errors, auth, rate limits, fault injection, pagination, ETags.

Request path through one service::

    faults middleware      outage -> 503 + Retry-After; latency; injected errors (before or after
                           the handler ran, so "the write happened but the client saw a 500" is testable)
    guard dependency       authenticate (OAuth2 bearer token / X-API-Key) -> Principal,
                           then the client's token bucket -> 429 + Retry-After
    handler                resources.ResourceService in a worker thread (blocking database calls)

``/health`` and ``/admin/*`` bypass faults, auth and rate limits; ``/admin/*`` needs ``X-Admin-Token``.
All state here (tokens, buckets, faults, idempotency keys, counters) lives in the one process:
restarting a service forgets it, which clients must survive anyway (401 -> fetch a new token).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import random
import secrets
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic``); tests pass a fake."""

# Paths that stay reachable during an injected outage and need no client credentials.
_OPERATOR_PREFIXES = ("/health", "/admin", "/docs", "/openapi.json", "/redoc")


# --- errors ----------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error with its HTTP status; rendered as ``{"error": {"code", "message", "details"}}``."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, *, details: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON error document."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}

    def response(self) -> JSONResponse:
        """This error as a response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class BadRequestError(ApiError):
    """400: malformed request (bad cursor, bad JSON)."""

    status, code = 400, "bad_request"


class UnauthorizedError(ApiError):
    """401: missing, unknown or expired credentials."""

    status, code = 401, "unauthorized"


class NotFoundError(ApiError):
    """404: no such record."""

    status, code = 404, "not_found"


class ConflictError(ApiError):
    """409: the write contradicts the current state (duplicate external id, merge into itself)."""

    status, code = 409, "conflict"


class PreconditionFailedError(ApiError):
    """412: ``If-Match`` names a version that is not the current one."""

    status, code = 412, "precondition_failed"


class PayloadTooLargeError(ApiError):
    """413: more batch records than allowed."""

    status, code = 413, "payload_too_large"


class UnprocessableError(ApiError):
    """422: the record is invalid (unknown field, wrong type, missing required field)."""

    status, code = 422, "invalid"


class TooManyRequestsError(ApiError):
    """429: the client's rate limit is exhausted; ``Retry-After`` says when to come back."""

    status, code = 429, "rate_limited"


class UnavailableError(ApiError):
    """503: the database (or an injected outage) makes the service unavailable."""

    status, code = 503, "unavailable"


def validation_details(err: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"field": "a.b", "message": ...}]`` (no input values: they may be personal)."""
    return [
        {"field": ".".join(str(p) for p in item["loc"]) or "<body>", "message": item["msg"]}
        for item in err.errors()
    ]


# --- JSON ------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Database values as JSON: decimals as strings (exact), dates ISO, UUIDs as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# --- credentials and principals --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: recorded as ``last_modified_by`` on every row the call writes."""

    client_id: str


def env_secret(name: str, what: str) -> str:
    """A credential from the environment; a missing one is a ConfigError naming the variable only."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError(
            f"{what}: environment variable {name} is not set "
            "(`goldstream stack up` generates one into <state>/secrets.env)"
        )
    return value


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class TokenIssuer:
    """OAuth2 client-credentials grant: opaque bearer tokens with an expiry, kept in memory (hashed)."""

    def __init__(self, clients: Mapping[str, str], *, ttl_s: int, clock: Clock = time.monotonic) -> None:
        self._clients = {cid: _digest(secret) for cid, secret in clients.items()}
        self._ttl = ttl_s
        self._clock = clock
        self._tokens: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, client_id: str, client_secret: str) -> dict[str, Any]:
        """A token response (RFC 6749 section 5.1); 401 ``invalid_client`` on bad credentials."""
        expected = self._clients.get(client_id)
        # Compare digests in constant time, and do the same work for an unknown client id.
        if not hmac.compare_digest(expected or b"\0" * 32, _digest(client_secret)) or expected is None:
            raise _oauth_error(401, "invalid_client", "unknown client or wrong secret")
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}  # drop expired
            self._tokens[_digest(token)] = (client_id, now + self._ttl)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self._ttl}

    def authenticate(self, request: Request) -> Principal:
        """The principal of ``Authorization: Bearer <token>``; 401 with ``WWW-Authenticate`` otherwise."""
        token = _bearer(request)
        if token is None:
            raise UnauthorizedError(
                "missing bearer token (POST /oauth/token first)", headers={"WWW-Authenticate": "Bearer"}
            )
        with self._lock:
            entry = self._tokens.get(_digest(token))
        if entry is None or entry[1] <= self._clock():
            raise UnauthorizedError(
                "invalid or expired access token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return Principal(entry[0])


class OAuthError(ApiError):
    """An OAuth2 token-endpoint error: the body is ``{"error", "error_description"}`` (RFC 6749 5.2)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = error
        if status == 401:
            self.headers["WWW-Authenticate"] = 'Basic realm="oauth"'

    def body(self) -> dict[str, Any]:
        """The RFC 6749 error document."""
        return {"error": self.code, "error_description": self.message}


def _oauth_error(status: int, error: str, description: str) -> OAuthError:
    return OAuthError(status, error, description)


def client_credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str, str]:
    """``(client_id, client_secret)`` from HTTP Basic auth or the form body (RFC 6749 2.3.1)."""
    if form.get("grant_type") != "client_credentials":
        raise _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _oauth_error(401, "invalid_client", "malformed Basic credentials") from exc
        basic_id, sep, basic_secret = decoded.partition(":")
        if sep:
            return basic_id, basic_secret
    cid, secret = form.get("client_id"), form.get("client_secret")
    if not cid or not secret:
        raise _oauth_error(401, "invalid_client", "client_id and client_secret are required")
    return cid, secret


class ApiKeys:
    """``X-API-Key`` authentication: each key belongs to one client id."""

    HEADER = "X-API-Key"

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = [(_digest(key), cid) for key, cid in keys.items()]

    def authenticate(self, request: Request) -> Principal:
        """The principal of the request's API key; 401 if it is missing or unknown."""
        key = request.headers.get(self.HEADER)
        if not key:
            raise UnauthorizedError(f"missing {self.HEADER} header")
        digest = _digest(key)
        for known, cid in self._keys:
            if hmac.compare_digest(known, digest):
                return Principal(cid)
        raise UnauthorizedError("unknown API key")


# --- rate limits -----------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per client: ``rate`` tokens per second, at most ``burst``; one request costs one.

    ``rate == 0`` means unlimited. :meth:`configure` changes the limit at run time (``/admin``).
    """

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self.rate = rate
        self.burst = burst

    def configure(self, rate: float, burst: int) -> None:
        """New limits for every client; buckets start full."""
        with self._lock:
            self.rate, self.burst = rate, burst
            self._buckets.clear()

    def check(self, client: str) -> None:
        """Take one token for ``client``, or raise a 429 with ``Retry-After`` (whole seconds)."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        retry_after = max(1, math.ceil(wait))
        raise TooManyRequestsError(
            f"rate limit of {self.rate:g} requests/s (burst {self.burst}) exceeded",
            details={"retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )

    def describe(self) -> dict[str, Any]:
        """The current limit."""
        return {"requests_per_second": self.rate, "burst": self.burst, "unlimited": self.rate <= 0}


class RateLimitIn(BaseModel):
    """Body of ``PUT /admin/rate-limit``."""

    model_config = ConfigDict(extra="forbid")
    requests_per_second: float = Field(ge=0, description="0 lifts the limit")
    burst: int = Field(default=1, ge=1, le=100_000)


# --- fault injection -------------------------------------------------------------------------------


class FaultsIn(BaseModel):
    """Body of ``POST /admin/faults``: what to inject into every business call from now on."""

    model_config = ConfigDict(extra="forbid")
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="share of calls that fail")
    status_code: int = Field(default=500, ge=400, le=599, description="status of an injected failure")
    error_phase: Literal["before", "after"] = Field(
        default="before",
        description="before: the call fails without effect; after: the handler ran (the write is "
        "committed) and the client still gets the error, as when a gateway times out",
    )
    latency_ms: int = Field(default=0, ge=0, le=120_000, description="added to every call")
    jitter_ms: int = Field(default=0, ge=0, le=120_000, description="plus a uniform 0..jitter_ms")
    outage: bool = Field(default=False, description="503 + Retry-After on every business call")
    retry_after_s: int = Field(default=5, ge=0, le=3600, description="Retry-After of 503/429 faults")
    duration_s: float | None = Field(default=None, gt=0, description="clear automatically after this")
    seed: int | None = Field(default=None, description="seed the error draws (reproducible tests)")


@dataclass
class _ActiveFaults:
    config: FaultsIn
    until: float | None
    rng: random.Random


class Faults:
    """The injected faults of one service (none by default)."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._active: _ActiveFaults | None = None

    def set(self, config: FaultsIn) -> None:
        """Replace the injected faults."""
        until = self._clock() + config.duration_s if config.duration_s else None
        with self._lock:
            self._active = _ActiveFaults(config, until, random.Random(config.seed))

    def clear(self) -> None:
        """Inject nothing any more."""
        with self._lock:
            self._active = None

    def current(self) -> FaultsIn | None:
        """The active faults, or None (an expired ``duration_s`` clears them)."""
        with self._lock:
            if self._active and self._active.until is not None and self._clock() >= self._active.until:
                self._active = None
            return self._active.config if self._active else None

    def plan(self) -> tuple[float, int | None, str]:
        """For one call: ``(delay seconds, failure status or None, phase)``."""
        with self._lock:
            active = self._active
            if active is None or (active.until is not None and self._clock() >= active.until):
                self._active = None
                return 0.0, None, "before"
            cfg = active.config
            delay = (cfg.latency_ms + (active.rng.uniform(0, cfg.jitter_ms) if cfg.jitter_ms else 0)) / 1000
            if cfg.outage:
                return delay, 503, "before"
            fail = cfg.error_rate > 0 and active.rng.random() < cfg.error_rate
            return delay, (cfg.status_code if fail else None), cfg.error_phase

    def describe(self) -> dict[str, Any] | None:
        """The active faults as JSON."""
        cfg = self.current()
        return cfg.model_dump() if cfg else None


def _fault_response(status: int, faults: Faults) -> JSONResponse:
    cfg = faults.current()
    retry = cfg.retry_after_s if cfg else 5
    headers = {"Retry-After": str(retry)} if status in (429, 503) else {}
    outage = bool(cfg and cfg.outage)
    message = "service unavailable (injected outage)" if outage else f"injected fault ({status})"
    body = {"error": {"code": "injected_outage" if outage else "injected_fault", "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


# --- pagination, ETags, idempotency ----------------------------------------------------------------


def encode_cursor(last_key: str) -> str:
    """An opaque cursor for "the page after ``last_key``"."""
    return base64.urlsafe_b64encode(f"k1:{last_key}".encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The key inside a cursor from :func:`encode_cursor`; 400 if it is not one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequestError("invalid cursor") from exc
    if not text.startswith("k1:"):
        raise BadRequestError("invalid cursor")
    return text[3:]


def etag(version: int) -> str:
    """The strong ETag of a record version: ``"7"``."""
    return f'"{version}"'


def _etags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def if_match_ok(header: str | None, version: int | None) -> bool:
    """RFC 9110 ``If-Match`` with strong comparison: ``*`` needs the record to exist.

    ``version`` is None when the record does not exist. A bare number (``7``) is accepted for
    ``"7"``; weak tags (``W/"7"``) never match, as the RFC says.
    """
    if header is None:
        return True
    if version is None:
        return False
    tags = _etags(header)
    return "*" in tags or any(tag in (etag(version), str(version)) for tag in tags)


def if_none_match_star(header: str | None) -> bool:
    """True for ``If-None-Match: *`` (create only: fail if the record exists)."""
    return header is not None and "*" in _etags(header)


def request_hash(body: bytes) -> str:
    """Fingerprint of a request body for idempotency-key reuse checks."""
    return hashlib.sha256(body).hexdigest()


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: Any
    headers: dict[str, str]


class IdempotencyCache:
    """``Idempotency-Key`` replay for POST calls: the same key returns the first response again.

    Keys are scoped to the client and the path; reusing a key with another body is a 422. Bounded
    (least recently used first out) and per process: a restarted service forgets its keys.
    """

    HEADER = "Idempotency-Key"

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], _Stored] = OrderedDict()
        self._lock = threading.Lock()

    def replay(self, client: str, path: str, key: str, fingerprint: str) -> JSONResponse | None:
        """The stored response for this key, or None if the key is new."""
        with self._lock:
            hit = self._items.get((client, path, key))
            if hit is not None:
                self._items.move_to_end((client, path, key))
        if hit is None:
            return None
        if hit.fingerprint != fingerprint:
            raise UnprocessableError(f"{self.HEADER} {key!r} was already used with a different request body")
        return JSONResponse(
            hit.body, status_code=hit.status, headers={**hit.headers, "Idempotent-Replayed": "true"}
        )

    def store(self, client: str, path: str, key: str, fingerprint: str, response: JSONResponse) -> None:
        """Remember a response (not 5xx: those are worth retrying for real)."""
        if response.status_code >= 500:
            return
        body = json.loads(bytes(response.body))
        headers = {k: v for k, v in response.headers.items() if k.lower() in ("etag", "location")}
        with self._lock:
            self._items[(client, path, key)] = _Stored(fingerprint, response.status_code, body, headers)
            self._items.move_to_end((client, path, key))
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)


# --- the service skeleton --------------------------------------------------------------------------


class Stats:
    """Calls per (method, route, status) since the start: lets tests see what a client really sent."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._lock = threading.Lock()

    def add(self, method: str, route: str, status: int) -> None:
        """Count one call."""
        with self._lock:
            self._counts[(method, route, status)] += 1

    def describe(self) -> list[dict[str, Any]]:
        """The counts as JSON rows."""
        with self._lock:
            items = sorted(self._counts.items())
        return [{"method": m, "route": r, "status": s, "count": n} for (m, r, s), n in items]

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._counts.clear()


@dataclass
class ServiceState:
    """Everything one API process holds besides its store; ``app.state.service``."""

    system: str
    authenticate: Callable[[Request], Principal]
    limiter: RateLimiter
    admin_token: str
    ping: Callable[[], bool]
    batch_max: int = 200
    page_size_max: int = 500
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    idempotency: IdempotencyCache = field(default_factory=IdempotencyCache)


def state_of(request: Request) -> ServiceState:
    """The :class:`ServiceState` of the app serving ``request``."""
    state: ServiceState = request.app.state.service
    return state


async def guard(request: Request) -> Principal:
    """FastAPI dependency of every business route: authenticate, then charge the rate limit."""
    state = state_of(request)
    principal = state.authenticate(request)
    state.limiter.check(principal.client_id)
    return principal


def _check_admin(request: Request) -> None:
    token = request.headers.get("X-Admin-Token", "")
    if not hmac.compare_digest(_digest(token), _digest(request.app.state.service.admin_token)):
        raise UnauthorizedError("X-Admin-Token missing or wrong")


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequestError("a JSON body is required")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequestError(f"body is not valid JSON: {exc}") from exc


async def parse_body(request: Request, model: type[M]) -> M:
    """The JSON body validated against ``model``; 400 for bad JSON, 422 with field errors otherwise."""
    data = await _json_body(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UnprocessableError("invalid request body", details=validation_details(exc)) from exc


async def json_body(request: Request) -> Any:
    """The JSON body, unvalidated (batch endpoints validate each record on its own)."""
    return await _json_body(request)


def create_base_app(state: ServiceState, *, title: str, description: str) -> FastAPI:
    """A FastAPI app with error handlers, fault injection, ``/health`` and ``/admin/*``."""
    app = FastAPI(title=title, description=description, version="1")
    app.state.service = state

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return UnprocessableError("invalid request", details=details).response()

    @app.middleware("http")
    async def _faults_and_stats(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        business = not request.url.path.startswith(_OPERATOR_PREFIXES)
        delay, status, phase = state.faults.plan() if business else (0.0, None, "before")
        if delay:
            await asyncio.sleep(delay)
        if status is not None and phase == "before":
            response: Response = _fault_response(status, state.faults)
        else:
            response = await call_next(request)
            if status is not None:
                response = _fault_response(status, state.faults)
        route = request.scope.get("route")
        state.stats.add(request.method, getattr(route, "path", request.url.path), response.status_code)
        return response

    @app.get("/health", tags=["operations"])
    def health() -> JSONResponse:
        """Liveness and readiness: 200 when the database answers, else 503. No credentials needed."""
        db = state.ping()
        body = {
            "status": "ok" if db else "degraded",
            "system": state.system,
            "database": db,
            "faults": state.faults.describe(),
            "rate_limit": state.limiter.describe(),
        }
        return JSONResponse(body, status_code=200 if db else 503)

    @app.get("/admin/faults", tags=["admin"])
    async def get_faults(request: Request) -> JSONResponse:
        """The injected faults (null when none)."""
        _check_admin(request)
        return JSONResponse({"faults": state.faults.describe()})

    @app.post("/admin/faults", tags=["admin"])
    async def set_faults(request: Request) -> JSONResponse:
        """Inject faults into every business call (replaces what was set before)."""
        _check_admin(request)
        state.faults.set(await parse_body(request, FaultsIn))
        return JSONResponse({"faults": state.faults.describe()})

    @app.delete("/admin/faults", tags=["admin"])
    async def clear_faults(request: Request) -> Response:
        """Stop injecting faults."""
        _check_admin(request)
        state.faults.clear()
        return Response(status_code=204)

    @app.get("/admin/rate-limit", tags=["admin"])
    async def get_rate_limit(request: Request) -> JSONResponse:
        """The current rate limit."""
        _check_admin(request)
        return JSONResponse(state.limiter.describe())

    @app.put("/admin/rate-limit", tags=["admin"])
    async def set_rate_limit(request: Request) -> JSONResponse:
        """Change the rate limit (``requests_per_second: 0`` lifts it)."""
        _check_admin(request)
        body = await parse_body(request, RateLimitIn)
        state.limiter.configure(body.requests_per_second, body.burst)
        return JSONResponse(state.limiter.describe())

    @app.delete("/admin/rate-limit", tags=["admin"])
    async def lift_rate_limit(request: Request) -> JSONResponse:
        """Lift the rate limit (benchmarks) until the next PUT or a restart."""
        _check_admin(request)
        state.limiter.configure(0.0, state.limiter.burst)
        return JSONResponse(state.limiter.describe())

    @app.get("/admin/stats", tags=["admin"])
    async def get_stats(request: Request) -> JSONResponse:
        """Calls per method, route and status since the start (or the last reset)."""
        _check_admin(request)
        return JSONResponse({"calls": state.stats.describe()})

    @app.delete("/admin/stats", tags=["admin"])
    async def reset_stats(request: Request) -> Response:
        """Reset the call counters."""
        _check_admin(request)
        state.stats.reset()
        return Response(status_code=204)

    return app
