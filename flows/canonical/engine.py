"""The vectorised mapping engine: a micro-batch of bronze change rows -> canonical records.

Everything runs column-wise on polars Series: JSON decoding (:mod:`flows.canonical.decode`), every
transform, validation, the lineage columns. Python runs per *distinct value* only inside the few
transforms that have no vectorised form (phone numbers, countries, mojibake repair, free-form dates,
hooks), and per *row* only for rows that failed (to word their issue) and for drift batches.

Row outcomes (the same rules as :mod:`flows.canonical.reference`, which the property tests hold it to):

* ``c``/``r``/``u`` map the ``after`` image; ``d`` maps ``before`` when the table has
  ``replica_identity: full``, otherwise just the key from the message key; ``t`` (truncate) passes
  through with ``deleted=true``, no key and null fields; any other op is rejected.
* A field whose source column holds Debezium's unchanged-TOAST placeholder is null and listed in
  ``unavailable`` (so silver keeps its previous value); fields computed from it are too.
* A step that cannot map a present value leaves the field null. On a required field that rejects the
  row (``mapping_failed``); on an optional field the row is kept and the problem is written to its
  ``issues`` list. A required field that is null is ``missing_required``. Deletes are never rejected
  for their content (a key-only image has no content): problems go to ``issues``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from core.canonical import record_schema
from flows.canonical.compile import CompiledField, Mapping, Step, is_field_ref
from flows.canonical.decode import decode_images, decode_keys
from flows.canonical.drift import DriftFinding, apply_policy
from flows.canonical.kinds import KIND_DTYPE, TOAST_PLACEHOLDER, TOASTABLE, ColumnType, Kind
from flows.canonical.transforms.base import VectorCtx, const, keep_where, map_unique_rows
from flows.canonical.values import raw_repr

REJECT_SCHEMA = pl.Schema(
    {
        "stage": pl.String(),
        "reason": pl.String(),
        "detail": pl.String(),
        "topic": pl.String(),
        "partition": pl.Int32(),
        "offset": pl.Int64(),
        "key": pl.Binary(),
        "value": pl.Binary(),
    }
)
STAGE = "mapping"
KEYED_OPS = ("c", "u", "d", "r")


@dataclass(frozen=True)
class MappedBatch:
    """The result of mapping one batch of one source table."""

    entity: str
    records: pl.DataFrame
    """One row per change that mapped; schema :func:`core.canonical.record_schema` of ``entity``."""
    rejects: pl.DataFrame
    """Changes that could not be mapped, bound for quarantine (schema :data:`REJECT_SCHEMA`)."""
    drift: list[DriftFinding] = field(default_factory=list)


def empty_batch(mapping: Mapping) -> MappedBatch:
    """A result without rows (typed columns all the same)."""
    return MappedBatch(
        mapping.entity, pl.DataFrame(schema=record_schema(mapping.entity)), pl.DataFrame(schema=REJECT_SCHEMA)
    )


def check_table(mapping: Mapping, events: pl.DataFrame) -> None:
    """The caller groups by source table; anything else is a wiring bug, not bad data."""
    tables = events.select("system", "schema", "table").unique()
    if tables.height != 1 or tables.row(0) != mapping.ident:
        raise ValueError(f"map_batch for {'.'.join(mapping.ident)} got rows of {tables.rows()}")


def failure_message(name: str, step: str, raw: Any) -> str:
    """How a failed field is worded in ``issues`` and reject details."""
    return f"{name}: {step} failed on {raw_repr(raw)}"


def missing_message(name: str) -> str:
    """How a null required field is worded."""
    return f"{name}: required but null"


def step_label(step: Step) -> str:
    """A step's name in messages."""
    return step.describe()


@dataclass
class _FieldResult:
    value: pl.Series
    failed_step: pl.Series
    """The label of the first step that failed per row (null: no failure)."""
    unavailable: pl.Series | None


def _empty_to_null(s: pl.Series) -> pl.Series:
    return s.replace("", None) if s.dtype == pl.String else s


