"""The demo source systems: four PostgreSQL databases (crm, erp, shop, billing) that disagree the way
real systems do, seeded with the same people, plus a load generator.

Schemas live in ``infra/demo/<system>/schema.sql``; the ground truth (which source row is which
person) is written to ``<state_dir>/demo/truth.parquet``.
"""

from cdc.demo.loadgen import LoadProgress, LoadSummary, OpMix, load
from cdc.demo.seeder import SeedSummary, SystemSeedResult, SystemState, seed, status
from cdc.demo.systems import SYSTEMS
from cdc.demo.truth import TruthRow, read_truth, truth_path

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
