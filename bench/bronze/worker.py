"""One process of the bronze dataflow on the bench topic: ``python -m bench.bronze.worker``.

The flow is the production one, :func:`flows.bronze.build_bronze_flow`, given the bench connector
(:func:`bench.bronze.generate.connector_file`) and settings pointing at a fresh Delta root; it runs
through :func:`flows.engine.runner.run_in_process` like ``python -m flows.worker``. Differences from
production, all for the measurement: no DLQ producer (a reject would not pollute the shared DLQ
topic; there are none), no metrics endpoint, recovery in the run's own directory (or none).

``--stage-times PATH`` writes wall-clock seconds per stage (:mod:`bench.bronze.stages`).
``--profile PATH`` records a cProfile of the worker thread into ``PATH`` (the profiler is switched
on from inside the first source partition built, because Bytewax runs its workers on threads the
profiler would not otherwise see).
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import time
from pathlib import Path
from typing import Any

from bytewax.errors import BytewaxRuntimeError

from bench.bronze.generate import connector_file
from core.settings import load_settings
from flows.bronze import build_bronze_flow
from flows.engine.kafka_source import KafkaBatchSource
from flows.engine.runner import run_in_process


def _install_profiler(profiler: cProfile.Profile) -> None:
    original = KafkaBatchSource.build_part
    enabled = False

    def build_part(self: KafkaBatchSource, step_id: str, for_part: str, resume_state: int | None) -> Any:
        nonlocal enabled
        if not enabled:
            profiler.enable()  # on the calling (worker) thread
            enabled = True
        return original(self, step_id, for_part, resume_state)

    KafkaBatchSource.build_part = build_part  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """Build the bench bronze flow and run this process's share of it."""
    p = argparse.ArgumentParser(prog="python -m bench.bronze.worker")
    p.add_argument("--delta-root", type=Path, required=True)
    p.add_argument("--recovery-dir", type=Path, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--addresses", default=None)
    p.add_argument("--ready-file", type=Path, default=None, help="touched once the flow is built")
    p.add_argument("--profile", type=Path, default=None)
    p.add_argument("--stage-times", type=Path, default=None, help="write per-stage seconds here")
    args = p.parse_args(argv)
    if args.stage_times is not None:
        from bench.bronze import stages

        stages.install()

    settings = load_settings()
    dataflow = settings.dataflow
    if args.batch_size:
        dataflow = dataflow.model_copy(update={"batch_size": args.batch_size})
    settings = settings.model_copy(update={"delta_root": args.delta_root, "dataflow": dataflow})
    flow = build_bronze_flow(settings, [connector_file(settings)], start="earliest", dlq=False)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        _install_profiler(profiler)
    if args.ready_file is not None:
        args.ready_file.write_text(f"{time.time()}\n", encoding="utf-8")
    try:
        run_in_process(
            flow,
            recovery_dir=args.recovery_dir,
            epoch_s=settings.dataflow.snapshot_interval_s,
            workers=1,
            process_id=args.process_id,
            addresses=args.addresses.split(",") if args.addresses else None,
            metrics_port=None,
        )
    except KeyboardInterrupt:
        pass
    except BytewaxRuntimeError as exc:
        if "signal received" not in str(exc):
            raise
    finally:
        if profiler is not None:
            profiler.dump_stats(str(args.profile))
        if args.stage_times is not None:
            stages.dump(args.stage_times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