class _Evaluator:
    """Evaluates the compiled fields of a mapping over decoded source columns."""

    def __init__(self, mapping: Mapping, src: pl.DataFrame, toast: dict[str, pl.Series]) -> None:
        self.mapping = mapping
        self.src = src
        self.toast = toast
        self.n = src.height
        self.values: dict[str, pl.Series] = {}
        self.unavailable: dict[str, pl.Series] = {}
        self.prefixes: dict[tuple[Any, ...], tuple[list[pl.Series], pl.Series]] = {}
        self.memo: dict[Any, Any] = {}

    def column(self, name: str, empty_as_null: bool) -> pl.Series:
        if is_field_ref(name):
            return self.values[name[1:]]
        s = self.src.get_column(name)
        return _empty_to_null(s) if empty_as_null else s

    def when_mask(self, f: CompiledField) -> pl.Series | None:
        if not f.when:
            return None
        frame = pl.DataFrame({c.column: self.column(c.column, f.empty_as_null) for c in f.when})
        exprs = []
        for c in f.when:
            col = pl.col(c.column)
            text = (
                col.cast(pl.String)
                if frame.schema[c.column] != pl.Boolean
                else (pl.when(col).then(pl.lit("true")).when(~col).then(pl.lit("false")))
            )
            if c.op == "is_null":
                exprs.append(col.is_null() if c.is_null else col.is_not_null())
            elif c.op == "not_in":
                exprs.append(text.is_not_null() & ~text.is_in(list(c.values)))
            else:
                exprs.append(text.is_in(list(c.values)).fill_null(False))
        return frame.select(pl.all_horizontal(exprs).fill_null(False).alias("m")).to_series()

    def unavailable_mask(self, f: CompiledField) -> pl.Series | None:
        masks = [self.toast[c] for c in f.columns_read if c in self.toast]
        masks += [self.unavailable[d] for d in f.depends if d in self.unavailable]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = out | m
        return out if out.any() else None

    def run(self, f: CompiledField) -> _FieldResult:
        blocked = self.unavailable_mask(f)
        gate = self.when_mask(f)
        if blocked is not None:
            gate = ~blocked if gate is None else gate & ~blocked
        ctx = VectorCtx(self.mapping.timezone, self.values, self.memo)
        # Fields often share a pipeline prefix (first/middle/last name: same column, same condition,
        # same clean-up): each prefix is computed once per batch.
        prefix: tuple[Any, ...] = (f.inputs, f.when, f.empty_as_null, f.const, f.hook_name, f.depends)
        cached = self.prefixes.get(prefix)
        if cached is not None:
            ins, failed = cached
        else:
            ins, failed = self.prepare(f, gate, ctx)
            self.prefixes[prefix] = (ins, failed)
        for step in f.steps:
            prefix = (*prefix, step.describe())
            cached = self.prefixes.get(prefix)
            if cached is None:
                out_s, failed = self.apply(step, ins, failed, f, ctx)
                cached = self.prefixes[prefix] = ([out_s], failed)
            ins, failed = cached
        value = ins[0]
        if f.allowed is not None:
            ok = value.is_in(sorted(f.allowed)) | value.is_null()
            failed = _mark(failed, ~ok, "allowed values")
            value = keep_where(value, ok)
        if gate is not None:
            value = keep_where(value, gate)  # steps such as presence map null to a value
        value = value.cast(f.dtype)
        self.values[f.name] = value
        if blocked is not None:
            self.unavailable[f.name] = blocked
        return _FieldResult(value, failed, blocked)

    def prepare(
        self, f: CompiledField, gate: pl.Series | None, ctx: VectorCtx
    ) -> tuple[list[pl.Series], pl.Series]:
        """The field's input values (conditions applied, implicit reads and hook done)."""
        failed = const(None, self.n, pl.String())
        if f.const is not None:
            value = const(f.const, self.n)
            ins: list[pl.Series] = [value if gate is None else keep_where(value, gate)]
        else:
            ins = []
            for col, implicit in zip(f.inputs, f.input_steps, strict=True):
                s = self.column(col, f.empty_as_null)
                if gate is not None:
                    s = keep_where(s, gate)
                for step in implicit:
                    s, failed = self.apply(step, [s], failed, f, ctx)
                ins.append(s)
            if f.hook is not None:
                assert f.hook_kind is not None
                frame = pl.DataFrame({f"a{i}": s for i, s in enumerate(ins)})
                out = map_unique_rows(
                    frame, _hook_caller(f.hook, f.hook_kind), KIND_DTYPE.get(f.hook_kind, pl.String())
                )
                present = frame.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
                failed = _mark(failed, present & out.is_null(), f"hook {f.hook_name}")
                ins = [_normalise(out, f)]
        return ins, failed

    def apply(
        self, step: Step, ins: Sequence[pl.Series], failed: pl.Series, f: CompiledField, ctx: VectorCtx
    ) -> tuple[pl.Series, pl.Series]:
        out = step.transform.vector(ins, step.args, ctx)
        if not step.transform.many and not step.transform.nullifies:
            failed = _mark(failed, ins[0].is_not_null() & out.is_null(), step_label(step))
        return _normalise(out, f), failed


