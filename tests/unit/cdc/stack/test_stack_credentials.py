"""The generated CDC password and secrets.env (no services)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cdc.stack import load_secrets
from cdc.stack.credentials import ensure_password, read_secrets, secrets_file
from core.errors import ConfigError
from core.settings import PostgresSettings, Settings

ENV = "GOLDSTREAM_TEST_STACK_PASSWORD"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv(ENV, raising=False)
    return Settings(state_dir=tmp_path / "state", postgres=PostgresSettings(password_env=ENV))


def test_generated_once_and_private(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    password, generated = ensure_password(settings)
    assert generated and len(password) >= 24
    assert os.environ[ENV] == password
    path = secrets_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secrets(path) == {ENV: password}

    # A later command in a fresh environment gets the same password back from the file.
    monkeypatch.delenv(ENV)
    assert load_secrets(settings) == {ENV: password}
    assert os.environ[ENV] == password
    monkeypatch.delenv(ENV)
    assert ensure_password(settings) == (password, False)
    assert read_secrets(path) == {ENV: password}


def test_environment_wins(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    path = secrets_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text(f"# comment\n\n{ENV}=from-file\nOTHER_GOLDSTREAM_TEST_VAR=x\n")
    monkeypatch.setenv(ENV, "from-env")
    monkeypatch.delenv("OTHER_GOLDSTREAM_TEST_VAR", raising=False)
    assert load_secrets(settings) == {"OTHER_GOLDSTREAM_TEST_VAR": "x"}
    assert os.environ[ENV] == "from-env"
    assert ensure_password(settings) == ("from-env", False)
    monkeypatch.delenv("OTHER_GOLDSTREAM_TEST_VAR")


def test_no_file_is_fine(settings: Settings) -> None:
    assert load_secrets(settings) == {}


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("A=1\nnot a pair\n")
    with pytest.raises(ConfigError, match=r"secrets\.env:2: expected KEY=value"):
        read_secrets(path)
