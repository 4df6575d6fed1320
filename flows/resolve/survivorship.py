"""Survivorship: the golden record of a cluster, field by field, with the reason each value won.

``config/survivorship/<entity>.yaml`` names, per attribute, a rule and the sources it trusts:

* ``source_priority``: the value from the first source in ``priority`` that has one;
* ``most_recent``: the value of the most recently changed record (``source_ts``);
* ``most_complete``: the longest value (a single field) or, for a group, the record filling the
  most fields of the group;
* ``most_frequent``: the value most records agree on, each vote weighted by its source's trust.

Ties are broken by source trust, then recency, then record id, so the result is a function of the
member records alone, whatever order they come in. A *group* (an address: street, postal code,
city...) is decided once and all its fields come from the winning record, so a golden address is
never stitched together from two different addresses. Every golden value carries its provenance:
source, record id, source timestamp and rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from core.configfile import StrictModel, load_yaml_model

Rule = Literal["source_priority", "most_recent", "most_complete", "most_frequent"]
Trust = Annotated[float, Field(ge=0.0, le=1.0)]


class Source(StrictModel):
    """How far a source system is trusted (vote weight and tie-breaker)."""

    trust: Trust = 0.5


class AttributeRule(StrictModel):
    """The rule for one attribute (or group); ``priority`` lists sources for ``source_priority``."""

    rule: Rule
    priority: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _priority_for_priority_rule(self) -> AttributeRule:
        if self.rule == "source_priority" and not self.priority:
            raise ValueError("source_priority needs priority: [source, ...]")
        return self


class Group(AttributeRule):
    """Fields that win together, decided by one rule over whole records."""

    fields: tuple[str, ...] = Field(min_length=2)


class SurvivorshipConfig(StrictModel):
    """``config/survivorship/<entity>.yaml``."""

    entity: str
    sources: dict[str, Source] = Field(default_factory=dict)
    default: AttributeRule = AttributeRule(rule="most_frequent")
    """The rule for attributes not listed."""
    attributes: dict[str, AttributeRule] = Field(default_factory=dict)
    groups: dict[str, Group] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _disjoint(self) -> SurvivorshipConfig:
        seen: dict[str, str] = {}
        for name, group in self.groups.items():
            for f in group.fields:
                if f in seen:
                    raise ValueError(f"field {f!r} is in groups {seen[f]!r} and {name!r}")
                if f in self.attributes:
                    raise ValueError(f"field {f!r} has its own rule and is in group {name!r}")
                seen[f] = name
        return self

    def trust(self, source: str) -> float:
        """Trust of a source (0.5 for one the config does not name)."""
        s = self.sources.get(source)
        return s.trust if s is not None else 0.5


def load_survivorship_config(path: Path | str) -> SurvivorshipConfig:
    """Read and validate a survivorship config (errors name the file and key path)."""
    return load_yaml_model(Path(path), SurvivorshipConfig)


@dataclass(frozen=True, slots=True)
class Member:
    """One source record of a cluster, with its lineage."""

    record_id: str
    source: str
    source_ts: dt.datetime
    values: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a golden value came from and why it won."""

    source: str
    record_id: str
    source_ts: dt.datetime
    rule: str
    group: str | None = None
    support: float = 1.0
    """For ``most_frequent``: the trust-weighted share of members holding the value."""


@dataclass(frozen=True, slots=True)
class GoldenRecord:
    """The surviving values of a cluster and the provenance of each."""

    values: dict[str, object]
    provenance: dict[str, Provenance]
    members: tuple[str, ...]


def _present(v: object) -> bool:
    return v is not None and not (isinstance(v, str) and not v.strip())


def _vote_key(v: object) -> object:
    """Values that count as the same vote: strings compared trimmed and case-folded."""
    return " ".join(v.split()).casefold() if isinstance(v, str) else v


def _best(cands: Sequence[Member], key: Callable[[Member], Any], cfg: SurvivorshipConfig) -> Member:
    """The candidate with the largest ``key``; ties go to the more trusted source, then the more
    recent record, then the smaller record id (``cands`` are sorted by id and ``max`` keeps the
    first of equals)."""
    return max(cands, key=lambda m: (key(m), cfg.trust(m.source), m.source_ts))


def _choose(
    members: Sequence[Member],
    fields: Sequence[str],
    rule: AttributeRule,
    cfg: SurvivorshipConfig,
) -> tuple[Member, float] | None:
    """The winning member for ``fields`` under ``rule`` (and its support), or None if none has a value."""
    cands = [m for m in members if any(_present(m.values.get(f)) for f in fields)]
    if not cands:
        return None
    kind = rule.rule
    if kind == "source_priority":
        order = {s: i for i, s in enumerate(rule.priority)}
        last = len(order)
        return _best(cands, lambda m: -order.get(m.source, last), cfg), 1.0
    if kind == "most_recent":
        return _best(cands, lambda m: m.source_ts, cfg), 1.0
    if kind == "most_complete":
        if len(fields) == 1:
            f = fields[0]
            return _best(cands, lambda m: len(str(m.values.get(f))), cfg), 1.0
        return _best(cands, lambda m: sum(_present(m.values.get(f)) for f in fields), cfg), 1.0
    votes: dict[object, float] = {}
    for m in cands:
        k = tuple(_vote_key(m.values.get(f)) for f in fields)
        votes[k] = votes.get(k, 0.0) + max(cfg.trust(m.source), 1e-6)
    total = sum(votes.values())

    def vote(m: Member) -> float:
        return votes[tuple(_vote_key(m.values.get(f)) for f in fields)]

    winner = _best(cands, vote, cfg)
    return winner, vote(winner) / total


def build_golden(
    members: Iterable[Member], config: SurvivorshipConfig, fields: Sequence[str]
) -> GoldenRecord:
    """The golden record of ``members`` over ``fields`` (the entity's attributes)."""
    ms = sorted(members, key=lambda m: m.record_id)
    values: dict[str, object] = {}
    prov: dict[str, Provenance] = {}
    grouped = {f for g in config.groups.values() for f in g.fields}
    for name, group in config.groups.items():
        got = _choose(ms, group.fields, group, config)
        if got is None:
            continue
        winner, support = got
        for f in group.fields:
            values[f] = winner.values.get(f)
            prov[f] = Provenance(winner.source, winner.record_id, winner.source_ts, group.rule, name, support)
    for f in fields:
        if f in grouped:
            continue
        rule = config.attributes.get(f, config.default)
        got = _choose(ms, (f,), rule, config)
        if got is None:
            continue
        winner, support = got
        values[f] = winner.values.get(f)
        prov[f] = Provenance(winner.source, winner.record_id, winner.source_ts, rule.rule, None, support)
    return GoldenRecord(values, prov, tuple(m.record_id for m in ms))