def _normalise(s: pl.Series, f: CompiledField) -> pl.Series:
    return _empty_to_null(s) if f.empty_as_null else s


def _mark(failed: pl.Series, mask: pl.Series, label: str) -> pl.Series:
    """Record ``label`` as the failing step on rows of ``mask`` that have not failed before."""
    if not mask.any():
        return failed
    frame = pl.DataFrame({"f": failed, "m": mask})
    return frame.select(
        pl.when(pl.col("f").is_null() & pl.col("m").fill_null(False))
        .then(pl.lit(label))
        .otherwise(pl.col("f"))
    ).to_series()


_PY_TYPES: dict[Kind, tuple[type, ...]] = {
    Kind.TEXT: (str,),
    Kind.INT: (int,),
    Kind.FLOAT: (float, int),
    Kind.BOOL: (bool,),
}


def hook_result(hook: Callable[..., Any], kind: Kind, args: Sequence[Any]) -> Any:
    """Call a hook; an exception or a value of the wrong kind is a failure (None)."""
    if all(a is None for a in args):
        return None
    try:
        value = hook(*args)
    except Exception:  # a hook's bug must not crash the flow: the row fails with its raw values
        return None
    types = _PY_TYPES.get(kind)
    if value is None or types is None:
        return value
    if kind != Kind.BOOL and isinstance(value, bool):
        return None
    return value if isinstance(value, types) else None


def _hook_caller(hook: Callable[..., Any], kind: Kind) -> Callable[..., Any]:
    return lambda *args: hook_result(hook, kind, args)


def _messages(f: CompiledField, failed: pl.Series, raw_inputs: list[pl.Series]) -> pl.Series | None:
    """Issue text per row for a field's failures (Python only for the failing rows)."""
    idx = failed.is_not_null().arg_true()
    if idx.len() == 0:
        return None
    steps = failed.gather(idx).to_list()
    raws = [s.gather(idx).to_list() for s in raw_inputs]
    out: list[str | None] = [None] * failed.len()
    for j, i in enumerate(idx.to_list()):
        raw = raws[0][j] if len(raws) == 1 else [r[j] for r in raws] if raws else f.const
        out[i] = failure_message(f.name, steps[j], raw)
    return pl.Series(out, dtype=pl.String)


