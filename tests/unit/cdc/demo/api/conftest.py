"""Fixtures for the demo API unit tests: the real FastAPI apps over the in-memory store, a fake clock."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from cdc.demo.api import crm, erp
from cdc.demo.api.store import MemoryStore
from core.settings import Settings

with warnings.catch_warnings():
    # starlette's TestClient warns that it will move from httpx to httpx2; httpx is what we pin.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CRM_SECRET = "crm-secret-for-tests"
ERP_KEY = "erp-key-for-tests"
ADMIN = "admin-token-for-tests"


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings()
    monkeypatch.setenv(s.demo_apis.crm.secret_env, CRM_SECRET)
    monkeypatch.setenv(s.demo_apis.erp.secret_env, ERP_KEY)
    monkeypatch.setenv(s.demo_apis.admin_token_env, ADMIN)
    # Small limits so tests reach them quickly.
    apis = s.demo_apis.model_copy(
        update={
            "batch_max": 5,
            "page_size_max": 50,
            "token_ttl_s": 60,
            "crm": s.demo_apis.crm.model_copy(update={"rate_limit_per_s": 2.0, "rate_limit_burst": 100}),
            "erp": s.demo_apis.erp.model_copy(update={"rate_limit_per_s": 2.0, "rate_limit_burst": 100}),
        }
    )
    return s.model_copy(update={"demo_apis": apis})


@pytest.fixture
def crm_store() -> MemoryStore:
    return MemoryStore(crm.SPECS)


@pytest.fixture
def erp_store() -> MemoryStore:
    return MemoryStore(erp.SPECS)


@pytest.fixture
def crm_client(settings: Settings, crm_store: MemoryStore, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(crm.create_app(settings, crm_store, clock=clock)) as client:
        token = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": "goldstream", "client_secret": CRM_SECRET},
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture
def erp_client(settings: Settings, erp_store: MemoryStore, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(erp.create_app(settings, erp_store, clock=clock)) as client:
        client.headers["X-API-Key"] = ERP_KEY
        yield client


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers of an operator call to /admin/*."""
    return {"X-Admin-Token": ADMIN}


@pytest.fixture
def crm_secret() -> str:
    return CRM_SECRET
