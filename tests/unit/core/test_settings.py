from pathlib import Path

import pytest

from core.configfile import resolve_env
from core.errors import ConfigError
from core.settings import Settings, load_settings


def test_repo_settings_load_and_resolve_paths() -> None:
    s = load_settings()
    assert s.state_dir.is_absolute()
    assert s.delta_root.is_relative_to(s.state_dir)
    assert (s.config_dir / "connectors").is_dir()


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "goldstream.yaml"
    f.write_text("kafka:\n  bootstrap_server: x:1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(f)
    assert f"{f}: kafka.bootstrap_server: unknown key" in str(err.value)


def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "goldstream.yaml"
    f.write_text("postgres:\n  port: 70000\n")
    with pytest.raises(ConfigError, match=r"postgres\.port: Input should be less than or equal to 65535"):
        load_settings(f)


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    f = tmp_path / "goldstream.yaml"
    f.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(f)


def test_password_comes_only_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pg = Settings().postgres
    monkeypatch.delenv(pg.password_env, raising=False)
    with pytest.raises(ConfigError, match="GOLDSTREAM_DB_PASSWORD is not set"):
        pg.password()
    monkeypatch.setenv(pg.password_env, "s3cret")
    assert pg.password() == "s3cret"


def test_resolve_env_reports_missing_variable() -> None:
    assert resolve_env("a${env:X}b", environ={"X": "1"}) == "a1b"
    with pytest.raises(ConfigError, match="environment variable Y is not set"):
        resolve_env("${env:Y}", environ={}, where="f.yaml: k")


def test_silver_engine_is_one_of_the_two(tmp_path: Path) -> None:
    assert load_settings().dataflow.silver_engine == "delta-rs"
    f = tmp_path / "goldstream.yaml"
    f.write_text("dataflow:\n  silver_engine: fast\n")
    with pytest.raises(
        ConfigError, match=r"dataflow\.silver_engine: Input should be 'delta-rs' or 'rewrite'"
    ):
        load_settings(f)