def map_batch(mapping: Mapping, events: pl.DataFrame) -> MappedBatch:
    """Map one micro-batch of bronze change rows of ``mapping``'s source table to canonical records.

    ``events`` has the bronze columns (``system, db, schema, table, op, key, before, after, lsn,
    tx_id, source_ts, snapshot, topic, partition, offset``). Raises
    :class:`~core.errors.TerminalError` on schema drift when the mapping's policy is ``fail``.
    """
    if events.height == 0:
        return empty_batch(mapping)
    check_table(mapping, events)
    n = events.height
    op = events.get_column("op")
    keyed = op.is_in(KEYED_OPS)
    is_delete = op == "d"
    keys = decode_keys(mapping, keep_where(events.get_column("key"), keyed))
    key_ok = keys.select(pl.all_horizontal(pl.all().is_not_null())).to_series() & keyed
    after = events.get_column("after")
    before = events.get_column("before")
    use_before = is_delete & before.is_not_null()
    if mapping.replica_identity != "full":
        use_before = const(False, n)
    image = (
        pl.DataFrame({"a": after, "b": before, "k": keyed, "d": is_delete, "ub": use_before})
        .select(
            pl.when(pl.col("ub"))
            .then(pl.col("b"))
            .when(pl.col("k") & ~pl.col("d"))
            .then(pl.col("a"))
            .alias("img")
        )
        .to_series()
    )
    missing_image = keyed & ~is_delete & after.is_null()
    # Rows rejected for their key are not looked at (they must not count as drift either).
    decoded = decode_images(mapping, keep_where(image, key_ok))
    findings = apply_policy(decoded.findings)
    src = decoded.frame
    # Key-only deletes: the key columns come from the message key.
    key_only = is_delete & ~use_before
    if key_only.any():
        src = src.with_columns(
            [
                pl.when(pl.Series(key_only)).then(keys.get_column(c)).otherwise(pl.col(c)).alias(c)
                for c in mapping.key
            ]
        )
    toast: dict[str, pl.Series] = {}
    for col, ctype in mapping.columns.items():
        if ColumnType(ctype) in TOASTABLE and col in src.columns:
            mask = (src.get_column(col) == TOAST_PLACEHOLDER).fill_null(False)
            if mask.any():
                toast[col] = mask
    if toast:
        src = src.with_columns(
            [pl.when(pl.Series(m)).then(None).otherwise(pl.col(c)).alias(c) for c, m in toast.items()]
        )
    ev = _Evaluator(mapping, src, toast)
    results = {f.name: ev.run(f) for f in mapping.fields}

    required_msgs: list[pl.Series] = []
    optional_msgs: list[pl.Series] = []
    unavailable_cols: list[pl.Expr] = []
    frame_cols: dict[str, pl.Series] = {}
    for f in mapping.fields:
        r = results[f.name]
        raw_inputs = [ev.values[c[1:]] if is_field_ref(c) else src.get_column(c) for c in f.inputs]
        msgs = _messages(f, r.failed_step, raw_inputs)
        if msgs is not None:
            (required_msgs if f.required else optional_msgs).append(msgs)
        if r.unavailable is not None:
            frame_cols[f"__u_{f.name}"] = r.unavailable
            unavailable_cols.append(pl.when(pl.col(f"__u_{f.name}")).then(pl.lit(f.name)))
    missing: list[pl.Series] = []
    for f in mapping.fields:
        if f.required:
            r = results[f.name]
            null = r.value.is_null() & r.failed_step.is_null()
            if r.unavailable is not None:
                null = null & ~r.unavailable
            if null.any():
                missing.append(keep_where(const(missing_message(f.name), n, pl.String()), null))
    return _assemble(
        mapping, events, keys, key_ok, missing_image, decoded.malformed, decoded.extras, results,
        required_msgs, optional_msgs, missing, frame_cols, unavailable_cols, findings,
    )  # fmt: skip


def _list_of(series: list[pl.Series], n: int) -> pl.Series:
    """Per row, the non-null entries of ``series`` in order, as a list column."""
    series = [s for s in series if s.null_count() < n]  # list operations are costly: skip empty ones
    if not series:
        return const([], n, pl.List(pl.String()))
    frame = pl.DataFrame({f"m{i}": s for i, s in enumerate(series)})
    return frame.select(pl.concat_list(pl.all()).list.drop_nulls().alias("l")).to_series()


