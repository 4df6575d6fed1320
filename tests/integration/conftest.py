"""Integration tests run against the real local stack: PostgreSQL, Kafka (KRaft), Connect + Debezium.

The session fixture brings the stack up (idempotent), seeds the demo systems and applies the
connectors, so ``pytest tests/integration`` works on its own as well as from the test script.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.connectors import load_connectors
from core.settings import Settings, load_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """The running stack with seeded demo systems and RUNNING connectors."""
    from cdc.demo import seed
    from cdc.stack import load_secrets, up
    from flows.cli.connectors import apply_connectors

    settings = load_settings()
    load_secrets(settings)
    up(settings)
    load_secrets(settings)
    seed(settings, people=120, seed=7)
    apply_connectors(settings, load_connectors(settings.config_dir / "connectors"), wait=True)
    yield settings
