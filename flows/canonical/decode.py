"""Decoding row images (Debezium ``after``/``before`` JSON text) into typed columns, detecting drift.

Fast path: one vectorised ``str.json_decode`` with schema inference over the whole batch. The
inferred struct gives the union of keys (added / removed columns) and each key's JSON type; when every
declared column's type is compatible the struct is cast to the declared dtypes and we are done.

Slow path, only for batches that need it (a retyped column, or JSON polars cannot decode): each image
is decoded with msgspec and each value checked against its declared type individually, so a value
that no longer fits becomes null (and, with ``evolve``, is kept in ``extras``) without touching the
rest of the row. Policy ``ignore`` decodes exactly the same way and only drops the findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import polars as pl
from polars._typing import PolarsDataType

from flows.canonical.compile import Mapping
from flows.canonical.drift import DriftFinding, json_type_name
from flows.canonical.kinds import DECODE_DTYPE, ColumnType, json_fits
from flows.canonical.values import extras_json

_decode_json = msgspec.json.Decoder().decode


@dataclass(frozen=True)
class Decoded:
    """Declared columns of every image (decode dtypes), plus what did not fit."""

    frame: pl.DataFrame
    extras: pl.Series | None
    """JSON text of unknown columns and unreadable values per row (policy ``evolve``), else None."""
    malformed: pl.Series | None
    """True where the image is not a JSON object (slow path only), else None."""
    findings: list[DriftFinding]


def _compatible(declared: PolarsDataType, observed: PolarsDataType) -> bool:
    if observed == pl.Null or observed == declared:
        return True
    return declared == pl.Float64 and observed == pl.Int64


def _struct_dtype(mapping: Mapping) -> pl.Struct:
    return pl.Struct({c: DECODE_DTYPE[t] for c, t in mapping.columns.items()})


def _finding(
    mapping: Mapping, column: str, change: str, rows: int, observed: str | None = None
) -> DriftFinding:
    from flows.canonical.drift import ACTIONS

    expected = None if change == "added" else str(mapping.columns[column])
    return DriftFinding(
        system=mapping.system,
        schema=mapping.schema,
        table=mapping.table,
        column=column,
        change=change,  # type: ignore[arg-type]
        expected=expected,
        observed=observed,
        rows=rows,
        policy=mapping.drift,
        action=ACTIONS.get((mapping.drift, change), "stopped"),  # type: ignore[arg-type]
    )


def decode_images(mapping: Mapping, images: pl.Series) -> Decoded:
    """Decode the images of one batch (null entries stay null rows) and find schema drift."""
    declared = _struct_dtype(mapping)
    if images.null_count() == images.len():
        return Decoded(pl.DataFrame(schema=declared.to_schema()).clear(images.len()), None, None, [])
    if images.str.contains(_misfit_pattern(mapping)).any():
        return _slow(mapping, images)
    try:
        inferred = images.str.json_decode(infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return _slow(mapping, images)
    if not isinstance(inferred.dtype, pl.Struct) or (inferred.is_null() & images.is_not_null()).any():
        return _slow(mapping, images)  # not objects (``null``, arrays, scalars): decide row by row
    observed = {f.name: f.dtype for f in inferred.dtype.fields}
    for col, dtype in declared.to_schema().items():
        if col in observed and not _compatible(dtype, observed[col]):
            return _slow(mapping, images)
    unnested = inferred.struct.unnest()
    present = images.is_not_null()
    rows = int(present.sum())
    frame = pl.DataFrame(
        [
            unnested.get_column(c).cast(dtype)
            if c in observed
            else pl.Series(c, [None] * images.len(), dtype)
            for c, dtype in declared.to_schema().items()
        ]
    )
    findings = [_finding(mapping, c, "removed", rows) for c in mapping.columns if c not in observed]
    added = [c for c in observed if c not in mapping.columns]
    extras = None
    if added:
        for c in added:
            findings.append(_finding(mapping, c, "added", int(unnested.get_column(c).is_not_null().sum())))
        if mapping.drift == "evolve":
            # Rare (until the mapping catches up) and cheap enough per row: the same helper as the
            # reference, so "nothing lost" means the same JSON in both.
            extras = pl.Series(
                "extras", [extras_json(r) for r in unnested.select(added).iter_rows(named=True)], pl.String
            )
    return Decoded(frame, extras, None, findings)


# First characters of JSON values that do not fit a decode dtype (n: null always fits).
_MISFIT_START = {
    pl.String(): r'[^"n\s]',
    pl.Int64(): r'[tf"\[{]',
    pl.Float64(): r'[tf"\[{]',
    pl.Boolean(): r'[-0-9"\[{]',
}


def _misfit_pattern(mapping: Mapping) -> str:
    """A regex matching any image with a value whose JSON type does not fit its declared column.

    Schema inference widens mixed columns (``5`` and ``"x"`` become text, ``true`` and ``1`` an int),
    which would read some values silently as another type; batches where this regex matches take the
    slow path instead. Exact for Debezium's compact JSON: inside a JSON string every quote is escaped,
    so ``,"col":`` only matches real keys (column names are plain identifiers, checked at load).
    """
    alternatives = []
    for dtype, start in _MISFIT_START.items():
        cols = [c for c, t in mapping.columns.items() if DECODE_DTYPE[t] == dtype]
        if cols:
            alternatives.append(r'[{,]\s*"(?:' + "|".join(cols) + r')"\s*:\s*' + start)
    return "|".join(alternatives)


def _slow(mapping: Mapping, images: pl.Series) -> Decoded:
    """Per-row decode: every value checked against its declared type on its own."""
    columns: dict[str, list[Any]] = {c: [] for c in mapping.columns}
    extras: list[str | None] = []
    malformed: list[bool] = []
    seen: set[str] = set()
    added_rows: dict[str, int] = {}
    misfit: dict[str, list[str]] = {}
    rows = 0
    for text in images.to_list():
        doc: Any = None
        if text is not None:
            try:
                doc = _decode_json(text)
            except msgspec.DecodeError:
                doc = None
            if not isinstance(doc, dict):
                malformed.append(True)
                doc = None
            else:
                malformed.append(False)
                rows += 1
        else:
            malformed.append(False)
        row = doc or {}
        seen.update(row)
        kept: dict[str, Any] = {}
        for col, ctype in mapping.columns.items():
            value = row.get(col)
            if json_fits(ColumnType(ctype), value):
                columns[col].append(value)
            else:
                columns[col].append(None)
                misfit.setdefault(col, []).append(json_type_name(value))
                kept[col] = value
        for col, value in row.items():
            if col not in mapping.columns:
                kept[col] = value
                if value is not None:
                    added_rows[col] = added_rows.get(col, 0) + 1
                else:
                    added_rows.setdefault(col, 0)
        extras.append(extras_json(kept) if mapping.drift == "evolve" else None)
    declared = _struct_dtype(mapping).to_schema()
    frame = pl.DataFrame({c: pl.Series(c, v, dtype=declared[c], strict=False) for c, v in columns.items()})
    findings = [_finding(mapping, c, "removed", rows) for c in mapping.columns if rows and c not in seen]
    findings += [_finding(mapping, c, "added", n) for c, n in added_rows.items()]
    findings += [
        _finding(mapping, c, "retyped", len(types), "|".join(sorted(set(types))))
        for c, types in misfit.items()
    ]
    extras_series = pl.Series("extras", extras, pl.String) if mapping.drift == "evolve" else None
    return Decoded(frame, extras_series, pl.Series("malformed", malformed, pl.Boolean), findings)


def decode_keys(mapping: Mapping, keys: pl.Series) -> pl.DataFrame:
    """The key columns from Debezium's message key JSON (a value of the wrong type becomes null)."""
    dtype = pl.Struct({c: DECODE_DTYPE[mapping.columns[c]] for c in mapping.key})
    try:
        return keys.str.json_decode(dtype).struct.unnest()
    except pl.exceptions.PolarsError:
        pass
    out: dict[str, list[Any]] = {c: [] for c in mapping.key}
    for text in keys.to_list():
        try:
            doc = _decode_json(text) if text is not None else None
        except msgspec.DecodeError:
            doc = None
        row = doc if isinstance(doc, dict) else {}
        for c in mapping.key:
            v = row.get(c)
            out[c].append(v if json_fits(mapping.columns[c], v) else None)
    return pl.DataFrame({c: pl.Series(c, v, dtype=dtype.to_schema()[c]) for c, v in out.items()})
