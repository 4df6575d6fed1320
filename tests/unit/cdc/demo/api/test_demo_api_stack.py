"""The demo APIs as local-stack components: credentials, pid-file markers, status text."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cdc.demo.api import stack as demo_api
from cdc.stack.credentials import read_secrets
from cdc.stack.paths import stack_paths
from core.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(state_dir=tmp_path / "state")
    for name in demo_api.secret_names(s):
        monkeypatch.delenv(name, raising=False)
    return s


def test_missing_credentials_are_generated_once_into_secrets_env(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = demo_api.secret_names(settings)
    assert names == (
        "GOLDSTREAM_CRM_CLIENT_SECRET",
        "GOLDSTREAM_ERP_API_KEY",
        "GOLDSTREAM_DEMO_API_ADMIN_TOKEN",
    )
    monkeypatch.setenv("GOLDSTREAM_ERP_API_KEY", "from-the-environment")
    generated = demo_api.ensure_secrets(settings)
    assert generated == ["GOLDSTREAM_CRM_CLIENT_SECRET", "GOLDSTREAM_DEMO_API_ADMIN_TOKEN"]
    path = settings.state_dir / "secrets.env"
    stored = read_secrets(path)
    assert set(stored) == set(generated)  # the environment's value is never written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(os.environ[n] == stored[n] and len(stored[n]) >= 32 for n in generated)
    for name in generated:
        monkeypatch.delenv(name)
    assert demo_api.ensure_secrets(settings) == []  # read back, not regenerated
    assert os.environ["GOLDSTREAM_CRM_CLIENT_SECRET"] == stored["GOLDSTREAM_CRM_CLIENT_SECRET"]


def test_markers_and_paths(settings: Settings) -> None:
    paths = stack_paths(settings)
    assert demo_api.markers(settings, "crm") == ("cdc.demo.api crm", "--port 18181")
    assert demo_api.markers(settings, "erp") == ("cdc.demo.api erp", "--port 18182")
    assert paths.demo_api_log("crm") == settings.state_dir.resolve() / "demo-api" / "crm.log"
    assert paths.demo_api_pidfile("erp").name == "erp.pid"
    assert demo_api.running_pid(settings, paths, "crm") is None


def test_status_detail(settings: Settings) -> None:
    limited = {"rate_limit": {"requests_per_second": 20.0, "burst": 40, "unlimited": False}, "faults": None}
    assert demo_api.describe(settings, "crm", limited) == "OAuth2 as goldstream; 20.0/s, burst 40"
    lifted = {"rate_limit": {"unlimited": True}, "faults": {"outage": True}}
    assert demo_api.describe(settings, "erp", lifted) == (
        "X-API-Key as goldstream; no rate limit; FAULTS INJECTED: {'outage': True}"
    )
