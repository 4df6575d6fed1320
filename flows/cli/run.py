"""``goldstream run``: start a dataflow with a number of processes and workers."""

from __future__ import annotations

from typing import Annotated

import typer

from cdc.topics import probe_broker
from flows.cli.common import console, friendly_errors, settings
from flows.engine.runner import ensure_recovery_dir, run_cluster
from flows.worker import FLOWS, reset_recovery
from flows.worker import main as worker_main


@friendly_errors
def run(
    flow: Annotated[str, typer.Argument(help=f"Which dataflow: {', '.join(sorted(FLOWS))}.")] = "ingest",
    processes: Annotated[int, typer.Option("--processes", "-p", min=1, help="Worker processes.")] = 1,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker threads per process.")] = 1,
    start: Annotated[
        str,
        typer.Option(
            help="Where a partition with no recovery state starts: its beginning (earliest) or "
            "its end when the flow starts (latest; kept in the next snapshot)."
        ),
    ] = "earliest",
    only: Annotated[list[str] | None, typer.Option(help="Only these connectors/systems.")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Forget recovery state (offsets) first.")] = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port of process 0 (process i uses port+i).")
    ] = None,
    no_dlq: Annotated[
        bool, typer.Option("--no-dlq", help="Do not publish rejects to the DLQ topic.")
    ] = False,
    no_resolve: Annotated[
        bool, typer.Option("--no-resolve", help="ingest: stop at silver (no entity resolution/gold).")
    ] = False,
) -> None:
    """Run a dataflow until interrupted (Ctrl-C stops it; a restart resumes from recovery)."""
    if flow not in FLOWS:
        raise typer.BadParameter(f"unknown flow {flow!r}; choose from {sorted(FLOWS)}")
    if start not in ("earliest", "latest"):
        raise typer.BadParameter("--start must be earliest or latest")
    s = settings()
    total = processes * workers
    if total > s.dataflow.recovery_partitions:
        raise typer.BadParameter(
            f"{total} workers but the recovery store has {s.dataflow.recovery_partitions} partitions "
            "(dataflow.recovery_partitions in config/goldstream.yaml)"
        )
    # Bytewax's Kafka input would hang on an unreachable broker; fail fast with a clear message.
    probe_broker(s.kafka.bootstrap_servers)
    if reset and reset_recovery(s, flow):
        console.print(f"recovery state of {flow} deleted")
    # Created here, before any worker process starts, so the processes never race to create it.
    ensure_recovery_dir(s.recovery_root / flow, s.dataflow.recovery_partitions)
    args = [f"--start={start}"]
    args += [f"--only={o}" for o in only or []]
    if metrics_port is not None:
        args.append(f"--metrics-port={metrics_port}")
    if no_dlq:
        args.append("--no-dlq")
    if no_resolve:
        args.append("--no-resolve")
    port = metrics_port if metrics_port is not None else s.dataflow.metrics_port
    console.print(
        f"running {flow}: {processes} process(es) x {workers} worker(s); "
        f"metrics on http://127.0.0.1:{port}/metrics; Delta tables under {s.delta_root}"
    )
    if processes == 1:
        code = worker_main([flow, f"--workers={workers}", *args])
    else:
        code = run_cluster(flow, processes=processes, workers=workers, extra_args=args)
    if code not in (0, 130):
        raise typer.Exit(code)
