"""Pom parsing and the fetch stamps (no Maven, no network)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from cdc.stack import artifacts
from cdc.stack.paths import stack_paths
from core.errors import ConfigError
from core.settings import Settings

REPO_INFRA = Path(__file__).resolve().parents[4] / "infra"


def test_read_pom() -> None:
    info = artifacts.read_pom(REPO_INFRA / "kafka" / "pom.xml")
    assert info.kafka_version.startswith("4.")
    assert info.debezium_version.endswith(".Final")
    assert info.digest == hashlib.sha256((REPO_INFRA / "kafka" / "pom.xml").read_bytes()).hexdigest()


def test_pom_without_versions(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><properties/></project>')
    with pytest.raises(ConfigError, match=r"kafka\.version"):
        artifacts.read_pom(pom)


def test_stamps_make_fetch_a_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    infra = tmp_path / "infra"
    shutil.copytree(REPO_INFRA / "kafka", infra / "kafka")
    paths = stack_paths(Settings(state_dir=tmp_path / "state"), infra=infra)
    assert not artifacts.up_to_date(paths)

    def no_maven(*args: object, **kwargs: object) -> None:
        raise AssertionError("mvn must not run when the stamps match")

    monkeypatch.setattr(artifacts, "_mvn", no_maven)
    info = artifacts.read_pom(paths.pom)
    for folder in (paths.kafka_libs, paths.plugins):
        folder.mkdir(parents=True)
        (folder / artifacts.STAMP).write_text(info.digest + "\n")
    assert not artifacts.up_to_date(paths)  # stamps alone are not enough: the jars must be there
    (paths.kafka_libs / f"kafka_2.13-{info.kafka_version}.jar").touch()
    plugin = paths.plugins / "debezium-connector-postgres"
    plugin.mkdir()
    (plugin / f"debezium-connector-postgres-{info.debezium_version}.jar").touch()
    assert artifacts.up_to_date(paths)
    lines: list[str] = []
    assert artifacts.fetch(paths, lines.append) is False
    assert "already fetched" in lines[0]

    # Editing the pom (a version bump) invalidates both stamps.
    paths.pom.write_text(paths.pom.read_text().replace("<version>1</version>", "<version>2</version>"))
    assert not artifacts.up_to_date(paths)
