"""Entry point of one dataflow process: ``python -m flows.worker <flow> [options]``.

``goldstream run`` starts one of these per process and supervises them.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable

from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError

from core.errors import GoldstreamError
from core.settings import Settings, load_settings
from flows.engine.runner import ensure_recovery_dir, run_in_process

FlowBuilder = Callable[[Settings, argparse.Namespace], Dataflow]

# Each builder imports its flow's modules when it is called: a process runs one flow, and importing
# all three (mapping engine, resolver, HTTP clients...) cost ~1 s of every process start.


def _bronze(settings: Settings, args: argparse.Namespace) -> Dataflow:
    from cdc.connectors import load_connectors
    from flows.bronze import build_bronze_flow

    connectors = load_connectors(settings.config_dir / "connectors", only=args.only or None)
    return build_bronze_flow(settings, connectors, start=args.start, dlq=not args.no_dlq)


def _ingest(settings: Settings, args: argparse.Namespace) -> Dataflow:
    from cdc.connectors import load_connectors
    from flows.ingest import build_ingest_flow

    connectors = load_connectors(settings.config_dir / "connectors", only=args.only or None)
    return build_ingest_flow(
        settings,
        connectors,
        start=args.start,
        dlq=not args.no_dlq,
        resolve_entities=not args.no_resolve,
    )


def _propagate(settings: Settings, args: argparse.Namespace) -> Dataflow:
    from flows.propagate.flow import build_from_args

    return build_from_args(settings, args)


#: ``bronze``: the raw change log only; ``ingest``: bronze + canonical + silver (+ resolution);
#: ``propagate``: golden.<entity> -> the CRM/ERP APIs (``--only`` names targets).
FLOWS: dict[str, FlowBuilder] = {"bronze": _bronze, "ingest": _ingest, "propagate": _propagate}


def parser() -> argparse.ArgumentParser:
    """Arguments shared by ``goldstream run`` and the worker processes."""
    p = argparse.ArgumentParser(prog="python -m flows.worker")
    p.add_argument("flow", choices=sorted(FLOWS))
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--addresses", default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--start", choices=["earliest", "latest"], default="earliest")
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--no-dlq", action="store_true")
    p.add_argument("--no-resolve", action="store_true", help="ingest: stop at silver")
    p.add_argument("--no-recovery", action="store_true")
    p.add_argument("--metrics-port", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    """Build the named flow and run this process's share of it."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        flow = FLOWS[args.flow](settings, args)
        recovery = None
        if not args.no_recovery:
            recovery = ensure_recovery_dir(
                settings.recovery_root / args.flow, settings.dataflow.recovery_partitions
            )
            if args.flow == "ingest" and not args.no_resolve:
                from flows.resolve.layout import check_layout

                d = settings.dataflow
                check_layout(recovery, d.resolve_mode, d.resolve_key_groups)
        run_in_process(
            flow,
            recovery_dir=recovery,
            epoch_s=settings.dataflow.snapshot_interval_s,
            workers=args.workers,
            process_id=args.process_id,
            addresses=args.addresses.split(",") if args.addresses else None,
            metrics_port=args.metrics_port
            if args.metrics_port is not None
            else settings.dataflow.metrics_port,
        )
    except GoldstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _stopped(args.flow, recovery=not args.no_recovery)
        return 130
    except BytewaxRuntimeError as exc:
        # Bytewax turns SIGINT/SIGTERM into this error; it is a requested stop, not a failure.
        if "signal received" in str(exc):
            _stopped(args.flow, recovery=not args.no_recovery)
            return 130
        raise
    return 0


def _stopped(flow: str, *, recovery: bool) -> None:
    # Bytewax stops its worker with a Rust panic and prints "thread '<unnamed>' panicked at
    # src/run.rs" (plus a backtrace when RUST_BACKTRACE is set): say that this was a clean stop.
    resume = "resumes from the last recovery snapshot" if recovery else "starts over (no recovery store)"
    logging.getLogger("flows.worker").info("%s flow stopped by a signal; the next start %s", flow, resume)


def reset_recovery(settings: Settings, flow: str) -> bool:
    """Delete a flow's recovery store (offsets and state); True if there was one."""
    path = settings.recovery_root / flow
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


if __name__ == "__main__":
    sys.exit(main())
