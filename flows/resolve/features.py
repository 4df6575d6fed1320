"""Turning a record (field -> value) into its feature tuple, the only form matching works on."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime

import numpy as np
import numpy.typing as npt

from flows.resolve.config import MatchingConfig
from flows.resolve.normalize import chain

_MISSING = object()

Features = tuple[str | None, ...]
"""A record's feature values, in the config's feature order (``None``: no usable value)."""


def as_text(value: object) -> str | None:
    """A field value as text for normalisation: dates in ISO form; None, NaN and blanks are None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value and not value.isspace() else None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class FeatureExtractor:
    """Computes feature tuples for one matching config.

    Values are interned, so equal values share one string object across records (the resolver's
    state stays small), and normalisations are memoised per distinct raw value (names, places and
    dates repeat a lot).
    """

    _MEMO_LIMIT = 200_000

    def __init__(self, config: MatchingConfig) -> None:
        self.names: tuple[str, ...] = config.feature_names()
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.fields: tuple[str, ...] = tuple(sorted({s for f in config.features.values() for s in f.sources}))
        feats = list(config.features.values())
        # A feature whose operations extend an earlier feature's (same sources) starts from that
        # feature's value: "name_sorted" = "name" + sort_tokens normalises the name once.
        self._specs: list[tuple[tuple[str, ...], Callable[[str | None], str | None], str, int]] = []
        for j, f in enumerate(feats):
            base, rest = -1, f.ops
            for i in range(j):
                g = feats[i]
                longer = base < 0 or len(g.ops) > len(feats[base].ops)
                same_input = (g.sources, g.join) == (f.sources, f.join)
                if same_input and len(g.ops) < len(f.ops) and f.ops[: len(g.ops)] == g.ops and longer:
                    base, rest = i, f.ops[len(g.ops) :]
            self._specs.append((f.sources, chain(rest), f.join, base))
        self._memo: list[dict[str, str | None]] = [{} for _ in self._specs]

    def __call__(self, record: Mapping[str, object]) -> Features:
        """The feature tuple of ``record`` (missing fields count as no value)."""
        out: list[str | None] = []
        text = {f: as_text(record.get(f)) for f in self.fields}
        for (sources, run, join, base), memo in zip(self._specs, self._memo, strict=True):
            if base >= 0:
                raw = out[base]
            elif len(sources) == 1:
                raw = text[sources[0]]
            else:
                parts = [text[s] for s in sources]
                present = [p for p in parts if p is not None]
                if not present or (join == "all" and len(present) != len(parts)):
                    raw = None
                else:
                    raw = present[0] if join == "first" else " ".join(present)
            if raw is None:
                out.append(None)
                continue
            value = memo.get(raw, _MISSING)
            if value is _MISSING:
                value = run(raw)
                value = None if value is None else sys.intern(value)
                if len(memo) >= self._MEMO_LIMIT:
                    memo.clear()
                memo[raw] = value
            out.append(value)  # type: ignore[arg-type]
        return tuple(out)


class FeatureStore:
    """Feature values of many records as integer codes: one int32 row per record.

    Each feature has its own vocabulary; code 0 is "no value". Scoring a batch of pairs is then a
    fancy index of two row arrays, exact agreement an integer comparison, and per-value facts (the
    string for a similarity, a date's day number, a term-frequency adjustment) are arrays indexed by
    code (:meth:`derived`). Rows of deleted records are reused; vocabularies only grow.
    """

    def __init__(self, n_features: int, capacity: int = 1024) -> None:
        self.n_features = n_features
        self.codes: npt.NDArray[np.int32] = np.zeros((max(capacity, 16), n_features), dtype=np.int32)
        self.vocab: list[dict[str, int]] = [{} for _ in range(n_features)]
        self._strs: list[npt.NDArray[np.object_]] = [_object_array(16) for _ in range(n_features)]
        self._lists: list[list[str]] = [[""] for _ in range(n_features)]
        self.row_of: dict[str, int] = {}
        self._free: list[int] = []
        self._next = 0
        self._derived: dict[tuple[object, int], tuple[npt.NDArray[np.float64], int]] = {}

    def __len__(self) -> int:
        return len(self.row_of)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self.row_of

    def n_values(self, f: int) -> int:
        """Codes in use for feature ``f`` (including 0)."""
        return len(self.vocab[f]) + 1

    def encode(self, features: Features) -> list[int]:
        """The codes of a feature tuple (new values join the vocabularies)."""
        out = []
        for f, v in enumerate(features):
            if v is None:
                out.append(0)
                continue
            voc = self.vocab[f]
            code = voc.get(v)
            if code is None:
                code = len(voc) + 1
                voc[v] = code
                arr = self._strs[f]
                if code >= len(arr):
                    grown = _object_array(len(arr) * 2)
                    grown[: len(arr)] = arr
                    self._strs[f] = arr = grown
                arr[code] = v
                self._lists[f].append(v)
            out.append(code)
        return out

    def decode(self, codes: Sequence[int]) -> Features:
        """The feature tuple of a code row."""
        return tuple(self._strs[f][c] if c else None for f, c in enumerate(codes))

    def put(self, record_id: str, features: Features) -> int:
        """Store (or replace) a record's features; returns its row."""
        row = self.row_of.get(record_id)
        if row is None:
            if self._free:
                row = self._free.pop()
            else:
                row = self._next
                self._next += 1
                if row >= len(self.codes):
                    grown = np.zeros((len(self.codes) * 2, self.n_features), dtype=np.int32)
                    grown[: len(self.codes)] = self.codes
                    self.codes = grown
            self.row_of[record_id] = row
        self.codes[row] = self.encode(features)
        return row

    def remove(self, record_id: str) -> None:
        """Forget a record; its row is reused."""
        row = self.row_of.pop(record_id)
        self.codes[row] = 0
        self._free.append(row)

    def row(self, record_id: str) -> int:
        """The row of a stored record (KeyError for an unknown one)."""
        return self.row_of[record_id]

    def get(self, record_id: str) -> Features | None:
        """A record's feature tuple, or None for an unknown record."""
        row = self.row_of.get(record_id)
        return None if row is None else self.decode(self.codes[row].tolist())

    def strings(self, f: int) -> npt.NDArray[np.object_]:
        """Feature ``f``'s values indexed by code (``""`` at code 0; unused slots beyond the end)."""
        return self._strs[f]

    def string_lists(self) -> list[list[str]]:
        """Every feature's values as plain lists indexed by code (fast to index one at a time)."""
        return self._lists

    def derived(self, key: object, f: int, fn: Callable[[str], float]) -> npt.NDArray[np.float64]:
        """``fn`` of every value of feature ``f``, indexed by code (0 at code 0); cached under ``key``
        and extended as the vocabulary grows."""
        n = self.n_values(f)
        got = self._derived.get((key, f))
        if got is not None and got[1] == n:
            return got[0]
        arr, done = got if got is not None else (np.zeros(16, dtype=np.float64), 1)
        if len(arr) < n:
            grown = np.zeros(max(n, 2 * len(arr)), dtype=np.float64)
            grown[: len(arr)] = arr
            arr = grown
        strs = self._strs[f]
        for c in range(done, n):
            arr[c] = fn(strs[c])
        self._derived[(key, f)] = (arr, n)
        return arr

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_derived"] = {}
        state["codes"] = self.codes[: max(self._next, 16)].copy()
        return state


def _object_array(n: int) -> npt.NDArray[np.object_]:
    arr = np.empty(n, dtype=object)
    arr[0] = ""
    return arr
