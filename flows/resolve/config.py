"""Matching configuration: ``config/matching/<entity>.yaml`` validated into frozen pydantic models.

One file per entity type holds everything the resolver needs: the features (normalised values),
the blocking keys, the comparisons with their levels and Fellegi-Sunter m/u probabilities, the
prior, the clustering thresholds, the term-frequency tables (usually in a sidecar JSON file written
by ``train``), and the steward overrides. Unknown keys are errors and every error names the file
and the key path (:mod:`core.configfile`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, model_validator

from core.configfile import StrictModel, load_yaml_model, read_yaml, validate
from core.errors import ConfigError
from flows.resolve.normalize import parse_op

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]


class Feature(StrictModel):
    """A normalised value derived from record fields: ``source`` field(s), then ``ops`` in order.

    Several sources are joined with a space; ``join: all`` gives no value when any is missing,
    ``join: any`` joins the present ones, ``join: first`` takes the first present one alone (a
    contact's account reference, else the record's own key: the key of the account "family").
    """

    source: str | tuple[str, ...]
    ops: tuple[str, ...] = ()
    join: Literal["all", "any", "first"] = "all"

    @model_validator(mode="after")
    def _known_ops(self) -> Feature:
        for op in self.ops:
            parse_op(op)
        return self

    @property
    def sources(self) -> tuple[str, ...]:
        """The record fields read, in order."""
        return (self.source,) if isinstance(self.source, str) else self.source


class BlockingKey(StrictModel):
    """Records sharing the values of all ``features`` are compared (subject to the block size cap)."""

    name: str
    features: tuple[str, ...] = Field(min_length=1)


class Blocking(StrictModel):
    """Blocking keys; a key value held by more than ``max_block_size`` records generates no pairs.

    The cap is part of the definition of a candidate pair (two records are compared when they share
    a key value held by at most ``max_block_size`` current records), so it is order-independent.
    """

    max_block_size: int = Field(default=100, ge=2)
    keys: tuple[BlockingKey, ...] = Field(min_length=1)


_KINDS: tuple[str, ...] = (
    "exact",
    "any_exact",
    "swapped",
    "crossed",
    "jaro_winkler",
    "jaro",
    "levenshtein",
    "damerau_levenshtein",
    "token_set",
    "date_diff",
    "numeric_diff",
)
_NEEDS_MIN = ("jaro_winkler", "jaro", "token_set")
_NEEDS_MAX = ("levenshtein", "damerau_levenshtein", "date_diff", "numeric_diff")


class Predicate(StrictModel):
    """One test on a pair of records; exactly one kind is set.

    ``exact: f`` equal values; ``any_exact: [f, g...]`` some value among the features on one side
    equals some value among them on the other (a phone found as the other's mobile); ``swapped:
    [a, b]`` a and b exchanged; ``crossed: [a, b]`` a on one side equals b on the other, either way
    round, never a with a (one record's reference to the other's key, an email local part spelling
    the other's name); ``jaro_winkler|jaro|token_set:
    f`` with ``min`` similarity in [0, 1]; ``levenshtein|damerau_levenshtein: f`` with ``max`` edits;
    ``date_diff: f`` (ISO dates) with ``max`` days; ``numeric_diff: f`` with ``max`` absolute
    difference, or relative to the larger magnitude with ``relative: true``.
    """

    exact: str | None = None
    any_exact: tuple[str, ...] | None = None
    swapped: tuple[str, str] | None = None
    crossed: tuple[str, str] | None = None
    jaro_winkler: str | None = None
    jaro: str | None = None
    levenshtein: str | None = None
    damerau_levenshtein: str | None = None
    token_set: str | None = None
    date_diff: str | None = None
    numeric_diff: str | None = None
    min: float | None = Field(default=None, ge=0.0, le=1.0)
    max: float | None = Field(default=None, ge=0.0)
    relative: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Predicate:
        kinds = [k for k in _KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"set exactly one of {', '.join(_KINDS)} (got {kinds or 'none'})")
        kind = kinds[0]
        if kind in _NEEDS_MIN and self.min is None:
            raise ValueError(f"{kind} needs min (a similarity in [0, 1])")
        if kind in _NEEDS_MAX and self.max is None:
            raise ValueError(f"{kind} needs max")
        if kind not in _NEEDS_MIN and self.min is not None:
            raise ValueError(f"min does not apply to {kind}")
        if kind not in _NEEDS_MAX and self.max is not None:
            raise ValueError(f"max does not apply to {kind}")
        if self.relative and kind != "numeric_diff":
            raise ValueError("relative applies to numeric_diff only")
        if kind == "any_exact" and not self.any_exact:
            raise ValueError("any_exact needs at least one feature")
        return self

    @property
    def kind(self) -> str:
        """Which test this is."""
        return next(k for k in _KINDS if getattr(self, k) is not None)

    @property
    def features(self) -> tuple[str, ...]:
        """The features the test reads."""
        value = getattr(self, self.kind)
        return tuple(value) if isinstance(value, tuple) else (value,)


class Level(StrictModel):
    """One outcome of a comparison. Levels are tried in order; the first that holds is the outcome.

    ``missing: [features]`` makes this the null level (weight 0): it holds when any listed feature
    is missing on either side, or with ``missing_mode: all`` when every listed feature is.
    Otherwise ``when`` lists predicates that must all hold; an empty ``when`` is the catch-all
    ``else`` level, which must come last. ``m`` and ``u`` are the Fellegi-Sunter
    probabilities of the outcome among matches and non-matches; ``tf`` names the feature whose
    value frequency replaces ``u`` when this level holds (term-frequency adjustment).
    """

    label: str
    missing: tuple[str, ...] | None = None
    missing_mode: Literal["any", "all"] = "any"
    when: tuple[Predicate, ...] = ()
    m: Probability | None = None
    u: Probability | None = None
    tf: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Level:
        if self.missing is not None:
            if self.when or self.m is not None or self.u is not None or self.tf is not None:
                raise ValueError("a null level (missing) has no when, m, u or tf (its weight is 0)")
            if not self.missing:
                raise ValueError("missing needs at least one feature")
        return self

    @property
    def is_null(self) -> bool:
        """True for the null level."""
        return self.missing is not None

    @property
    def is_else(self) -> bool:
        """True for the catch-all level."""
        return self.missing is None and not self.when

    def weight(self) -> float:
        """log2(m/u): the evidence this outcome adds (0 for the null level or untrained levels)."""
        if self.m is None or self.u is None:
            return 0.0
        return math.log2(self.m / self.u)


class Comparison(StrictModel):
    """One aspect of two records (a name, a date of birth...) and its ordered outcome levels."""

    name: str
    levels: tuple[Level, ...] = Field(min_length=2)
    tf_weight: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of the term-frequency adjustment applied (1 = full, as Splink does)."""
    tf_min_u: float = Field(default=1e-6, gt=0.0, lt=1.0)
    """Floor of a term-frequency u, so a value never seen in training is not infinitely rare."""

    @model_validator(mode="after")
    def _else_last(self) -> Comparison:
        if not self.levels[-1].is_else:
            raise ValueError(f"comparison {self.name}: the last level must be a catch-all (no when)")
        for lvl in self.levels[:-1]:
            if lvl.is_else:
                raise ValueError(f"comparison {self.name}: only the last level may be a catch-all")
        labels = [lvl.label for lvl in self.levels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"comparison {self.name}: level labels must be unique")
        return self


class Clustering(StrictModel):
    """How scored pairs become entities (see :mod:`flows.resolve.cluster`).

    Pairs scoring at least ``edge_floor`` are kept as edges, with their breakdown. Edges scoring at
    least ``threshold`` are visited strongest first, and each joins the two clusters it connects when
    the mean match weight over *all* their cross pairs (a pair without an edge counting
    ``missing_weight``) is at least ``min_cluster_support``: average linkage, the guard against
    chaining. ``min_cluster_support: null`` turns the guard off (plain connected components).
    """

    threshold: Probability = 0.9
    edge_floor: Probability = 0.5
    min_cluster_support: float | None = 0.0
    missing_weight: float = -2.0

    @model_validator(mode="after")
    def _floor_below_threshold(self) -> Clustering:
        if self.edge_floor > self.threshold:
            raise ValueError("edge_floor must not be above threshold")
        return self


class TermFrequencyTable(StrictModel):
    """How often each value of one feature occurred in the training data."""

    total: int = Field(ge=0)
    counts: dict[str, int] = Field(default_factory=dict)
    """Values seen at least twice; any other value counts as seen once."""


class TermFrequencies(StrictModel):
    """Term-frequency tables per feature, inline or in a JSON sidecar ``file`` (relative path)."""

    file: str | None = None
    tables: dict[str, TermFrequencyTable] = Field(default_factory=dict)


class Training(StrictModel):
    """Settings of the unsupervised EM trainer (``goldstream match train``)."""

    seed: int = 42
    u_max_pairs: int = Field(default=1_000_000, ge=1000)
    em_max_pairs: int = Field(default=2_000_000, ge=1000)
    em_max_iterations: int = Field(default=100, ge=1)
    em_tolerance: float = Field(default=1e-5, gt=0.0)
    estimate_u: Literal["random", "em"] = "random"
    """``random``: u from random record pairs (fixed during EM); ``em``: u estimated by EM too."""
    em_sessions: tuple[tuple[str, ...], ...] = ()
    """EM runs, each on the pairs agreeing exactly on these features (as Splink's training blocking
    rules); comparisons reading the same record fields are held fixed in that run. Empty: one run
    over the resolver's own candidate pairs with every comparison estimated."""
    em_max_block_size: int = Field(default=1000, ge=2)
    fix_m: tuple[str, ...] = ()
    """Comparisons whose m stays as configured (domain knowledge EM should not overrule)."""


class Overrides(StrictModel):
    """Steward decisions that survive re-matching: record id pairs forced together or apart."""

    must_link: tuple[tuple[str, str], ...] = ()
    cannot_link: tuple[tuple[str, str], ...] = ()


class MatchingConfig(StrictModel):
    """Everything the resolver needs for one entity type."""

    entity: str
    features: dict[str, Feature]
    blocking: Blocking
    comparisons: tuple[Comparison, ...] = Field(min_length=1)
    prior: Probability = 1e-4
    """Probability that two compared records match before looking at them (lambda)."""
    clustering: Clustering = Clustering()
    term_frequencies: TermFrequencies = TermFrequencies()
    training: Training = Training()
    overrides: Overrides = Overrides()

    @model_validator(mode="after")
    def _references(self) -> MatchingConfig:
        known = set(self.features)

        def check(names: tuple[str, ...], where: str) -> None:
            for n in names:
                if n not in known:
                    raise ValueError(f"{where}: unknown feature {n!r} (features: {', '.join(sorted(known))})")

        for key in self.blocking.keys:
            check(key.features, f"blocking key {key.name}")
        names = [k.name for k in self.blocking.keys]
        if len(set(names)) != len(names):
            raise ValueError("blocking key names must be unique")
        for comp in self.comparisons:
            for lvl in comp.levels:
                where = f"comparison {comp.name} level {lvl.label}"
                check(lvl.missing or (), where)
                for pred in lvl.when:
                    check(pred.features, where)
                if lvl.tf is not None:
                    check((lvl.tf,), where)
        for session in self.training.em_sessions:
            check(session, "training.em_sessions")
        cnames = [c.name for c in self.comparisons]
        if len(set(cnames)) != len(cnames):
            raise ValueError("comparison names must be unique")
        return self

    def feature_names(self) -> tuple[str, ...]:
        """Feature names in declaration order (the order of a record's feature tuple)."""
        return tuple(self.features)


def load_overrides(path: Path | str) -> Overrides:
    """Read steward overrides kept in their own YAML file (``must_link`` / ``cannot_link`` pairs)."""
    return load_yaml_model(Path(path), Overrides)


def load_matching_config(path: Path | str) -> MatchingConfig:
    """Read and validate a matching config; a ``term_frequencies.file`` is read relative to it."""
    path = Path(path)
    data = read_yaml(path)
    config = validate(MatchingConfig, data, source=str(path))
    tf = config.term_frequencies
    if tf.file is not None:
        side = path.parent / tf.file
        try:
            raw = json.loads(side.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: term_frequencies.file: {side} not found") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{side}: not valid JSON: {exc}") from exc
        tables = validate(TermFrequencies, {"tables": raw}, source=str(side)).tables
        config = config.model_copy(update={"term_frequencies": TermFrequencies(file=tf.file, tables=tables)})
    return config


def _plain(config: MatchingConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json", exclude_defaults=True)
    # Keep the sections a reader looks for even when they hold defaults.
    data.setdefault("prior", config.prior)
    data["clustering"] = config.clustering.model_dump(mode="json")
    for comp in data.get("comparisons", []):
        for lvl in comp.get("levels", []):
            for pred in lvl.get("when", []):
                for k in [k for k, v in pred.items() if v is None]:
                    del pred[k]
    return data


def write_matching_config(config: MatchingConfig, path: Path | str, *, tf_file: str | None = None) -> None:
    """Write ``config`` as YAML to ``path``; term-frequency tables go to a JSON sidecar.

    The sidecar is ``tf_file`` (relative to ``path``), or ``<stem>.tf.json`` beside the YAML.
    """
    path = Path(path)
    tf = config.term_frequencies
    data = _plain(config)
    data.pop("term_frequencies", None)
    if tf.tables:
        name = tf_file or tf.file or f"{path.stem}.tf.json"
        tables = {k: v.model_dump(mode="json") for k, v in sorted(tf.tables.items())}
        (path.parent / name).write_text(
            json.dumps(tables, sort_keys=True, ensure_ascii=False) + "\n", "utf-8"
        )
        data["term_frequencies"] = {"file": name}
    header = f"# Matching config for entity {config.entity!r}. m/u and term frequencies come from `train`.\n"
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
    path.write_text(header + text, encoding="utf-8")