def _assemble(
    mapping: Mapping,
    events: pl.DataFrame,
    keys: pl.DataFrame,
    key_ok: pl.Series,
    missing_image: pl.Series,
    malformed: pl.Series | None,
    extras: pl.Series | None,
    results: dict[str, _FieldResult],
    required_msgs: list[pl.Series],
    optional_msgs: list[pl.Series],
    missing: list[pl.Series],
    frame_cols: dict[str, pl.Series],
    unavailable_cols: list[pl.Expr],
    findings: list[DriftFinding],
) -> MappedBatch:
    n = events.height
    op = events.get_column("op")
    is_t = op == "t"
    is_delete = op == "d"
    keyed = op.is_in(KEYED_OPS)
    req = _list_of(required_msgs, n)
    miss = _list_of(missing, n)
    opt = _list_of(optional_msgs, n)
    work = pl.DataFrame(
        {
            "op": op,
            "is_t": is_t,
            "is_d": is_delete,
            "keyed": keyed,
            "key_ok": key_ok,
            "missing_image": missing_image,
            "malformed": malformed if malformed is not None else const(False, n),
            "req": req,
            "miss": miss,
            "opt": opt,
            **frame_cols,
        }
    )
    reason = (
        pl.when(~(pl.col("keyed") | pl.col("is_t")))
        .then(pl.lit("unsupported_op"))
        .when(~pl.col("key_ok") & pl.col("keyed"))
        .then(pl.lit("missing_key"))
        .when(pl.col("missing_image"))
        .then(pl.lit("missing_image"))
        .when(pl.col("malformed"))
        .then(pl.lit("malformed_image"))
        .when(~pl.col("is_d") & (pl.col("req").list.len() > 0))
        .then(pl.lit("mapping_failed"))
        .when(~pl.col("is_d") & ~pl.col("is_t") & (pl.col("miss").list.len() > 0))
        .then(pl.lit("missing_required"))
    )
    detail = (
        pl.when(pl.col("reason") == "unsupported_op")
        .then(pl.format("op={}", pl.col("op")))
        .when(pl.col("reason") == "missing_key")
        .then(pl.lit(f"no usable key ({', '.join(mapping.key)}) in the message key"))
        .when(pl.col("reason") == "missing_image")
        .then(pl.format("op={} without an 'after' image", pl.col("op")))
        .when(pl.col("reason") == "malformed_image")
        .then(pl.lit("the row image is not a JSON object"))
        .otherwise(pl.concat_list("req", "miss").list.join("; "))
    )
    # Deletes keep every problem as an issue; other rows keep the optional ones.
    issues = pl.when(pl.col("is_d")).then(pl.concat_list("req", "opt")).otherwise(pl.col("opt"))
    if unavailable_cols:
        unavailable = pl.concat_list(unavailable_cols).list.drop_nulls()
    else:
        unavailable = pl.lit([], dtype=pl.List(pl.String))
    work = work.with_columns(reason=reason).with_columns(
        detail=detail,
        issues=pl.when(pl.col("is_t")).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(issues),
        unavailable=pl.when(pl.col("is_t")).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(unavailable),
    )
    rejected = work.get_column("reason").is_not_null()
    source_key = keys.select(
        pl.concat_str([pl.col(c).cast(pl.String) for c in mapping.key], separator="|")
    ).to_series()
    schema = record_schema(mapping.entity)
    cols: dict[str, pl.Series] = {
        "source_system": events.get_column("system"),
        "source_table": const(mapping.source_table, n, pl.String()),
        "source_key": keep_where(source_key, ~is_t),
        "lsn": events.get_column("lsn"),
        "tx_id": events.get_column("tx_id"),
        "source_ts": events.get_column("source_ts"),
        "mapping_version": const(mapping.version_tag, n, pl.String()),
        "op": op,
        "deleted": is_delete | is_t,
        "snapshot": events.get_column("snapshot") != "false",
        "topic": events.get_column("topic"),
        "partition": events.get_column("partition"),
        "offset": events.get_column("offset"),
        "unavailable": work.get_column("unavailable"),
        "issues": work.get_column("issues"),
        "extras": keep_where(extras, ~is_t) if extras is not None else const(None, n, pl.String()),
    }
    null_t = ~is_t
    for name, dtype in schema.items():
        if name in cols:
            continue
        r = results.get(name)
        if r is None:
            cols[name] = const(None, n, dtype)
        else:
            cols[name] = keep_where(r.value, null_t)
    records = pl.DataFrame({k: cols[k] for k in schema.names()}).cast(schema).filter(~rejected)
    rej = work.filter(rejected)
    evs = events.filter(rejected)
    value = evs.select(pl.coalesce("after", "before")).to_series()
    rejects = pl.DataFrame(
        {
            "stage": const(STAGE, rej.height, pl.String()),
            "reason": rej.get_column("reason"),
            "detail": rej.get_column("detail"),
            "topic": evs.get_column("topic"),
            "partition": evs.get_column("partition").cast(pl.Int32),
            "offset": evs.get_column("offset"),
            "key": evs.get_column("key").cast(pl.Binary),
            "value": value.cast(pl.Binary),
        },
        schema=REJECT_SCHEMA,
    )
    return MappedBatch(mapping.entity, records, rejects, findings)
