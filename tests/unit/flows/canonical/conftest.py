"""Shared fixtures for the canonical-mapping tests: mapping files written into a temp folder."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.canonical import Mapping, load_mapping

REPO = Path(__file__).resolve().parents[4]
CONFIG = REPO / "config"

WriteMapping = Callable[..., Mapping]


def write_yaml(root: Path, system: str, table: str, text: str) -> Path:
    """Write ``<root>/<system>/<table>.yaml`` (dedented) and return its path."""
    path = root / system / f"{table}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def write_mapping(tmp_path: Path) -> WriteMapping:
    """Write a mapping file and compile it."""

    def write(system: str, table: str, text: str) -> Mapping:
        return load_mapping(write_yaml(tmp_path / "mappings", system, table, text))

    return write
