"""Text transforms: whitespace, case, Unicode normalisation, mojibake repair, emails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from pydantic import Field
from typing_extensions import override

from core.configfile import StrictModel
from flows.canonical import values as val
from flows.canonical.kinds import Kind
from flows.canonical.transforms.base import RowCtx, Transform, VectorCtx, keep_where, map_unique

_NON_ASCII = r"[^\x00-\x7F]"


def _non_ascii_only(s: pl.Series, fn: Any) -> pl.Series:
    # ASCII text is left alone by these functions (see values.fix_text), so only the non-ASCII
    # values go through Python, once per distinct value.
    candidates = keep_where(s, s.str.contains(_NON_ASCII))
    fixed = map_unique(candidates, fn, pl.String())
    return fixed.fill_null(s) if fixed.null_count() < fixed.len() else s


def _collapse_trim(s: pl.Series) -> pl.Series:
    return s.str.replace_all(val.WS_CLASS_RUST + "+", " ").str.strip_chars(val.WHITESPACE)


class Trim(Transform):
    """Trim whitespace at both ends."""

    name = "trim"
    summary = "remove leading/trailing whitespace"

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return inputs[0].str.strip_chars(val.WHITESPACE)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return val.strip_ws(inputs[0])


class CollapseSpaces(Transform):
    """Every run of whitespace becomes one space, then trim."""

    name = "collapse_spaces"
    summary = "runs of whitespace -> one space, trimmed"

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return _collapse_trim(inputs[0])

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return val.clean_text(inputs[0])


class Lower(Transform):
    """Lower case."""

    name = "lower"
    summary = "lower case"

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return inputs[0].str.to_lowercase()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return inputs[0].lower()


class Upper(Transform):
    """Upper case."""

    name = "upper"
    summary = "upper case"

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return inputs[0].str.to_uppercase()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return inputs[0].upper()


class Nfc(Transform):
    """Unicode NFC normalisation."""

    name = "nfc"
    summary = "Unicode NFC"
    vectorised = False

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return _non_ascii_only(inputs[0], val.nfc)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return val.nfc(inputs[0])


class FixText(Transform):
    """Repair mis-decoded text (ftfy) and normalise to NFC."""

    name = "fix_text"
    summary = "repair mojibake (ftfy, encoding fixes only) + NFC"
    vectorised = False

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return _non_ascii_only(inputs[0], val.fix_text)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return val.fix_text(inputs[0])


class Text(Transform):
    """The usual clean-up of a typed text field: fix_text, then collapse_spaces."""

    name = "text"
    summary = "fix_text + NFC, whitespace runs -> one space, trimmed"
    vectorised = False

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return _collapse_trim(_non_ascii_only(inputs[0], val.fix_text))

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return val.clean_text(val.fix_text(inputs[0]))


class FixCase(Transform):
    """Title-case values typed in ALL CAPS or all lower case; mixed case is kept."""

    name = "fix_case"
    summary = "ALL CAPS / all lower -> Title Case (mixed case kept)"
    vectorised = False

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return map_unique(inputs[0], val.fix_case, pl.String())

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return val.fix_case(inputs[0])


class NullIfArgs(StrictModel):
    """Values that mean "no value"."""

    values: list[str] = Field(min_length=1)


class NullIf(Transform):
    """Values that mean "no value" in this source ('-', 'n/a', '0000-00-00') become null."""

    name = "null_if"
    summary = "listed values -> null"
    Args = NullIfArgs
    shorthand = "values"
    nullifies = True

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        return keep_where(s, ~s.is_in(args.values))

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return None if inputs[0] in args.values else inputs[0]

    @override
    def describe(self, args: Any) -> str:
        return f"null_if({', '.join(repr(v) for v in args.values)})"


class Email(Transform):
    """Trim, lower-case and check the shape of an email address."""

    name = "email"
    summary = "trimmed, lower case, must look like local@domain.tld"

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0].str.strip_chars(val.WHITESPACE).str.to_lowercase()
        return keep_where(s, s.str.contains(val.EMAIL_RE_RUST))

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        s = val.strip_ws(inputs[0]).lower()
        return s if val.is_email(s) else None


class String(Transform):
    """Integers and booleans as text (``42``, ``true``)."""

    name = "string"
    summary = "int/bool -> text"
    accepts = frozenset({Kind.TEXT, Kind.INT, Kind.BOOL})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.TEXT

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return inputs[0].cast(pl.String)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)


TRANSFORMS: tuple[Transform, ...] = (
    Trim(),
    CollapseSpaces(),
    Lower(),
    Upper(),
    Nfc(),
    FixText(),
    Text(),
    FixCase(),
    NullIf(),
    Email(),
    String(),
)
