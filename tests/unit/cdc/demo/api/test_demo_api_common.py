"""The building blocks shared by the demo APIs: token bucket, ETags, cursors, faults, idempotency keys."""

from __future__ import annotations

import pytest
from fastapi.responses import JSONResponse

from cdc.demo.api.common import (
    BadRequestError,
    Faults,
    FaultsIn,
    IdempotencyCache,
    RateLimiter,
    TooManyRequestsError,
    UnprocessableError,
    decode_cursor,
    encode_cursor,
    etag,
    if_match_ok,
    if_none_match_star,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_says_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(0.5, 3, clock=clock)  # one request per 2 s, burst 3
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(TooManyRequestsError) as err:
        limiter.check("a")
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "2"
    limiter.check("b")  # per client
    clock.now += 2.0
    limiter.check("a")  # refilled one token
    with pytest.raises(TooManyRequestsError):
        limiter.check("a")


def test_retry_after_is_at_least_one_whole_second() -> None:
    clock = Clock()
    limiter = RateLimiter(100.0, 1, clock=clock)
    limiter.check("a")
    with pytest.raises(TooManyRequestsError) as err:
        limiter.check("a")
    assert err.value.headers["Retry-After"] == "1"


def test_rate_zero_is_unlimited_and_configure_lifts_or_sets() -> None:
    limiter = RateLimiter(1.0, 1, clock=Clock())
    limiter.check("a")
    with pytest.raises(TooManyRequestsError):
        limiter.check("a")
    limiter.configure(0.0, 1)
    for _ in range(1000):
        limiter.check("a")
    assert limiter.describe()["unlimited"] is True


def test_if_match_is_a_strong_comparison() -> None:
    assert etag(3) == '"3"'
    assert if_match_ok(None, 3) and if_match_ok(None, None)
    assert if_match_ok('"3"', 3) and if_match_ok("3", 3) and if_match_ok('"1", "3"', 3)
    assert not if_match_ok('"2"', 3)
    assert not if_match_ok('W/"3"', 3)
    assert if_match_ok("*", 3) and not if_match_ok("*", None)
    assert not if_match_ok('"1"', None)
    assert if_none_match_star("*") and not if_none_match_star('"3"') and not if_none_match_star(None)


def test_cursor_roundtrip_and_garbage() -> None:
    assert decode_cursor(encode_cursor("6a0e-ü")) == "6a0e-ü"
    for bad in ("%%%", "bm90LWEtY3Vyc29y", ""):
        with pytest.raises(BadRequestError):
            decode_cursor(bad)


def test_faults_outage_errors_latency_and_expiry() -> None:
    clock = Clock()
    faults = Faults(clock=clock)
    assert faults.plan() == (0.0, None, "before")
    faults.set(FaultsIn(outage=True, latency_ms=250))
    assert faults.plan() == (0.25, 503, "before")
    faults.set(FaultsIn(error_rate=0.5, status_code=502, seed=1, duration_s=10))
    draws = [faults.plan()[1] for _ in range(200)]
    assert 60 < draws.count(502) < 140 and draws.count(None) == 200 - draws.count(502)
    clock.now += 10
    assert faults.plan() == (0.0, None, "before")
    assert faults.describe() is None
    faults.set(FaultsIn(error_rate=1.0, error_phase="after"))
    assert faults.plan() == (0.0, 500, "after")
    faults.clear()
    assert faults.current() is None


def test_idempotency_cache_replays_and_refuses_another_body() -> None:
    cache = IdempotencyCache(capacity=2)
    assert cache.replay("c", "/p", "k1", "h1") is None
    cache.store("c", "/p", "k1", "h1", JSONResponse({"n": 1}, status_code=201, headers={"ETag": '"1"'}))
    replay = cache.replay("c", "/p", "k1", "h1")
    assert replay is not None and replay.status_code == 201 and replay.body == b'{"n":1}'
    assert replay.headers["etag"] == '"1"' and replay.headers["idempotent-replayed"] == "true"
    assert cache.replay("other-client", "/p", "k1", "h1") is None
    with pytest.raises(UnprocessableError):
        cache.replay("c", "/p", "k1", "another body")
    cache.store("c", "/p", "k5", "h", JSONResponse({}, status_code=503))  # 5xx: not remembered
    assert cache.replay("c", "/p", "k5", "h") is None
    cache.store("c", "/p", "k2", "h", JSONResponse({}))
    cache.store("c", "/p", "k3", "h", JSONResponse({}))
    assert cache.replay("c", "/p", "k1", "h1") is None  # evicted (capacity 2)
