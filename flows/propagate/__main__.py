"""``python -m flows.propagate``: run the propagation dataflow in this process.

The same as ``python -m flows.worker propagate`` once ``propagate`` is registered there, plus
``--topic`` (read another golden topic, e.g. a test's own) and ``--target`` (repeatable).
"""

from __future__ import annotations

import logging
import sys

from bytewax.errors import BytewaxRuntimeError

from core.errors import GoldstreamError
from core.settings import load_settings
from flows.engine.runner import ensure_recovery_dir, run_in_process
from flows.propagate.flow import build_propagation_flow
from flows.worker import parser as worker_parser


def main(argv: list[str] | None = None) -> int:
    """Parse the worker options (the flow name is fixed), build and run the flow."""
    p = worker_parser()
    p.prog = "python -m flows.propagate"
    p.add_argument("--topic", action="append", default=[], help="golden topic to read (repeatable)")
    p.add_argument("--target", action="append", default=[], help="target name (repeatable; default all)")
    args = p.parse_args(["bronze", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        flow = build_propagation_flow(
            settings,
            targets=args.target or args.only or None,
            topics=args.topic or None,
            start=args.start,
            dlq=not args.no_dlq,
        )
        recovery = None
        if not args.no_recovery:
            recovery = ensure_recovery_dir(
                settings.recovery_root / "propagate", settings.dataflow.recovery_partitions
            )
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
        return 130
    except BytewaxRuntimeError as exc:
        if "signal received" in str(exc):
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
