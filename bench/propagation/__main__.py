"""``python -m bench.propagation``: golden-record propagation to the demo CRM (issue 5's benchmark).

``--mode e2e`` (default, :mod:`bench.propagation.e2e`): source database commit -> value visible
through the CRM API, with the ingest and propagation dataflows running as processes; its numbers are
the top level of ``bench/results/propagation.json``. ``--mode propagation``
(:mod:`bench.propagation.only`): the propagation leg alone (golden change -> CRM acknowledgement),
kept under the ``propagation_only`` key. A run of one mode keeps the other's last numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.propagation import e2e, only
from cdc.stack import load_secrets
from core.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen measurement and merge it into the results file."""
    p = argparse.ArgumentParser(prog="python -m bench.propagation")
    p.add_argument("--mode", choices=["e2e", "propagation"], default="e2e")
    p.add_argument("--rate", type=float, default=1000.0, help="changes/s of the latency measurement")
    p.add_argument("--seconds", type=float, default=10.0, help="propagation mode: paced seconds")
    p.add_argument("--changes", type=int, default=5000, help="propagation mode: golden creates")
    p.add_argument("--customers", type=int, default=5000, help="e2e: bench customers (changes per round)")
    p.add_argument("--rounds", type=int, default=3, help="e2e: paced rounds (medians are reported)")
    p.add_argument("--tick-ms", type=float, default=10.0, help="e2e: one source transaction per tick")
    p.add_argument("--sample", type=int, default=20, help="e2e: changes per round polled live")
    p.add_argument("--settle-s", type=float, default=5.0, help="e2e: pause before each round")
    p.add_argument(
        "--ingest-batch-timeout-ms", type=int, default=None, help="e2e: override dataflow.batch_timeout_ms"
    )
    p.add_argument(
        "--crm-api",
        choices=["shared", "own"],
        default="shared",
        help="e2e: the stack's CRM API, or a private one from this working tree (same database)",
    )
    p.add_argument("--keep", action="store_true", help="e2e: keep the temp dir (logs, Delta tables)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "propagation.json")
    args = p.parse_args(argv)
    settings = load_settings()
    load_secrets(settings)
    command = "python -m bench.propagation " + " ".join(argv if argv is not None else sys.argv[1:])
    previous: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "propagation_only" not in previous and "scope" in previous:
        previous = {"propagation_only": previous}  # the file of the propagation-only bench
    if args.mode == "propagation":
        results = {**previous, "propagation_only": only.run(args, settings, command)}
    else:
        results = {
            **e2e.run(args, settings, command),
            "propagation_only": previous.get("propagation_only"),
        }
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
