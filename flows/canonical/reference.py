"""The per-record reference implementation of the mapping engine: plain Python, one change at a time.

It exists to pin down the semantics (module doc of :mod:`flows.canonical.engine`) in the most
obvious code possible: the property tests generate random source rows and require
:func:`flows.canonical.engine.map_batch` to produce exactly what :func:`map_batch_reference` does.
It decodes with the standard library's ``json``, runs each transform's ``scalar`` form, and checks
every record it emits against the canonical pydantic model.

Per record it is ~10x slower than the engine, but it has no fixed cost, while the engine spends
30-80 ms on any batch (hundreds of small polars queries). :func:`flows.canonical.dispatch.map_rows`
therefore hands it the batches of a few dozen rows (without the model check, so an invalid record
reaches silver's validation and quarantine exactly as the engine's would).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

import polars as pl
from pydantic import TypeAdapter

from core.canonical import ChangeInfo, Lineage, entity_model, record_schema
from flows.canonical.compile import CompiledField, Mapping, Step, is_field_ref
from flows.canonical.decode import _finding as finding
from flows.canonical.drift import DriftFinding, apply_policy, json_type_name
from flows.canonical.engine import (
    KEYED_OPS,
    REJECT_SCHEMA,
    STAGE,
    MappedBatch,
    check_table,
    empty_batch,
    failure_message,
    hook_result,
    missing_message,
    step_label,
)
from flows.canonical.kinds import TOAST_PLACEHOLDER, TOASTABLE, ColumnType, json_fits
from flows.canonical.transforms.base import RowCtx
from flows.canonical.values import extras_json, key_text


class _Drift:
    """Drift observations accumulated over the rows of one batch."""

    def __init__(self) -> None:
        self.rows = 0
        self.seen: set[str] = set()
        self.added: Counter[str] = Counter()
        self.misfit: dict[str, list[str]] = {}

    def findings(self, mapping: Mapping) -> list[DriftFinding]:
        out = [
            finding(mapping, c, "removed", self.rows)
            for c in mapping.columns
            if self.rows and c not in self.seen
        ]
        out += [finding(mapping, c, "added", n) for c, n in self.added.items()]
        out += [
            finding(mapping, c, "retyped", len(t), "|".join(sorted(set(t)))) for c, t in self.misfit.items()
        ]
        return out


@dataclass(frozen=True)
class _Reject:
    reason: str
    detail: str


def _norm(value: Any, empty_as_null: bool) -> Any:
    return None if empty_as_null and value == "" else value


def _run_step(step: Step, inputs: list[Any], ctx: RowCtx, f: CompiledField) -> tuple[Any, str | None]:
    """One step on one record: (output, label if the step failed)."""
    t = step.transform
    if t.many:
        out = t.scalar(inputs, step.args, ctx)
        return _norm(out, f.empty_as_null), None
    value = inputs[0]
    if value is None and not t.handles_null:
        return None, None
    out = t.scalar([value], step.args, ctx)
    failed = value is not None and out is None and not t.nullifies
    return _norm(out, f.empty_as_null), step_label(step) if failed else None


def _field(
    f: CompiledField, row: dict[str, Any], values: dict[str, Any], ctx: RowCtx
) -> tuple[Any, str | None]:
    """One field of one record: (value, failed step label)."""
    if f.when:
        cond_row = {
            c.column: values[c.column[1:]]
            if is_field_ref(c.column)
            else _norm(row.get(c.column), f.empty_as_null)
            for c in f.when
        }
        if not all(c.test(cond_row[c.column]) for c in f.when):
            return None, None
    failed: str | None = None
    if f.const is not None:
        current: list[Any] = [f.const]
    else:
        current = []
        for col, implicit in zip(f.inputs, f.input_steps, strict=True):
            v = values[col[1:]] if is_field_ref(col) else _norm(row.get(col), f.empty_as_null)
            for step in implicit:
                v, why = _run_step(step, [v], ctx, f)
                failed = failed or why
            current.append(v)
        if f.hook is not None:
            assert f.hook_kind is not None
            out = hook_result(f.hook, f.hook_kind, current)
            if out is None and any(v is not None for v in current):
                failed = failed or f"hook {f.hook_name}"
            current = [_norm(out, f.empty_as_null)]
    for step in f.steps:
        out, why = _run_step(step, current, ctx, f)
        failed = failed or why
        current = [out]
    value = current[0]
    if f.allowed is not None and value is not None and value not in f.allowed:
        failed = failed or "allowed values"
        value = None
    return value, failed


def _map_row(
    mapping: Mapping, ev: dict[str, Any], drift: _Drift, validate: bool = True
) -> tuple[dict[str, Any] | None, _Reject | None]:
    op = ev["op"]
    base = {
        "source_system": ev["system"],
        "source_table": mapping.source_table,
        "lsn": ev["lsn"],
        "tx_id": ev["tx_id"],
        "source_ts": ev["source_ts"],
        "mapping_version": mapping.version_tag,
        "op": op,
        "deleted": op in ("d", "t"),
        "snapshot": ev["snapshot"] != "false",
        "topic": ev["topic"],
        "partition": ev["partition"],
        "offset": ev["offset"],
        "unavailable": [],
        "issues": [],
        "extras": None,
    }
    if op == "t":
        return {**base, "source_key": None}, None
    if op not in KEYED_OPS:
        return None, _Reject("unsupported_op", f"op={op}")
    try:
        key_doc = json.loads(ev["key"]) if ev["key"] is not None else None
    except ValueError:
        key_doc = None
    key_doc = key_doc if isinstance(key_doc, dict) else {}
    key = {c: key_doc.get(c) if json_fits(mapping.columns[c], key_doc.get(c)) else None for c in mapping.key}
    if any(v is None for v in key.values()):
        return None, _Reject("missing_key", f"no usable key ({', '.join(mapping.key)}) in the message key")
    if op != "d" and ev["after"] is None:
        return None, _Reject("missing_image", f"op={op} without an 'after' image")
    full = mapping.replica_identity == "full"
    text = (ev["before"] if full else None) if op == "d" else ev["after"]
    row: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    if text is not None:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return None, _Reject("malformed_image", "the row image is not a JSON object")
        drift.rows += 1
        drift.seen.update(doc)
        for col, value in doc.items():
            if col not in mapping.columns:
                extras[col] = value
                drift.added[col] += value is not None
            elif json_fits(ColumnType(mapping.columns[col]), value):
                row[col] = value
            else:
                extras[col] = value
                drift.misfit.setdefault(col, []).append(json_type_name(value))
    else:
        row = dict(key)
    toast = set()
    for col, ctype in mapping.columns.items():
        if ColumnType(ctype) in TOASTABLE and row.get(col) == TOAST_PLACEHOLDER:
            toast.add(col)
            row[col] = None
    values: dict[str, Any] = {}
    unavailable: list[str] = []
    required_msgs: list[str] = []
    optional_msgs: list[str] = []
    missing: list[str] = []
    ctx = RowCtx(mapping.timezone, values)
    for f in mapping.fields:
        if any(c in toast for c in f.columns_read) or any(d in unavailable for d in f.depends):
            values[f.name] = None
            unavailable.append(f.name)
            continue
        value, failed = _field(f, row, values, ctx)
        values[f.name] = value
        if failed is not None:
            raws = [values[c[1:]] if is_field_ref(c) else row.get(c) for c in f.inputs]
            raw = raws[0] if len(raws) == 1 else raws if raws else f.const
            (required_msgs if f.required else optional_msgs).append(failure_message(f.name, failed, raw))
        elif f.required and value is None:
            missing.append(missing_message(f.name))
    if op != "d":
        if required_msgs:
            return None, _Reject("mapping_failed", "; ".join(required_msgs + missing))
        if missing:
            return None, _Reject("missing_required", "; ".join(missing))
    issues = required_msgs + optional_msgs if op == "d" else optional_msgs
    record = {
        **base,
        "source_key": "|".join(key_text(key[c]) for c in mapping.key),
        "unavailable": unavailable,
        "issues": issues,
        "extras": extras_json(extras) if mapping.drift == "evolve" else None,
        **values,
    }
    if validate:
        _validate(mapping, record)
    return record, None


@cache
def _adapter(entity: str, name: str) -> TypeAdapter[Any]:
    info = entity_model(entity).model_fields[name]
    annotation: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    return TypeAdapter(annotation)


def _validate(mapping: Mapping, record: dict[str, Any]) -> None:
    """Every emitted record must satisfy the canonical models (the one definition).

    Deleted records carry only what the delete image holds; unavailable (TOAST) fields are filled
    from the previous state by silver, so both are exempt from the entity's required fields.
    """
    Lineage.model_validate({k: record[k] for k in Lineage.model_fields})
    ChangeInfo.model_validate({k: record[k] for k in ChangeInfo.model_fields})
    model = entity_model(mapping.entity)
    if not record["deleted"] and not record["unavailable"]:
        model.model_validate({k: record.get(k) for k in model.model_fields})
        return
    for name in model.model_fields:
        value = record.get(name)
        if value is not None:
            _adapter(mapping.entity, name).validate_python(value)


def map_batch_reference(mapping: Mapping, events: pl.DataFrame, *, validate: bool = True) -> MappedBatch:
    """Same contract as :func:`flows.canonical.engine.map_batch`, one record at a time.

    ``validate``: check each emitted record against the canonical models (raises on a record that
    breaks them; the tests rely on it). Without it, records come out as the engine's do.
    """
    if events.height == 0:
        return empty_batch(mapping)
    check_table(mapping, events)
    drift = _Drift()
    records: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for ev in events.iter_rows(named=True):
        record, reject = _map_row(mapping, ev, drift, validate)
        if record is not None:
            records.append(record)
        else:
            assert reject is not None
            value = ev["after"] if ev["after"] is not None else ev["before"]
            rejects.append(
                {
                    "stage": STAGE,
                    "reason": reject.reason,
                    "detail": reject.detail,
                    "topic": ev["topic"],
                    "partition": ev["partition"],
                    "offset": ev["offset"],
                    "key": None if ev["key"] is None else ev["key"].encode(),
                    "value": None if value is None else value.encode(),
                }
            )
    findings = apply_policy(drift.findings(mapping))
    schema = record_schema(mapping.entity)
    full = [{name: r.get(name) for name in schema.names()} for r in records]
    return MappedBatch(
        mapping.entity,
        pl.DataFrame(full, schema=schema, orient="row") if full else pl.DataFrame(schema=schema),
        pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row")
        if rejects
        else pl.DataFrame(schema=REJECT_SCHEMA),
        findings,
    )
