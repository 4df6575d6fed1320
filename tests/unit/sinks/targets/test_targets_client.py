"""The target client on httpx.MockTransport: auth, rate limit, backoff, Retry-After, batches, breaker."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.errors import TerminalError
from sinks.targets.breaker import CircuitBreaker
from sinks.targets.client import (
    ClientSettings,
    RequestFailedError,
    TargetClient,
    TargetUnavailableError,
    UpsertItem,
    backoff_s,
    retry_after_s,
)
from sinks.targets.ratelimit import TokenBucket
from tests.unit.sinks.targets.fake_target import SECRET, FakeTarget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TARGET_SECRET", SECRET)


def state(b: CircuitBreaker) -> str:
    """The state as plain text (mypy would narrow the property between calls)."""
    return b.state


def make(fake: FakeTarget, clock: FakeClock, **kw: object) -> TargetClient:
    base: dict[str, object] = {
        "name": f"t{random.random()}",
        "kind": fake.kind,
        "base_url": "http://target.test",
        "resource": fake.resource,
        "auth_kind": "oauth2_client_credentials" if fake.kind == "crm" else "api_key",
        "secret_env": "TEST_TARGET_SECRET",
        "client_id": "goldstream",
        "rate_per_s": 0.0,
        "max_attempts": 4,
        "retry_initial_s": 0.1,
        "retry_max_delay_s": 2.0,
    }
    base.update(kw)
    return TargetClient(
        ClientSettings(**base),  # type: ignore[arg-type]
        transport=fake.transport(),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
    )


def item(gid: str, **fields: object) -> UpsertItem:
    return UpsertItem(gid, dict(fields), f"t:{gid}:1")


# --- pure helpers ---


def test_token_bucket_allows_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert bucket.acquire() == 0.0
    waited = bucket.acquire()
    assert waited == pytest.approx(0.1)
    clock.now += 10
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled to the burst only
    assert bucket.try_acquire() > 0


def test_token_bucket_hold_blocks_everyone_until_then() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, 10, clock=clock, sleep=clock.sleep)
    bucket.hold(2.0)
    assert bucket.try_acquire() == pytest.approx(2.0)
    assert bucket.acquire() >= 2.0


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(0, 1)
    assert all(bucket.try_acquire() == 0 for _ in range(1000))


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(3)
    delays = [backoff_s(a, initial_s=0.2, max_s=5.0, rng=rng) for a in range(1, 10)]
    for attempt, d in enumerate(delays, start=1):
        cap = min(5.0, 0.2 * 2 ** (attempt - 1))
        assert cap / 2 <= d <= cap
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_s("7") == 7.0
    date = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_s(date, now=now) == pytest.approx(30.0)
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    b = CircuitBreaker("b", failure_threshold=3, reset_timeout_s=5, max_reset_timeout_s=20, clock=clock)
    for _ in range(2):
        b.record_failure()
    assert state(b) == "closed"
    b.record_failure()
    assert state(b) == "open" and not b.allow() and b.retry_in() == pytest.approx(5)
    clock.now += 5
    assert state(b) == "half_open" and b.allow()
    b.record_failure()  # failed probe: open again, twice as long
    assert state(b) == "open" and b.retry_in() == pytest.approx(10)
    clock.now += 10
    b.record_success()
    assert state(b) == "closed" and b.retry_in() == 0


# --- the client ---


def test_oauth_token_is_cached_and_refreshed_on_401() -> None:
    fake, clock = FakeTarget(), FakeClock()
    client = make(fake, clock)
    client.upsert(item("g1", name="A"))
    client.upsert(item("g2", name="B"))
    assert fake.tokens_issued == 1
    fake.expire_tokens = True
    assert client.upsert(item("g3", name="C")).ok
    assert fake.tokens_issued == 2


def test_wrong_secret_is_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TARGET_SECRET", "wrong")
    with pytest.raises(TerminalError):
        make(FakeTarget(), FakeClock()).upsert(item("g1", name="A"))


def test_api_key_auth() -> None:
    fake = FakeTarget(kind="erp", resource="debtors")
    result = make(fake, FakeClock()).upsert(item("g1", name1="A"))
    assert result.ok and result.outcome == "created"


def test_429_retry_after_is_honoured() -> None:
    fake, clock = FakeTarget(), FakeClock()
    fake.script = [
        httpx.Response(429, headers={"Retry-After": "3"}, json={"error": {"code": "rate_limited"}})
    ]
    client = make(fake, clock)
    result = client.upsert(item("g1", name="A"))
    assert result.ok
    assert sum(clock.sleeps) >= 3.0  # waited at least what the target asked for
    assert state(client.breaker) == "closed"  # a 429 means alive, not down


def test_5xx_is_retried_with_backoff_then_succeeds() -> None:
    fake, clock = FakeTarget(), FakeClock()
    fake.script = [httpx.Response(500), httpx.Response(502)]
    result = make(fake, clock).upsert(item("g1", name="A"))
    assert result.ok and len(clock.sleeps) == 2 and clock.sleeps[1] > 0


def test_transport_errors_are_transient() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"id": "K1", "version": 1}, headers={"X-Outcome": "created"})

    client = TargetClient(
        ClientSettings(
            "t-conn", "erp", "http://x.test", "debtors", "api_key", "TEST_TARGET_SECRET", rate_per_s=0
        ),
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
    )
    assert client.upsert(item("g1")).ok and calls["n"] == 3


def test_4xx_is_a_terminal_item_failure_not_retried() -> None:
    fake, clock = FakeTarget(), FakeClock()
    fake.script = [httpx.Response(422, json={"error": {"code": "invalid", "message": "bad phone"}})]
    result = make(fake, clock).upsert(item("g1", phone="x"))
    assert not result.ok and result.terminal and "bad phone" in result.error and clock.sleeps == []


def test_breaker_opens_during_outage_and_stops_sending() -> None:
    fake, clock = FakeTarget(down=True), FakeClock()
    client = make(fake, clock, max_attempts=3, breaker_failures=3, breaker_reset_s=5.0)
    with pytest.raises(RequestFailedError):
        client.upsert(item("g1", name="A"))
    assert state(client.breaker) == "open"
    sent = len(fake.calls)
    with pytest.raises(TargetUnavailableError) as exc:
        client.upsert(item("g2", name="B"))
    assert len(fake.calls) == sent and exc.value.retry_in > 0  # nothing sent while open
    fake.down = False
    clock.now += exc.value.retry_in
    assert client.upsert(item("g2", name="B")).ok  # the probe closes it
    assert state(client.breaker) == "closed"


def test_batch_retries_only_the_items_that_failed_transiently() -> None:
    fake, clock = FakeTarget(), FakeClock()
    fake.flaky_items = {"g2": 2}
    client = make(fake, clock)
    results = client.upsert_batch([item(f"g{i}", name=f"N{i}") for i in range(1, 5)])
    assert [r.ok for r in results] == [True] * 4
    assert results[1].attempts == 3 and results[0].attempts == 1
    batch_calls = [c for c in fake.calls if c[1].endswith("/batch")]
    assert len(batch_calls) == 3  # full batch, then twice the one flaky item


def test_one_bad_record_does_not_block_the_batch() -> None:
    fake, clock = FakeTarget(), FakeClock()
    fake.bad_external_ids = {"g2"}
    results = make(fake, clock).upsert_batch([item(f"g{i}", name=f"N{i}") for i in range(1, 4)])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].terminal and results[1].status == 422
    assert set(fake.records) == {"g1", "g3"}


def test_batch_413_is_split() -> None:
    fake, clock = FakeTarget(), FakeClock()
    fake.script = [httpx.Response(413, json={"error": {"code": "payload_too_large"}})]
    results = make(fake, clock).upsert_batch([item(f"g{i}", name="x") for i in range(4)])
    assert all(r.ok for r in results) and len(fake.records) == 4


def test_batch_is_chunked_by_batch_max() -> None:
    fake, clock = FakeTarget(), FakeClock()
    make(fake, clock, batch_max=2).upsert_batch([item(f"g{i}", name="x") for i in range(5)])
    assert len([c for c in fake.calls if c[1].endswith("/batch")]) == 3


def test_merge_find_and_deactivate() -> None:
    fake, clock = FakeTarget(), FakeClock()
    client = make(fake, clock)
    client.upsert_batch([item("s", name="S"), item("r", name="R")])
    survivor = client.find_key("s")
    assert survivor is not None and client.find_key("nope") is None
    assert client.merge(survivor, "r", key="crm:s:2:merge:r").ok
    assert fake.records["r"]["status"] == "Inactive"
    assert client.set_active(survivor, False, key="k").ok
    assert fake.records["s"]["status"] == "Inactive"
    assert client.set_active("missing", False, key="k").status == 404


def test_no_credential_in_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake, clock = FakeTarget(down=True), FakeClock()
    client = make(fake, clock, max_attempts=2)
    with pytest.raises(RequestFailedError) as exc:
        client.upsert(item("g1", name="A"))
    text = caplog.text + str(exc.value) + repr(client.__dict__)
    assert SECRET not in text and "tok1" not in caplog.text


def test_batch_idempotency_key_is_stable_for_retries_and_differs_for_other_bodies() -> None:
    seen: list[str] = []
    fake, clock = FakeTarget(), FakeClock()
    inner = fake.handler

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/batch"):
            seen.append(request.headers["Idempotency-Key"])
        return inner(request)

    fake.script = [httpx.Response(503, headers={"Retry-After": "0"})]
    client = TargetClient(
        ClientSettings(
            "t-idem",
            "crm",
            "http://t.test",
            "accounts",
            "oauth2_client_credentials",
            "TEST_TARGET_SECRET",
            client_id="goldstream",
            rate_per_s=0,
        ),
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
    )
    client.upsert_batch([item("g1", name="A"), item("g2", name="B")])
    client.upsert_batch([item("g1", name="A2"), item("g2", name="B")])  # same keys, other diff
    assert seen[0] == seen[1] != seen[2]


def test_concurrent_chunks_return_every_result_in_input_order() -> None:
    fake = FakeTarget()
    fake.bad_external_ids = {"g3"}
    client = make(fake, FakeClock(), batch_max=2, concurrency=3)
    results = client.upsert_batch([item(f"g{i}", name=f"N{i}") for i in range(7)])
    assert [r.external_id for r in results] == [f"g{i}" for i in range(7)]
    assert [r.ok for r in results] == [True, True, True, False, True, True, True]


def test_a_failing_chunk_fails_the_concurrent_set() -> None:
    fake = FakeTarget(down=True)
    client = make(fake, FakeClock(), batch_max=2, concurrency=2, max_attempts=1)
    with pytest.raises((RequestFailedError, TargetUnavailableError)):
        client.upsert_batch([item(f"g{i}", name="x") for i in range(4)])
