"""The compiled configuration every stage of one entity shares (never part of a stage's state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.resolve.blocking import BlockKeyer
from flows.resolve.cluster import ClusterParams
from flows.resolve.compare import Scorer, weight_of
from flows.resolve.config import MatchingConfig, Overrides, load_matching_config
from flows.resolve.features import FeatureExtractor
from flows.resolve.golden import (
    golden_fields,
    load_file_overrides,
    matching_path,
    merge_overrides,
    survivorship_path,
    survivorship_plan,
)
from flows.resolve.survivorship import Group, SurvivorshipConfig, load_survivorship_config


@dataclass
class StageContext:
    """One entity's matching and survivorship config, compiled once per worker.

    ``shards`` is the number of key groups of every keyed stage. ``overrides`` are the steward
    overrides the cluster step starts from (the matching config's own plus the file's).
    """

    matching: MatchingConfig
    survivorship: SurvivorshipConfig
    shards: int
    fields: tuple[str, ...] = ()
    overrides: Overrides = field(default_factory=Overrides)
    entity: str = ""
    extract: FeatureExtractor = field(init=False)
    keyer: BlockKeyer = field(init=False)
    scorer: Scorer = field(init=False)
    params: ClusterParams = field(init=False)
    floor: float = field(init=False)
    cap: int = field(init=False)
    groups: tuple[tuple[str, Group], ...] = field(init=False)
    rules: tuple[tuple[str, str], ...] = field(init=False)
    n_comparisons: int = field(init=False)
    golden_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError("shards must be at least 1")
        m = self.matching
        if m.entity != self.survivorship.entity:
            raise ValueError(
                f"matching config is for {m.entity!r}, survivorship for {self.survivorship.entity!r}"
            )
        self.entity = m.entity
        if not self.fields:
            self.fields = golden_fields(self.entity, self.survivorship)
        self.overrides = merge_overrides(m.overrides, self.overrides)
        self.extract = FeatureExtractor(m)
        self.keyer = BlockKeyer(m)
        self.scorer = Scorer(m)
        cl = m.clustering
        self.params = ClusterParams(weight_of(cl.threshold), cl.min_cluster_support, cl.missing_weight)
        self.floor = weight_of(cl.edge_floor)
        self.cap = m.blocking.max_block_size
        self.groups, self.rules = survivorship_plan(self.survivorship, self.fields)
        self.n_comparisons = len(m.comparisons)
        self.golden_prefix = f"{self.entity}-"

    @classmethod
    def from_config_dir(cls, config_dir: Path, entity: str, shards: int) -> StageContext:
        """The context of ``entity`` from ``config/matching``, ``config/survivorship`` and the
        optional steward overrides file."""
        return cls(
            load_matching_config(matching_path(config_dir, entity)),
            load_survivorship_config(survivorship_path(config_dir, entity)),
            shards,
            overrides=load_file_overrides(config_dir, entity),
        )

    def __getstate__(self) -> Any:
        raise TypeError("a StageContext is rebuilt from config, never pickled")
