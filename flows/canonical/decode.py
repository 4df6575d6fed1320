"""Decoding row images (Debezium ``after``/``before`` JSON text) into typed columns, detecting drift.

Fast path (every batch whose table still looks like its mapping): one vectorised
``str.json_decode`` with the struct dtype derived from the mapping's source columns, plus three cheap
scans that prove nothing was dropped on the way: a regex for values whose JSON type does not fit
their column (typed decoding would read ``5`` as ``"5"`` or truncate ``1.5``), and a per-row key
count (typed decoding ignores unknown keys and nulls missing ones).

Columns added or removed: decode again with schema inference, which gives the union of keys, so
unknown columns can be reported and (policy ``evolve``) kept in ``extras``.

Slow path, only for batches that need it (a value of the wrong type, or JSON polars cannot decode):
each image is decoded with msgspec and each value checked against its declared type on its own, so a
value that no longer fits becomes null (and, with ``evolve``, is kept in ``extras``) without
touching the rest of the row. Policy ``ignore`` decodes exactly the same way and only drops the
findings.
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
from flows.canonical.transforms.base import const
from flows.canonical.values import extras_json

_decode_json = msgspec.json.Decoder().decode


@dataclass(frozen=True)
class Decoded:
    """Declared columns of every image (decode dtypes), plus what did not fit."""

    frame: pl.DataFrame
    """At least the columns the mapping reads (the fast path decodes no others)."""
    extras: pl.Series | None
    """JSON text of unknown columns and unreadable values per row (policy ``evolve``), else None."""
    malformed: pl.Series | None
    """True where the image is not a JSON object (slow path only), else None."""
    findings: list[DriftFinding]


def _compatible(declared: PolarsDataType, observed: PolarsDataType) -> bool:
    if observed == pl.Null or observed == declared:
        return True
    return declared == pl.Float64 and observed == pl.Int64


def _struct_dtype(mapping: Mapping, *, used_only: bool = False) -> pl.Struct:
    used = mapping.columns_used() if used_only else mapping.columns.keys()
    return pl.Struct({c: DECODE_DTYPE[t] for c, t in mapping.columns.items() if c in used})


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
        # Only the columns the mapping reads are materialised (large unmapped text is just skipped).
        typed = images.str.json_decode(_struct_dtype(mapping, used_only=True))
    except pl.exceptions.PolarsError:
        return _slow(mapping, images)
    if (typed.is_null() & images.is_not_null()).any():
        return _slow(mapping, images)  # not objects (``null``, arrays, scalars): decide row by row
    if _same_columns(mapping, images):
        return Decoded(typed.struct.unnest(), None, None, [])
    return _inferred(mapping, images)


def _same_columns(mapping: Mapping, images: pl.Series) -> bool:
    """Whether every image has exactly the declared columns (the typed decode ignores the others).

    Per row, the number of keys must be the number of declared columns: a key ends with ``":`` and
    inside a JSON string every quote is escaped, so ``":`` minus ``\\":`` counts keys exactly
    (column names are plain identifiers; nested objects only occur in unknown columns). Two literal
    scans cost about a third of the decode. A column renamed between two batch boundaries keeps the
    count: the first and last images are therefore also compared key by key. What that misses is
    a rename undone within the same batch, whose renamed values would not reach ``extras``.
    """
    present = images.drop_nulls()
    n = len(mapping.columns)
    keys = present.str.count_matches('":', literal=True)
    if (keys < n).any():
        return False
    over = keys > n  # only rows with escaped quotes in their values need the second count
    if over.any():
        extra = present.filter(over)
        if (keys.filter(over) - extra.str.count_matches('\\":', literal=True) != n).any():
            return False
    for text in (present[0], present[-1]):
        doc = _decode_json(text)
        if not isinstance(doc, dict) or doc.keys() != mapping.columns.keys():
            return False
    return True


def _inferred(mapping: Mapping, images: pl.Series) -> Decoded:
    """Columns added or removed: decode with schema inference to see the union of keys."""
    declared = _struct_dtype(mapping)
    try:
        inferred = images.str.json_decode(infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return _slow(mapping, images)
    if not isinstance(inferred.dtype, pl.Struct):
        return _slow(mapping, images)
    observed = {f.name: f.dtype for f in inferred.dtype.fields}
    for col, dtype in declared.to_schema().items():
        if col in observed and not _compatible(dtype, observed[col]):
            return _slow(mapping, images)
    unnested = inferred.struct.unnest()
    rows = int(images.is_not_null().sum())
    frame = pl.DataFrame(
        [
            unnested.get_column(c).cast(dtype)
            if c in observed
            else const(None, images.len(), dtype).rename(c)
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
            # Per row from the JSON itself: inference widens mixed types (5 and "x" -> "5"), and the
            # extras must hold the values exactly as the source sent them. Only while the mapping
            # lags behind the table.
            extras = pl.Series("extras", [_extras_of(text, mapping) for text in images.to_list()], pl.String)
    return Decoded(frame, extras, None, findings)


# First characters of JSON values that do not fit a decode dtype (n: null always fits).
_MISFIT_START = {
    pl.String(): r'[^"n\s]',
    # Not a plain integer: typed decoding would truncate 1.5 and turn 20-digit numbers into null.
    pl.Int64(): r'(?:[tf"\[{]|-?[0-9]+[.eE]|-?[0-9]{19})',
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


def _extras_of(text: str | None, mapping: Mapping) -> str | None:
    if text is None:
        return None
    doc = _decode_json(text)
    return extras_json({k: v for k, v in doc.items() if k not in mapping.columns})


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
