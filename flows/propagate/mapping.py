"""Outbound mapping (golden values -> target payload) and its read-back through the inbound mapping.

The read-back is what makes loop prevention exact: a target row holding the pushed payload is run
through the *real* inbound mapping (:func:`flows.canonical.map_rows` on a bronze-shaped row), and the
content hash is taken over the canonical fields that only depend on pushed columns
(:attr:`ReadBack.echo_fields`). When Debezium later delivers the row we wrote, the inbound flow maps it
with the same code and gets the same hash; a user's edit to any of those fields changes it.
"""

from __future__ import annotations

from collections.abc import Mapping as AbstractMapping
from functools import cache
from typing import Any

import pycountry

from core.golden import content_hash, json_value
from flows.canonical import Mapping, map_rows
from flows.canonical.compile import is_field_ref
from flows.canonical.sample import Change, events_frame
from flows.propagate.config import FieldCase, TargetConfig

Payload = dict[str, Any]
"""Target field -> JSON value (None: no value)."""


@cache
def country_name(alpha2: str) -> str:
    """The English name pycountry gives an ISO alpha-2 code (the code itself if unknown).

    The inbound ``country`` transform looks names up in pycountry too, so the name reads back as the
    same code; ``common_name`` is avoided because some of those are not lookup keys.
    """
    country = pycountry.countries.get(alpha_2=alpha2.upper())
    return str(country.name) if country is not None else alpha2


def family_given(last: Any, first: Any, middle: Any) -> str | None:
    """``FAMILY, GIVEN MIDDLE`` (the ERP's person name); None without a family name."""
    if not last:
        return None
    given = " ".join(str(p) for p in (first, middle) if p)
    return f"{last}, {given}" if given else str(last)


def _matches(case: FieldCase, values: AbstractMapping[str, Any]) -> bool:
    return case.when is None or values.get(case.when.field) == case.when.equals


def _case_value(case: FieldCase, values: AbstractMapping[str, Any]) -> Any:
    if case.format == "family_given":
        return family_given(*(values.get(f) for f in case.from_))
    if case.format == "join":
        return " ".join(str(values[f]) for f in case.from_ if values.get(f)) or None
    value = next((json_value(values[f]) for f in case.from_ if values.get(f) is not None), None)
    if value is None:
        return None
    if case.map is not None:
        key = str(value).lower() if isinstance(value, bool) else str(value)
        value = case.map.get(key, case.map.get("*"))
    if case.format == "country_name" and isinstance(value, str):
        value = country_name(value)
    return value


def outbound(cfg: TargetConfig, values: AbstractMapping[str, Any]) -> Payload:
    """The target payload for golden ``values``: every mapped field (None where there is no value).

    A required target field without a value is left out instead of being sent as null (the target
    keeps what it has; a create without it is refused by the planner).
    """
    out: Payload = {}
    for name, cases, required in cfg.field_cases():
        value = None
        for case in cases:
            if _matches(case, values):
                value = _case_value(case, values)
                if value is not None:
                    break
        if value is None and required:
            continue
        out[name] = value
    return out


class ReadBack:
    """The inbound mapping of a target, applied to rows holding what we pushed."""

    def __init__(self, cfg: TargetConfig, mapping: Mapping) -> None:
        if (mapping.system, mapping.entity) != (cfg.system, cfg.entity):
            raise ValueError(
                f"target {cfg.target}: inbound mapping {mapping.system}.{mapping.table} is not "
                f"{cfg.system}/{cfg.entity}"
            )
        unknown = sorted(set(cfg.fields) - set(mapping.columns))
        if unknown:
            raise ValueError(f"target {cfg.target}: fields {unknown} are not columns of {mapping.table}")
        self.cfg = cfg
        self.mapping = mapping
        self.echo_fields = self._echo_fields(set(cfg.fields))

    def _echo_fields(self, pushed: set[str]) -> tuple[str, ...]:
        """Canonical fields computed only from pushed columns (and from each other)."""
        ok: set[str] = set()
        for f in self.mapping.fields:  # compiled in dependency order
            cols = set(f.columns_read)
            refs = {c[1:] for c in f.inputs if is_field_ref(c)} | set(f.depends)
            if (cols or refs or f.const is not None) and cols <= pushed and refs <= ok:
                ok.add(f.name)
        return tuple(sorted(ok))

    def canonical(self, rows: list[AbstractMapping[str, Any]]) -> list[dict[str, Any] | None]:
        """Canonical values (JSON-safe) of target rows, as the inbound flow would map them."""
        if not rows:
            return []
        key = self.mapping.key
        full = [{**{k: f"readback-{i}" for k in key}, **r} for i, r in enumerate(rows)]
        out = map_rows(self.mapping, events_frame(self.mapping, [Change("r", r) for r in full]))
        mapped: list[dict[str, Any] | None] = [None] * len(rows)
        records = out.records
        offsets = records.get_column("offset").to_list() if "offset" in records.columns else []
        names = [n for n in (f.name for f in self.mapping.fields) if n in records.columns]
        for pos, row in zip(offsets, records.select(names).to_dicts(), strict=True):
            mapped[int(pos)] = {k: json_value(v) for k, v in row.items()}
        return mapped

    def fingerprint(self, state: AbstractMapping[str, Any]) -> str | None:
        """The echo hash of a target record holding ``state`` (None if it does not map)."""
        mapped = self.canonical([state])[0]
        return None if mapped is None else content_hash(mapped, self.echo_fields)

    def fingerprints(self, states: list[AbstractMapping[str, Any]]) -> list[str | None]:
        """:meth:`fingerprint` of many states in one engine call."""
        return [None if m is None else content_hash(m, self.echo_fields) for m in self.canonical(states)]
