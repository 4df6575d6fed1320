"""What a transform is: a named, typed step with a vectorised and a per-record implementation.

Every transform has

* a pydantic ``Args`` model (what may follow its name in YAML), validated at load time;
* a kind signature (:meth:`Transform.out_kind`), so a pipeline that feeds a date into ``lower`` is a
  load-time error, not a runtime surprise;
* :meth:`Transform.vector`, working on whole polars Series (the engine), and :meth:`Transform.scalar`,
  working on one Python value (the reference implementation). Property tests hold them equal.

Failure rule, shared by both implementations so they cannot disagree: a unary step *fails* on a row
when its input is not null and its output is null, unless the transform may legitimately produce
null (``nullifies``, e.g. ``null_if``). Multi-input steps (``join``, ``coalesce``, ``ref``) never fail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl
from polars._typing import PolarsDataType

from core.configfile import StrictModel
from flows.canonical.kinds import Kind


class NoArgs(StrictModel):
    """A transform without arguments."""


class KindError(ValueError):
    """A step receives or produces a kind it cannot handle (raised while compiling a mapping)."""


@dataclass(frozen=True)
class VectorCtx:
    """What a vectorised step may look at besides its input: the mapping's zone, earlier fields."""

    timezone: str
    fields: dict[str, pl.Series] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)
    """Per-batch scratch space for work several steps share (keyed by the step; see split_name)."""


@dataclass(frozen=True)
class RowCtx:
    """The per-record counterpart of :class:`VectorCtx`."""

    timezone: str
    fields: dict[str, Any] = field(default_factory=dict)


class Transform(ABC):
    """One named step of a field pipeline."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Args: ClassVar[type[StrictModel]] = NoArgs
    shorthand: ClassVar[str | None] = None
    """The argument a non-mapping YAML value fills (``null_if: ['-']`` -> ``values``)."""
    mapping_shorthand: ClassVar[bool] = False
    """When true, a YAML mapping also fills :attr:`shorthand` (``enum: {A: active}``)."""
    accepts: ClassVar[frozenset[Kind]] = frozenset({Kind.TEXT})
    many: ClassVar[bool] = False
    """Takes all of the field's input columns (must then be the first step)."""
    nullifies: ClassVar[bool] = False
    handles_null: ClassVar[bool] = False
    """The step maps null to a value (``presence``); otherwise null in is null out."""
    vectorised: ClassVar[bool] = True
    """False when the engine calls Python per unique value (said in the mapping documentation)."""

    def parse_args(self, raw: Any) -> StrictModel:
        """Validate the YAML value that follows the transform's name."""
        if raw is None:
            return self.Args()
        if isinstance(raw, dict) and not self.mapping_shorthand:
            return self.Args.model_validate(raw)
        if self.shorthand is None:
            raise ValueError(f"'{self.name}' takes named arguments (a mapping), got {raw!r}")
        return self.Args.model_validate({self.shorthand: raw})

    def out_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        """The kind this step produces for inputs of ``in_kinds``; :class:`KindError` if unsupported."""
        self.check_inputs(in_kinds)
        return self.result_kind(in_kinds, args)

    def check_inputs(self, in_kinds: Sequence[Kind]) -> None:
        """Raise :class:`KindError` unless every input kind is accepted."""
        bad = [k for k in in_kinds if k not in self.accepts]
        if bad:
            want = ", ".join(sorted(self.accepts))
            raise KindError(f"'{self.name}' takes {want}, got {', '.join(bad)}")

    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        """The output kind (default: the input's)."""
        return in_kinds[0]

    def refs(self, args: Any) -> tuple[str, ...]:
        """Canonical fields this step reads (they are computed first)."""
        return ()

    def describe(self, args: Any) -> str:
        """The step as written in the mapping documentation."""
        dumped = args.model_dump(exclude_defaults=True, by_alias=True)
        if not dumped:
            return self.name
        inner = ", ".join(f"{k}={v}" for k, v in dumped.items())
        return f"{self.name}({inner})"

    @abstractmethod
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        """The step on whole columns."""

    @abstractmethod
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        """The step on one record's values; None for null (and for a failure: see the module doc)."""


def map_unique(series: pl.Series, fn: Callable[[Any], Any], dtype: pl.DataType) -> pl.Series:
    """Apply a plain-Python ``fn`` to each *distinct* non-null value only, then spread the results.

    For lookups with no vectorised form (phonenumbers, pycountry, ftfy): a batch of 20k rows
    typically holds far fewer distinct values, and ``fn`` is itself LRU-cached across batches.
    """
    uniq = series.drop_nulls().unique()
    if uniq.len() == 0:
        return const(None, series.len(), dtype).rename(series.name)
    mapped = pl.Series([fn(v) for v in uniq.to_list()], dtype=dtype)
    return series.replace_strict(uniq, mapped, default=None, return_dtype=dtype)


def map_unique_rows(frame: pl.DataFrame, fn: Callable[..., Any], dtype: pl.DataType) -> pl.Series:
    """Like :func:`map_unique` for functions of several columns: distinct rows, then a join back."""
    cols = frame.columns
    uniq = frame.unique(maintain_order=False)
    values = [fn(*row) for row in uniq.iter_rows()]
    table = uniq.with_columns(pl.Series("__out", values, dtype=dtype))
    joined = frame.join(table, on=cols, how="left", nulls_equal=True, maintain_order="left")
    return joined.get_column("__out")


def const(value: Any, n: int, dtype: PolarsDataType | None = None) -> pl.Series:
    """A column of ``n`` copies of ``value`` (built natively: a Python list of n items is slow).

    Repeats a one-element Series: ``pl.repeat(..., eager=True)`` runs a query per call (~0.25 ms,
    and a small batch's mapping builds dozens of these), this ~0.02 ms.
    """
    if dtype is None and isinstance(value, int) and not isinstance(value, bool):
        dtype = pl.Int64()
    return pl.Series("literal", [value], dtype=dtype).new_from_index(0, n)


def keep_where(series: pl.Series, mask: pl.Series) -> pl.Series:
    """``series`` where ``mask`` is true, null elsewhere (a null mask counts as false)."""
    frame = pl.DataFrame({"v": series, "m": mask})
    return frame.select(pl.when(pl.col("m")).then(pl.col("v")).alias(series.name)).to_series()
