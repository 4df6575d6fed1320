"""Scaling: run the bronze flow as a 2-process cluster, stop, change data, resume with 1 process."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import psycopg

from cdc.connectors import load_connectors
from cdc.pg import admin_dsn
from core.settings import Settings
from flows.bronze import bronze_topics
from tests.integration.flows.test_bronze_crash import bronze_rows, kafka_change_offsets
from tests.integration.helpers import FlowProcess, isolated_config, wait_for


def landed(flow: FlowProcess, delta: Path, expected: int) -> bool | None:
    """True once ``expected`` rows are in bronze; fails at once (with the log) if the cluster died."""
    assert flow.alive(), f"the flow exited with {flow.proc.poll() if flow.proc else None}:\n{flow.tail()}"
    return True if bronze_rows(delta).height >= expected else None


def run_until_caught_up(
    config: Path, log: Path, processes: int, stack: Settings, topics: list[str], delta: Path
):  # type: ignore[no-untyped-def]
    expected = kafka_change_offsets(stack, topics)
    args = ["run", "bronze", "--processes", str(processes), "--only", "crm", "--no-dlq"]
    start = log.stat().st_size if log.exists() else 0
    with FlowProcess(config, *args, log=log, module="flows.cli") as flow:
        wait_for(
            f"{processes}-process flow to land {len(expected)} messages",
            lambda: landed(flow, delta, len(expected)),
            timeout=180,
            every=1,
        )
        time.sleep(2)
        assert flow.alive(), flow.tail()
        code = flow.stop()
    assert code in (0, 130), flow.tail()
    # every process says the interrupt was a clean stop (Bytewax prints a Rust panic for it)
    this_run = log.read_bytes()[start:].decode(errors="replace")
    stops = this_run.count("bronze flow stopped by a signal; the next start resumes from the last")
    assert stops == processes, flow.tail()
    return expected


def test_two_processes_then_rescale_to_one(stack: Settings, tmp_path: Path) -> None:
    config = isolated_config(tmp_path, stack, snapshot_interval_s=1)
    crm = load_connectors(stack.config_dir / "connectors", only=["crm"])
    topics = bronze_topics(crm)
    delta, log = tmp_path / "delta", tmp_path / "flow.log"

    before = run_until_caught_up(config, log, 2, stack, topics, delta)
    assert "2 process(es)" in log.read_text()

    with psycopg.connect(admin_dsn(stack, "crm"), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.accounts (account_id, account_type, name) "
            "SELECT gen_random_uuid(), 'Organization', 'Rescale Test GmbH ' || i "
            "FROM generate_series(1, 40) i"
        )
        conn.execute("UPDATE public.accounts SET industry = 'Scaling' WHERE name LIKE 'Rescale Test GmbH 1%'")
    # Debezium publishes asynchronously: wait until the 40 inserts are in Kafka before resuming.
    wait_for(
        "the new rows on the crm topics",
        lambda: True if len(kafka_change_offsets(stack, topics) - before) >= 40 else None,
        timeout=120,
        every=1,
    )

    expected = run_until_caught_up(config, log, 1, stack, topics, delta)
    df = bronze_rows(delta)
    positions = list(zip(df["topic"], df["partition"], df["offset"], strict=True))
    assert not [p for p, n in Counter(positions).items() if n > 1]
    assert set(positions) == expected
