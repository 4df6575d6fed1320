"""The demo source systems: four PostgreSQL databases (crm, erp, shop, billing) that disagree the way
real systems do, seeded with the same people, plus a load generator.

Schemas live in ``infra/demo/<system>/schema.sql``; the ground truth (which source row is which
person) is written to ``<state_dir>/demo/truth.parquet``.

The names below are imported from their modules on first use: ``cdc.demo.api`` (started by
``goldstream stack up``, checked by ``stack status``) lives in this package, and importing the
seeder and load generator with it cost every stack command ~0.6 s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdc.demo.loadgen import LoadProgress, LoadSummary, OpMix, load
    from cdc.demo.seeder import SeedSummary, SystemSeedResult, SystemState, seed, status
    from cdc.demo.systems import SYSTEMS
    from cdc.demo.truth import TruthRow, read_truth, truth_path

_HOME = {
    "LoadProgress": "loadgen",
    "LoadSummary": "loadgen",
    "OpMix": "loadgen",
    "load": "loadgen",
    "SeedSummary": "seeder",
    "SystemSeedResult": "seeder",
    "SystemState": "seeder",
    "seed": "seeder",
    "status": "seeder",
    "SYSTEMS": "systems",
    "TruthRow": "truth",
    "read_truth": "truth",
    "truth_path": "truth",
}

__all__ = [
    "SYSTEMS",
    "LoadProgress",
    "LoadSummary",
    "OpMix",
    "SeedSummary",
    "SystemSeedResult",
    "SystemState",
    "TruthRow",
    "load",
    "read_truth",
    "seed",
    "status",
    "truth_path",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
