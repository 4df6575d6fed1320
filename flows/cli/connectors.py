"""``goldstream connectors ...``: validate, apply, inspect and render the Debezium connectors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cdc.connect_client import ConnectClient, connector_state
from cdc.connectors import ConnectorFile, load_connectors, strimzi_resource
from cdc.readiness import sentinel_roundtrip, wait_running
from cdc.topics import ensure_topics, probe_broker
from core.errors import ConfigError
from core.settings import Settings
from flows.cli.common import friendly_errors, settings

app = typer.Typer(no_args_is_help=True)
out = Console()

Only = Annotated[list[str] | None, typer.Argument(help="Connector names or systems (default: all).")]


def _load(s: Settings, only: list[str] | None) -> list[ConnectorFile]:
    return load_connectors(s.config_dir / "connectors", only=only)


def apply_connectors(
    s: Settings, connectors: list[ConnectorFile], *, wait: bool = True, log: Console = out
) -> None:
    """Create topics, PUT each config, and (with ``wait``) check RUNNING plus a sentinel round-trip."""
    probe_broker(s.kafka.bootstrap_servers)
    with ConnectClient(s.connect.url) as client:
        client.call_with_retry("GET", "/", deadline_s=60)
        for c in connectors:
            created = ensure_topics(
                s.kafka.bootstrap_servers,
                c.table_topics(include_internal=True),
                partitions=c.topics.partitions or s.kafka.topic_partitions,
                config=c.topics.config,
            )
            if created:
                log.print(f"  {c.name}: created {len(created)} topic(s)")
            problems = client.validate(c.name, c.rest_config())
            if problems:
                raise ConfigError(f"{c.name}: Debezium rejected the config:\n  " + "\n  ".join(problems))
            client.put_config(c.name, c.rest_config())
            log.print(f"  {c.name}: config applied")
        if not wait:
            return
        for c in connectors:
            t0 = time.monotonic()
            wait_running(client, c.name)
            took = sentinel_roundtrip(s, c)
            took_all = time.monotonic() - t0
            log.print(f"  {c.name}: RUNNING, sentinel arrived in {took:.1f}s (ready after {took_all:.1f}s)")


@app.command("check")
@friendly_errors
def check() -> None:
    """Validate every connector file (no services needed)."""
    s = settings()
    for c in _load(s, None):
        out.print(f"[green]ok[/green] {c.name}: {len(c.table_topics())} table topic(s)")


@app.command("apply")
@friendly_errors
def apply(
    only: Only = None,
    wait: Annotated[bool, typer.Option(help="Wait for RUNNING and a sentinel round-trip.")] = True,
) -> None:
    """Create the topics and create/update the connectors on Kafka Connect (idempotent)."""
    s = settings()
    apply_connectors(s, _load(s, only), wait=wait)


@app.command("status")
@friendly_errors
def status(only: Only = None) -> None:
    """Show each connector's state and its tasks' states."""
    s = settings()
    table = Table("connector", "state", "tasks", "topics")
    bad = False
    with ConnectClient(s.connect.url) as client:
        for c in _load(s, only):
            state, tasks = connector_state(client.status(c.name))
            bad = bad or state != "RUNNING" or any(t != "RUNNING" for t in tasks)
            table.add_row(c.name, state, ",".join(tasks) or "-", str(len(c.table_topics())))
    out.print(table)
    if bad:
        raise typer.Exit(1)


@app.command("delete")
@friendly_errors
def delete(only: Only = None) -> None:
    """Delete connectors from Kafka Connect (their replication slots stay; topics stay)."""
    s = settings()
    with ConnectClient(s.connect.url) as client:
        for c in _load(s, only):
            out.print(f"{c.name}: {'deleted' if client.delete(c.name) else 'not present'}")


@app.command("render")
@friendly_errors
def render(
    only: Only = None,
    strimzi: Annotated[bool, typer.Option("--strimzi", help="Strimzi KafkaConnector resources.")] = False,
    cluster: Annotated[str, typer.Option(help="Strimzi KafkaConnect cluster name.")] = "goldstream-connect",
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Directory to write files to.")
    ] = None,
) -> None:
    """Print (or write) the configs as Connect REST JSON, or as Strimzi resources."""
    import json

    s = settings()
    for c in _load(s, only):
        if strimzi:
            text, suffix = strimzi_resource(c, cluster=cluster, namespace=namespace), ".yaml"
        else:
            text, suffix = json.dumps({"name": c.name, "config": c.rest_config()}, indent=2) + "\n", ".json"
        if output is None:
            out.print(text, markup=False, highlight=False)
        else:
            output.mkdir(parents=True, exist_ok=True)
            (output / f"{c.name}{suffix}").write_text(text, encoding="utf-8")
            out.print(f"wrote {output / (c.name + suffix)}")
