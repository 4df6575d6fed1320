"""The local stack without Docker: PostgreSQL 15, Kafka 4.3 (KRaft), Kafka Connect + Debezium.

Public entry points (the CLI ``goldstream stack ...`` and the test fixtures use these):

* :func:`fetch` - Kafka/Connect jars and the Debezium plugin from Maven Central (idempotent).
* :func:`up` / :func:`down` / :func:`status` - start, stop and inspect the three components.
* :func:`load_secrets` - put ``<state>/secrets.env`` into ``os.environ`` (call before using settings
  that need the CDC password).
* :func:`ensure_publication` - rerun after a source schema change (grants + ``goldstream_pub``).

Everything generated lives under ``settings.state_dir``; templates live in ``infra/``.
"""

from __future__ import annotations

from cdc.stack import artifacts
from cdc.stack.credentials import load_secrets
from cdc.stack.lifecycle import ComponentStart, ComponentStatus, Timeouts, down, status, up
from cdc.stack.paths import StackPaths, stack_paths
from cdc.stack.postgres import PUBLICATION, ensure_publication
from cdc.stack.proc import Echo, log_echo
from core.settings import Settings


def fetch(settings: Settings, *, echo: Echo = log_echo, force: bool = False) -> bool:
    """Download the Kafka runtime jars and the Debezium plugin if missing or stale (pom hash stamp).

    Returns True if anything was downloaded.
    """
    return artifacts.fetch(stack_paths(settings), echo, force=force)


__all__ = [
    "PUBLICATION",
    "ComponentStart",
    "ComponentStatus",
    "Echo",
    "StackPaths",
    "Timeouts",
    "down",
    "ensure_publication",
    "fetch",
    "load_secrets",
    "stack_paths",
    "status",
    "up",
]
