"""An httpx client for one target API (the demo CRM or ERP, and APIs shaped like them).

What every call goes through, in order:

1. the circuit breaker: while it is open no request is sent (:class:`TargetUnavailableError`), so a
   down target costs nothing and the caller pauses instead of spinning;
2. the client-side token bucket (:class:`~sinks.targets.ratelimit.TokenBucket`);
3. auth: OAuth2 client credentials (token cached until shortly before it expires, fetched again on a
   401) or an API-key header. The secret is read from the environment when it is needed and never
   kept, logged or put into an error message;
4. retries of transient failures (timeouts, connection errors, 429, 5xx) with exponential backoff and
   full jitter, never shorter than the target's ``Retry-After``. A 429 holds the whole bucket (the
   limit is per client), and does not count against the breaker (the target is alive).

Batch upserts (:meth:`TargetClient.upsert_batch`) retry only the items that failed transiently
(split-and-retry); items the target refuses (4xx) come back as terminal failures so one bad record
never blocks the rest.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from core.errors import ConfigError, InvalidInputError, TerminalError, TransientError
from core.metrics import TARGET_REQUESTS, TARGET_RETRIES
from sinks.targets.breaker import CircuitBreaker
from sinks.targets.ratelimit import TokenBucket

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_ACTIONS = {"crm": ("activate", "deactivate"), "erp": ("unblock", "block")}
_TOKEN_MARGIN_S = 30.0


class TargetUnavailableError(TransientError):
    """The target's circuit breaker is open: nothing was sent. Retry after :attr:`retry_in` seconds."""

    def __init__(self, message: str, *, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class RequestFailedError(TransientError):
    """A request still failed transiently after every attempt (the breaker has counted it)."""


@dataclass(frozen=True)
class ClientSettings:
    """Everything a :class:`TargetClient` needs, as plain values (secrets by env var name only)."""

    name: str
    """The target's name: metrics label and log prefix."""
    kind: Literal["crm", "erp"]
    base_url: str
    resource: str
    auth_kind: Literal["oauth2_client_credentials", "api_key"]
    secret_env: str
    client_id: str = ""
    token_url: str = "/oauth/token"
    api_key_header: str = "X-API-Key"
    timeout_s: float = 10.0
    rate_per_s: float = 10.0
    burst: int = 20
    retry_initial_s: float = 0.2
    retry_max_delay_s: float = 10.0
    max_attempts: int = 8
    batch_max: int = 100
    concurrency: int = 1
    """Batch requests in flight at once (chunks of one unit hold different records: order is safe)."""
    breaker_failures: int = 5
    breaker_reset_s: float = 5.0
    breaker_max_reset_s: float = 60.0


@dataclass(frozen=True)
class UpsertItem:
    """One record to upsert by external id (the golden id)."""

    external_id: str
    fields: dict[str, Any]
    key: str
    """Idempotency key of this write: ``target:golden_id:version``."""


@dataclass(frozen=True)
class ItemResult:
    """What happened to one :class:`UpsertItem` (or another single operation)."""

    external_id: str
    ok: bool
    status: int
    """HTTP status of the item (0: no answer)."""
    outcome: str
    """created / updated / unchanged (ok), or failed."""
    target_key: str | None = None
    version: int | None = None
    error: str = ""
    attempts: int = 1
    terminal: bool = False
    """A failure retrying cannot fix (the target refused the record)."""


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_s(attempt: int, *, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
    cap = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(cap / 2, cap)


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def _error_text(response: httpx.Response) -> str:
    """The target's error code and message (never request data: it may be personal)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"HTTP {response.status_code} {err.get('code', '')}: {err.get('message', '')}"[:500]
    if isinstance(err, str):  # OAuth2 error document
        return f"HTTP {response.status_code} {err}"
    return f"HTTP {response.status_code}"


class _OAuth2(httpx.Auth):
    """Client-credentials bearer tokens, cached; a 401 on a call fetches a new one once."""

    requires_response_body = True

    def __init__(self, token_url: str, client_id: str, secret_env: str, clock: Callable[[], float]) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._secret_env = secret_env
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return f"_OAuth2(client_id={self._client_id!r})"

    def _token_request(self) -> httpx.Request:
        secret = os.environ.get(self._secret_env)
        if not secret:
            raise ConfigError(f"target auth: environment variable {self._secret_env} is not set")
        return httpx.Request(
            "POST",
            self._token_url,
            data={"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": secret},
        )

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            if response.status_code in _TRANSIENT_STATUS:
                raise TransientError(f"token endpoint: {_error_text(response)}")
            raise TerminalError(f"token endpoint refused the client credentials: {_error_text(response)}")
        body = response.json()
        self._token = str(body["access_token"])
        self._expires_at = self._clock() + float(body.get("expires_in", 300)) - _TOKEN_MARGIN_S
        self.fetches += 1

    def auth_flow(self, request: httpx.Request) -> Any:
        if self._token is None or self._clock() >= self._expires_at:
            self._store((yield self._token_request()))
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            self._token = None  # expired early or the service restarted and forgot it
            self._store((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


class _ApiKey(httpx.Auth):
    def __init__(self, header: str, secret_env: str) -> None:
        self._header = header
        self._secret_env = secret_env

    def __repr__(self) -> str:
        return f"_ApiKey(header={self._header!r})"

    def auth_flow(self, request: httpx.Request) -> Any:
        secret = os.environ.get(self._secret_env)
        if not secret:
            raise ConfigError(f"target auth: environment variable {self._secret_env} is not set")
        request.headers[self._header] = secret
        yield request


@dataclass
class _Budget:
    attempts: int = 0
    last_error: str = ""
    waits: list[float] = field(default_factory=list)


class TargetClient:
    """Calls one target's API with rate limit, retries, breaker and auth (see the module docstring)."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        auth: httpx.Auth
        if settings.auth_kind == "oauth2_client_credentials":
            token_url = httpx.URL(settings.base_url.rstrip("/") + "/").join(settings.token_url.lstrip("/"))
            auth = _OAuth2(str(token_url), settings.client_id, settings.secret_env, clock)
        else:
            auth = _ApiKey(settings.api_key_header, settings.secret_env)
        self._http = httpx.Client(
            base_url=settings.base_url, auth=auth, timeout=settings.timeout_s, transport=transport
        )
        self.bucket = TokenBucket(settings.rate_per_s, settings.burst, clock=clock, sleep=sleep)
        self.breaker = CircuitBreaker(
            settings.name,
            failure_threshold=settings.breaker_failures,
            reset_timeout_s=settings.breaker_reset_s,
            max_reset_timeout_s=settings.breaker_max_reset_s,
            clock=clock,
        )
        self._base = f"/v1/{settings.resource}"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- one request with retries ---

    def _send(self, method: str, path: str, operation: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; returns the first non-transient response (2xx or a 4xx to judge).

        Raises :class:`TargetUnavailableError` when the breaker is open and
        :class:`RequestFailedError` when every attempt failed transiently.
        """
        name = self.settings.name
        budget = _Budget()
        while True:
            if not self.breaker.allow():
                raise TargetUnavailableError(
                    f"{name}: circuit open ({budget.last_error or 'target failing'})",
                    retry_in=self.breaker.retry_in(),
                )
            self.bucket.acquire()
            budget.attempts += 1
            retry_after: float | None = None
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                raise TerminalError(f"{name} {operation}: bad request setup: {exc}") from exc
            except httpx.TransportError as exc:  # timeouts, refused connections, resets
                TARGET_REQUESTS.labels(target=name, operation=operation, status="error").inc()
                budget.last_error = f"{type(exc).__name__}"
                reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
                self.breaker.record_failure()
            else:
                TARGET_REQUESTS.labels(
                    target=name, operation=operation, status=_status_class(response.status_code)
                ).inc()
                if response.status_code not in _TRANSIENT_STATUS:
                    self.breaker.record_success()
                    return response
                budget.last_error = _error_text(response)
                retry_after = retry_after_s(response.headers.get("Retry-After"))
                if response.status_code == 429:
                    reason = "rate_limited"
                    # Alive but over its limit: every request of this client must wait, not just this one.
                    self.bucket.hold(retry_after if retry_after is not None else 1.0)
                else:
                    reason = f"http_{response.status_code}"
                    self.breaker.record_failure()
            if budget.attempts >= self.settings.max_attempts:
                raise RequestFailedError(
                    f"{name} {operation}: still failing after {budget.attempts} attempts: {budget.last_error}"
                )
            TARGET_RETRIES.labels(target=name, reason=reason).inc()
            wait = backoff_s(
                budget.attempts,
                initial_s=self.settings.retry_initial_s,
                max_s=self.settings.retry_max_delay_s,
                rng=self._rng,
            )
            if retry_after is not None:
                wait = max(wait, retry_after)
            log.info(
                "%s %s: %s, retry %d in %.2fs", name, operation, budget.last_error, budget.attempts, wait
            )
            self._sleep(wait)

    # --- operations ---

    def upsert(self, item: UpsertItem) -> ItemResult:
        """Create or update one record by external id (PUT, naturally idempotent)."""
        path = f"{self._base}/by-external-id/{quote(item.external_id, safe='')}"
        response = self._send("PUT", path, "upsert", json=item.fields)
        if response.is_success:
            body = response.json()
            return ItemResult(
                item.external_id,
                True,
                response.status_code,
                response.headers.get("X-Outcome", "updated"),
                target_key=str(body.get(self._key_name(body))),
                version=int(body["version"]),
            )
        return self._refused(item.external_id, response)

    def _key_name(self, row: dict[str, Any]) -> str:
        return next((k for k in ("account_id", "debtor_no", "contact_id", "id") if k in row), "id")

    def _refused(self, external_id: str, response: httpx.Response) -> ItemResult:
        if response.status_code in (401, 403):
            raise TerminalError(f"{self.settings.name}: not authorised ({_error_text(response)})")
        return ItemResult(
            external_id, False, response.status_code, "failed", error=_error_text(response), terminal=True
        )

    def upsert_batch(self, items: Sequence[UpsertItem]) -> list[ItemResult]:
        """Upsert many records through the batch endpoint; one result per item, in input order.

        Items that fail transiently inside a successful batch response (per-item 5xx/429) are sent
        again on their own batch, with backoff, up to ``max_attempts``; refused items (4xx) are final.
        A whole request that keeps failing raises (:class:`RequestFailedError` /
        :class:`TargetUnavailableError`) after the items that did succeed were returned by earlier
        rounds... so instead it raises only when no round succeeded for the remaining items.
        """
        results: dict[int, ItemResult] = {}
        size = max(1, self.settings.batch_max)
        indexed = list(enumerate(items))
        chunks = [indexed[start : start + size] for start in range(0, len(indexed), size)]
        if len(chunks) <= 1 or self.settings.concurrency <= 1:
            for chunk in chunks:
                self._batch_rounds(chunk, results)
        else:
            # Each chunk writes its own keys of ``results``; the first failure is raised after all
            # chunks ended (the caller re-sends the whole set, which is idempotent).
            with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
                futures = [pool.submit(self._batch_rounds, chunk, results) for chunk in chunks]
                errors = [f.exception() for f in futures]
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
        return [results[i] for i in range(len(items))]

    def _batch_rounds(self, pending: list[tuple[int, UpsertItem]], results: dict[int, ItemResult]) -> None:
        attempt = 0
        while pending:
            attempt += 1
            body = {"inputs": [{"external_id": it.external_id, "properties": it.fields} for _, it in pending]}
            # The key covers the item keys *and* the body: a true retry repeats both (the target
            # replays its answer), while a re-planned batch after a restart may carry the same
            # versions with another diff, which under the same key the target would refuse (422).
            keys = "\n".join(item.key for _, item in pending) + json.dumps(body, sort_keys=True, default=str)
            idem = hashlib.sha256(keys.encode()).hexdigest()[:32]
            response = self._send(
                "POST", f"{self._base}/batch", "batch", json=body, headers={"Idempotency-Key": idem}
            )
            if response.status_code == 413 and len(pending) > 1:
                half = len(pending) // 2
                self._batch_rounds(pending[:half], results)
                self._batch_rounds(pending[half:], results)
                return
            if not response.is_success:
                for index, item in pending:
                    results[index] = self._refused(item.external_id, response)
                return
            retry: list[tuple[int, UpsertItem]] = []
            for (index, item), res in zip(pending, response.json()["results"], strict=True):
                status = int(res.get("status", 0))
                if 200 <= status < 300:
                    results[index] = ItemResult(
                        item.external_id,
                        True,
                        status,
                        str(res.get("outcome", "updated")),
                        target_key=None if res.get("id") is None else str(res["id"]),
                        version=res.get("version"),
                        attempts=attempt,
                    )
                    continue
                err = res.get("error") if isinstance(res.get("error"), dict) else {}
                text = f"HTTP {status} {err.get('code', '')}: {err.get('message', '')}"[:500]
                if status in _TRANSIENT_STATUS and attempt < self.settings.max_attempts:
                    retry.append((index, item))
                    results[index] = ItemResult(
                        item.external_id, False, status, "failed", error=text, attempts=attempt
                    )
                    continue
                results[index] = ItemResult(
                    item.external_id,
                    False,
                    status,
                    "failed",
                    error=text,
                    attempts=attempt,
                    terminal=status not in _TRANSIENT_STATUS,
                )
            if retry:
                TARGET_RETRIES.labels(target=self.settings.name, reason="batch_items").inc(len(retry))
                self._sleep(
                    backoff_s(
                        attempt,
                        initial_s=self.settings.retry_initial_s,
                        max_s=self.settings.retry_max_delay_s,
                        rng=self._rng,
                    )
                )
            pending = retry

    def find(self, external_id: str) -> dict[str, Any] | None:
        """The record with this external id, or None."""
        path = f"{self._base}/by-external-id/{quote(external_id, safe='')}"
        response = self._send("GET", path, "get")
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self._terminal(response, "get")
        row: dict[str, Any] = response.json()
        return row

    def find_key(self, external_id: str) -> str | None:
        """The target's own id of the record with this external id, or None."""
        row = self.find(external_id)
        return None if row is None else str(row[self._key_name(row)])

    def _terminal(self, response: httpx.Response, operation: str) -> GoldstreamErrorT:
        if response.status_code in (401, 403):
            return TerminalError(
                f"{self.settings.name} {operation}: not authorised ({_error_text(response)})"
            )
        return InvalidInputError(f"{self.settings.name} {operation} refused", detail=_error_text(response))

    def set_active(self, target_key: str, active: bool, *, key: str) -> ItemResult:
        """Activate / deactivate (CRM) or unblock / block (ERP) a record; a missing one is a no-op."""
        on, off = _ACTIONS[self.settings.kind]
        path = f"{self._base}/{quote(target_key, safe='')}/{on if active else off}"
        response = self._send("POST", path, "deactivate" if not active else "activate")
        if response.status_code == 404:
            return ItemResult(target_key, True, 404, "unchanged", target_key=target_key)
        if response.is_success:
            return ItemResult(
                target_key,
                True,
                response.status_code,
                response.headers.get("X-Outcome", "updated"),
                target_key=target_key,
                version=response.json().get("version"),
            )
        return self._refused(target_key, response)

    def delete(self, target_key: str, *, key: str) -> ItemResult:
        """Delete a record (targets that allow it); a missing one is a no-op."""
        response = self._send("DELETE", f"{self._base}/{quote(target_key, safe='')}", "delete")
        if response.status_code in (204, 404) or response.is_success:
            return ItemResult(target_key, True, response.status_code, "deleted", target_key=target_key)
        return self._refused(target_key, response)

    def merge(self, survivor_key: str, retired_external_id: str, *, key: str) -> ItemResult:
        """Merge the record with ``retired_external_id`` into ``survivor_key`` (CRM accounts).

        Idempotent twice over: the call carries ``Idempotency-Key`` and repeating a merge moves
        nothing. A retired record the target never had (404) is a no-op.
        """
        path = f"{self._base}/{quote(survivor_key, safe='')}/merge"
        response = self._send(
            "POST",
            path,
            "merge",
            json={"retired_external_id": retired_external_id},
            headers={"Idempotency-Key": hashlib.sha256(key.encode()).hexdigest()[:32]},
        )
        if response.status_code == 404:
            return ItemResult(retired_external_id, True, 404, "unchanged", target_key=survivor_key)
        if response.is_success:
            return ItemResult(
                retired_external_id, True, response.status_code, "merged", target_key=survivor_key
            )
        return self._refused(retired_external_id, response)


GoldstreamErrorT = TerminalError | InvalidInputError
