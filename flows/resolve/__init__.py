"""Entity resolution: pure, deterministic matching logic (no Bytewax, no I/O beyond config files).

* :mod:`.config` -- ``config/matching/<entity>.yaml`` models, loading and writing;
* :mod:`.normalize`, :mod:`.features` -- records to normalised feature values;
* :mod:`.blocking` -- which pairs are compared;
* :mod:`.compare` -- comparison levels and Fellegi-Sunter match weights;
* :mod:`.cluster` -- order-free clustering of a component of the match graph;
* :mod:`.resolver` -- the incremental resolver (upsert/delete -> entity events);
* :mod:`.train` -- unsupervised EM training of m/u, the prior and term frequencies;
* :mod:`.survivorship` -- golden records from cluster members, with per-field provenance;
* :mod:`.golden` -- the golden book: record changes -> versioned golden records, crosswalk, links,
  lineage (:class:`~core.golden.GoldBatch`);
* :mod:`.stages` -- the same resolution as parallel dataflow stages (records, blocks, pairs keyed by
  key group; clustering by entity type; values and golden records by key group), pure functions
  with a completeness protocol, and an in-process driver for any message interleaving;
* :mod:`.operator` -- the Bytewax wiring of the golden book, and :mod:`.staged_operator` of the
  stages (each imported on its own: they need Bytewax).
"""

from flows.resolve.config import (
    MatchingConfig,
    Overrides,
    load_matching_config,
    load_overrides,
    write_matching_config,
)
from flows.resolve.events import EntityEvent
from flows.resolve.golden import GoldenBook, GoldenView, golden_fields, is_resolvable
from flows.resolve.resolver import ClusterExplanation, LinkExplanation, Resolver
from flows.resolve.survivorship import (
    GoldenRecord,
    Member,
    Provenance,
    SurvivorshipConfig,
    build_golden,
    load_survivorship_config,
)
from flows.resolve.train import format_weights, train, train_with_report

__all__ = [
    "ClusterExplanation",
    "EntityEvent",
    "GoldenBook",
    "GoldenRecord",
    "GoldenView",
    "LinkExplanation",
    "MatchingConfig",
    "Member",
    "Overrides",
    "Provenance",
    "Resolver",
    "SurvivorshipConfig",
    "build_golden",
    "format_weights",
    "golden_fields",
    "is_resolvable",
    "load_matching_config",
    "load_overrides",
    "load_survivorship_config",
    "train",
    "train_with_report",
    "write_matching_config",
]
