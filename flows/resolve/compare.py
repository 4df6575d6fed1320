"""Scoring record pairs: comparison levels, Fellegi-Sunter match weights, term-frequency adjustment.

A comparison's levels are tried in order and the first that holds is the outcome. Scoring works on
a batch of pairs at once, column-wise over the integer codes of a
:class:`~flows.resolve.features.FeatureStore`: exact agreement and missing values are integer
comparisons, string similarities come from ``rapidfuzz.process.cpdist`` on the values' strings, and
each level is tested only on the pairs no earlier level claimed. Every pair's result depends on that
pair alone, so a record scores the same whether it arrives alone or in a batch.

The match weight of a pair is ``log2(prior / (1 - prior)) + sum over comparisons of log2(m / u)``
of the level that holds, plus for levels with ``tf`` the term-frequency adjustment
``tf_weight * log2(s2 / p_v)``: ``p_v`` is the share of training records holding the pair's value
and ``s2 = sum p^2`` the chance that two random records agree on that feature, so a common value
gives less evidence than an average one and a rare value more.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein, Jaro, JaroWinkler, Levenshtein

from flows.resolve.config import Comparison, MatchingConfig, TermFrequencyTable
from flows.resolve.features import Features, FeatureStore

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
LevelArray = npt.NDArray[np.int8]

SCALAR_MAX_PAIRS = 160
"""Up to this many pairs a scoring call tests pair by pair; numpy pays off from there on."""

_EPS = 1e-9
"""Similarity thresholds are compared as ``s >= min - _EPS`` so float noise never decides a level."""

_SIMILARITY: dict[str, Callable[..., Any]] = {
    "jaro_winkler": JaroWinkler.normalized_similarity,
    "jaro": Jaro.normalized_similarity,
    "token_set": fuzz.token_set_ratio,
}
_SCALE = {"token_set": 100.0}
_DISTANCE: dict[str, Callable[..., Any]] = {
    "levenshtein": Levenshtein.distance,
    "damerau_levenshtein": DamerauLevenshtein.distance,
}


def probability(weight: float) -> float:
    """Match probability of a match weight (log2 Bayes factor including the prior)."""
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    bf: float = 2.0**weight
    return bf / (1.0 + bf)


def weight_of(prob: float) -> float:
    """The match weight of a match probability."""
    return math.log2(prob / (1.0 - prob))


# -- term frequencies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TF:
    counts: dict[str, int]
    total: int
    log_s2: float
    min_u: float
    share: float
    memo: dict[str, float]

    def adjustment(self, value: str | None) -> float:
        if value is None or self.total <= 0:
            return 0.0
        got = self.memo.get(value)
        if got is None:
            p = max(self.counts.get(value, 1) / self.total, self.min_u)
            got = self.share * (self.log_s2 - math.log2(p))
            if len(self.memo) < 500_000:
                self.memo[value] = got
        return got


def _tf(table: TermFrequencyTable, comp: Comparison) -> _TF | None:
    if table.total <= 0:
        return None
    n = table.total
    seen = sum(table.counts.values())
    singles = max(n - seen, 0)
    s2 = (sum(c * c for c in table.counts.values()) + singles) / (n * n)
    return _TF(table.counts, n, math.log2(max(s2, comp.tf_min_u)), comp.tf_min_u, comp.tf_weight, {})


# -- dates and numbers -------------------------------------------------------------------------

_ORDINAL_CACHE: dict[str, float] = {}


def _ordinal(value: str | None) -> float:
    if value is None:
        return math.nan
    got = _ORDINAL_CACHE.get(value)
    if got is None:
        try:
            got = float(date.fromisoformat(value[:10]).toordinal())
        except ValueError:
            got = math.nan
        if len(_ORDINAL_CACHE) < 1_000_000:
            _ORDINAL_CACHE[value] = got
    return got


def _number(value: str | None) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.nan


# -- predicates ----------------------------------------------------------------------------------


class _Pairs:
    """A batch of pairs as two code matrices, with per-feature results cached for the call."""

    __slots__ = ("_cache", "agree", "left", "n", "null", "right", "store")

    def __init__(self, store: FeatureStore, ra: IndexArray, rb: IndexArray) -> None:
        self.store = store
        self.n = len(ra)
        self.left = store.codes[ra]
        self.right = store.codes[rb]
        zl, zr = self.left == 0, self.right == 0
        self.null: BoolArray = zl | zr
        self.agree: BoolArray = (self.left == self.right) & ~zl
        self._cache: dict[tuple[str, int], tuple[FloatArray, BoolArray]] = {}

    def strings(self, f: int, side: int, rows: IndexArray) -> npt.NDArray[np.object_]:
        codes = (self.left if side == 0 else self.right)[rows, f]
        return self.store.strings(f)[codes]  # type: ignore[no-any-return]

    def metric(self, kind: str, f: int, rows: IndexArray) -> FloatArray:
        """The similarity, distance or day difference of feature ``f`` for ``rows`` (computed once)."""
        key = (kind, f)
        cached = self._cache.get(key)
        if cached is None:
            cached = (np.full(self.n, np.nan), np.zeros(self.n, dtype=bool))
            self._cache[key] = cached
        values, have = cached
        need = rows[~have[rows]]
        if len(need):
            if kind == "date_diff":
                days = self.store.derived("ordinal", f, _ordinal)
                values[need] = np.abs(days[self.left[need, f]] - days[self.right[need, f]])
            else:
                left, right = self.strings(f, 0, need), self.strings(f, 1, need)
                if kind in _SIMILARITY:
                    got = process.cpdist(left, right, scorer=_SIMILARITY[kind], dtype=np.float64)
                    values[need] = got / _SCALE.get(kind, 1.0)
                else:
                    values[need] = process.cpdist(left, right, scorer=_DISTANCE[kind], dtype=np.int64)
            have[need] = True
        return values[rows]


@dataclass(frozen=True, slots=True)
class _Pred:
    kind: str
    features: tuple[int, ...]
    min: float | None
    max: float | None
    relative: bool

    def test(self, pairs: _Pairs, rows: IndexArray) -> BoolArray:
        """The predicate on the pairs ``rows``."""
        k = self.kind
        if k == "exact":
            return pairs.agree[rows, self.features[0]]  # type: ignore[no-any-return]
        if k == "any_exact":
            fs = self.features
            hit = np.zeros(len(rows), dtype=bool)
            for x in fs:
                for y in fs:
                    if x == y:
                        hit |= pairs.agree[rows, x]
                        continue
                    ok = ~(pairs.left[rows, x] == 0) & ~(pairs.right[rows, y] == 0) & ~hit
                    sub = rows[ok]
                    if len(sub):
                        ok[ok] = np.equal(pairs.strings(x, 0, sub), pairs.strings(y, 1, sub)).astype(bool)
                        hit |= ok
            return hit
        if k == "crossed":
            x, y = self.features
            hit = np.zeros(len(rows), dtype=bool)
            for p, q in ((x, y), (y, x)):
                ok = (pairs.left[rows, p] != 0) & (pairs.right[rows, q] != 0) & ~hit
                sub = rows[ok]
                if len(sub):
                    ok[ok] = np.equal(pairs.strings(p, 0, sub), pairs.strings(q, 1, sub)).astype(bool)
                    hit |= ok
            return hit
        if k == "swapped":
            a, b = self.features
            ok = ~pairs.null[rows, a] & ~pairs.null[rows, b]
            sub = rows[ok]
            if len(sub):
                same = np.equal(pairs.strings(a, 0, sub), pairs.strings(b, 1, sub)).astype(bool)
                same &= np.equal(pairs.strings(b, 0, sub), pairs.strings(a, 1, sub)).astype(bool)
                ok[ok] = same
            return ok  # type: ignore[no-any-return]
        f = self.features[0]
        ok = ~pairs.null[rows, f]
        sub = rows[ok]
        if not len(sub):
            return ok  # type: ignore[no-any-return]
        if k == "numeric_diff":
            assert self.max is not None
            nums = pairs.store.derived("number", f, _number)
            ln, rn = nums[pairs.left[sub, f]], nums[pairs.right[sub, f]]
            limit = self.max * np.maximum(np.abs(ln), np.abs(rn)) if self.relative else self.max
            with np.errstate(invalid="ignore"):
                ok[ok] = np.abs(ln - rn) <= limit + 1e-12
            return ok  # type: ignore[no-any-return]
        m = pairs.metric(k, f, sub)
        with np.errstate(invalid="ignore"):
            if k in _SIMILARITY:
                assert self.min is not None
                ok[ok] = m >= self.min - _EPS
            else:
                assert self.max is not None
                ok[ok] = m <= self.max
        return ok  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _Level:
    null: tuple[int, ...] | None
    null_all: bool
    preds: tuple[_Pred, ...]
    weight: float
    tf_feature: int | None
    tf: _TF | None

    def test(self, pairs: _Pairs, rows: IndexArray) -> BoolArray:
        if self.null is not None:
            sel = pairs.null[np.ix_(rows, np.asarray(self.null, dtype=np.intp))]
            return np.asarray(sel.all(axis=1) if self.null_all else sel.any(axis=1), dtype=bool)
        mask = self.preds[0].test(pairs, rows)
        for p in self.preds[1:]:
            sub = np.flatnonzero(mask)
            if not len(sub):
                break
            mask[sub] = p.test(pairs, rows[sub])
        return mask


# -- the same tests for one pair at a time ----------------------------------------------------

Codes = Sequence[int]
Strings = Sequence[Sequence[str]]
PairFunction = Callable[[Codes, Codes, Strings], tuple[tuple[int, ...], float]]


class _Source:
    """Python source of the per-pair function (see :func:`_pair_function`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {"_ordinal": _ordinal, "_number": _number, "abs": abs, "max": max}
        self.metrics: dict[tuple[str, int], str] = {}

    def bind(self, prefix: str, value: object) -> str:
        name = f"{prefix}{len(self.env)}"
        self.env[name] = value
        return name

    def metric(self, kind: str, f: int) -> str:
        """A local caching ``kind`` of feature ``f`` for this pair (computed on first use)."""
        key = (kind, f)
        if key not in self.metrics:
            self.metrics[key] = f"m_{len(self.metrics)}"
        return self.metrics[key]


def _condition(p: _Pred, src: _Source) -> str:
    kind = p.kind
    if kind == "exact":
        f = p.features[0]
        return f"(a[{f}] != 0 and a[{f}] == b[{f}])"
    if kind == "swapped":
        x, y = p.features
        return (
            f"(a[{x}] != 0 and a[{y}] != 0 and b[{x}] != 0 and b[{y}] != 0"
            f" and S[{x}][a[{x}]] == S[{y}][b[{y}]] and S[{y}][a[{y}]] == S[{x}][b[{x}]])"
        )
    if kind == "crossed":
        x, y = p.features
        return (
            f"((a[{x}] != 0 and b[{y}] != 0 and S[{x}][a[{x}]] == S[{y}][b[{y}]])"
            f" or (a[{y}] != 0 and b[{x}] != 0 and S[{y}][a[{y}]] == S[{x}][b[{x}]]))"
        )
    if kind == "any_exact":
        # some present value on the left equals some present value on the right
        checks = " or ".join(
            f"(a[{x}] != 0 and ("
            + " or ".join(
                f"a[{x}] == b[{y}]" if x == y else f"(b[{y}] != 0 and S[{x}][a[{x}]] == S[{y}][b[{y}]])"
                for y in p.features
            )
            + "))"
            for x in p.features
        )
        return f"({checks})"
    f = p.features[0]
    present = f"a[{f}] != 0 and b[{f}] != 0"
    if kind in _SIMILARITY:
        assert p.min is not None
        fn = src.bind("sim", _SIMILARITY[kind])
        scale = _SCALE.get(kind, 1.0)
        m = src.metric(kind, f)
        value = f"float({fn}(S[{f}][a[{f}]], S[{f}][b[{f}]])) / {scale!r}"
        return f"({present} and ({m} := ({m} if {m} is not None else {value})) >= {p.min - _EPS!r})"
    assert p.max is not None
    if kind in _DISTANCE:
        fn = src.bind("dist", _DISTANCE[kind])
        m = src.metric(kind, f)
        value = f"{fn}(S[{f}][a[{f}]], S[{f}][b[{f}]])"
        return f"({present} and ({m} := ({m} if {m} is not None else {value})) <= {p.max!r})"
    if kind == "date_diff":
        return f"({present} and abs(_ordinal(S[{f}][a[{f}]]) - _ordinal(S[{f}][b[{f}]])) <= {p.max!r})"
    na, nb = f"_number(S[{f}][a[{f}]])", f"_number(S[{f}][b[{f}]])"
    bound = f"{p.max!r} * max(abs({na}), abs({nb}))" if p.relative else repr(p.max)
    return f"({present} and abs({na} - {nb}) <= {bound} + 1e-12)"


def _pair_function(
    levels: list[list[_Level]], weights: list[list[float]], prior: float, tf_plan: list[Any]
) -> PairFunction:
    """Generate one flat Python function scoring a single pair: levels and match weight.

    The tests and the sum are exactly those of the column-wise path (same predicates, same
    thresholds, additions in the same order), written out without per-test function calls so one
    record's few candidate pairs score quickly.
    """
    src = _Source()
    body: list[str] = []
    for c, lvls in enumerate(levels):
        for i, lvl in enumerate(lvls[:-1]):
            if lvl.null is not None:
                parts = [f"(a[{f}] == 0 or b[{f}] == 0)" for f in lvl.null]
                cond = (" and " if lvl.null_all else " or ").join(parts)
            else:
                cond = " and ".join(_condition(p, src) for p in lvl.preds)
            body.append(f"    {'if' if i == 0 else 'elif'} {cond}:\n        c{c} = {i}")
        if len(lvls) == 1:
            body.append(f"    c{c} = 0")
        else:
            body.append(f"    else:\n        c{c} = {len(lvls) - 1}")
    body.append(f"    w = {prior!r}")
    for c, ws in enumerate(weights):
        body.append(f"    w += {src.bind('W', ws)}[c{c}]")
    for c, i, f, tf in tf_plan:
        adj = src.bind("tf", tf.adjustment)
        body.append(f"    if c{c} == {i} and a[{f}] != 0:\n        w += {adj}(S[{f}][a[{f}]])")
    names = ", ".join(f"c{c}" for c in range(len(levels)))
    body.append(f"    return ({names},), w")
    init = [f"    {m} = None" for m in src.metrics.values()]
    code = "def pair(a, b, S):\n" + "\n".join(init + body) + "\n"
    exec(compile(code, "<flows.resolve.compare pair>", "exec"), src.env)
    fn: PairFunction = src.env["pair"]
    return fn


@dataclass(frozen=True, slots=True)
class LevelDetail:
    """One comparison's outcome for one pair, for explanations."""

    comparison: str
    level: str
    weight: float
    """log2(m/u) of the level (0 for the null level)."""
    tf_adjustment: float
    """The term-frequency adjustment added (0 unless the level has ``tf``)."""


class Scorer:
    """Compiled comparisons of one matching config."""

    def __init__(self, config: MatchingConfig) -> None:
        self.config = config
        idx = {n: i for i, n in enumerate(config.feature_names())}
        self.n_features = len(idx)
        self.prior_weight = weight_of(config.prior)
        self.comparisons: tuple[Comparison, ...] = config.comparisons
        tables = config.term_frequencies.tables
        self._levels: list[list[_Level]] = []
        for comp in config.comparisons:
            levels = []
            for lvl in comp.levels:
                preds = tuple(
                    _Pred(p.kind, tuple(idx[f] for f in p.features), p.min, p.max, p.relative)
                    for p in lvl.when
                )
                levels.append(
                    _Level(
                        null=None if lvl.missing is None else tuple(idx[f] for f in lvl.missing),
                        null_all=lvl.missing_mode == "all",
                        preds=preds,
                        weight=lvl.weight(),
                        tf_feature=None if lvl.tf is None else idx[lvl.tf],
                        tf=_tf(tables[lvl.tf], comp) if lvl.tf is not None and lvl.tf in tables else None,
                    )
                )
            self._levels.append(levels)
        self._weights = [np.array([lv.weight for lv in lvls], dtype=np.float64) for lvls in self._levels]
        self._tf_plan = [
            (c, i, lv.tf_feature, lv.tf)
            for c, lvls in enumerate(self._levels)
            for i, lv in enumerate(lvls)
            if lv.tf is not None and lv.tf_feature is not None
        ]
        self._pair = _pair_function(
            self._levels, [w.tolist() for w in self._weights], self.prior_weight, self._tf_plan
        )

    @property
    def n_comparisons(self) -> int:
        """How many comparisons a pair has."""
        return len(self._levels)

    def levels(self, store: FeatureStore, ra: IndexArray, rb: IndexArray) -> LevelArray:
        """The level index of every comparison for the pairs of rows ``(ra[i], rb[i])``: shape (n, C)."""
        return self.score(store, ra, rb)[0]

    def score_scalar(
        self, store: FeatureStore, ra: IndexArray, rb: IndexArray
    ) -> tuple[LevelArray, FloatArray]:
        """:meth:`score` pair by pair (a generated function per pair)."""
        n = len(ra)
        levels = np.empty((n, len(self._levels)), dtype=np.int8)
        weights = np.empty(n, dtype=np.float64)
        codes = store.codes
        strs = store.string_lists()
        rows: dict[int, list[int]] = {}
        pair = self._pair
        for j, (x, y) in enumerate(zip(ra.tolist(), rb.tolist(), strict=True)):
            a = rows.get(x)
            if a is None:
                a = rows[x] = codes[x].tolist()
            b = rows.get(y)
            if b is None:
                b = rows[y] = codes[y].tolist()
            levels[j], weights[j] = pair(a, b, strs)
        return levels, weights

    def levels_vectorised(self, store: FeatureStore, ra: IndexArray, rb: IndexArray) -> LevelArray:
        """:meth:`levels` column-wise."""
        n = len(ra)
        out = np.empty((n, len(self._levels)), dtype=np.int8)
        if n == 0:
            return out
        pairs = _Pairs(store, ra, rb)
        everyone = np.arange(n)
        for c, levels in enumerate(self._levels):
            col = out[:, c]
            col[:] = len(levels) - 1
            undone = everyone
            for i, lvl in enumerate(levels[:-1]):
                hit = lvl.test(pairs, undone)
                col[undone[hit]] = i
                undone = undone[~hit]
                if not len(undone):
                    break
        return out

    def weights(self, store: FeatureStore, levels: LevelArray, ra: IndexArray) -> FloatArray:
        """Match weight of every pair (prior included), term-frequency adjusted (column-wise)."""
        n = levels.shape[0]
        total = np.full(n, self.prior_weight, dtype=np.float64)
        for c, w in enumerate(self._weights):
            total += w[levels[:, c]]
        for c, i, f, tf in self._tf_plan:
            hit = np.flatnonzero(levels[:, c] == i)
            if len(hit):
                adj = store.derived(("tf", c, i), f, tf.adjustment)
                total[hit] += adj[store.codes[ra[hit], f]]
        return total

    def score(self, store: FeatureStore, ra: IndexArray, rb: IndexArray) -> tuple[LevelArray, FloatArray]:
        """Levels and match weights of the pairs of rows ``(ra[i], rb[i])``.

        Up to ``SCALAR_MAX_PAIRS`` pairs are scored one by one (numpy's per-call cost would
        dominate), more column-wise; both give identical results (a unit test holds them to it).
        """
        if len(ra) <= SCALAR_MAX_PAIRS:
            return self.score_scalar(store, ra, rb)
        return self.score_vectorised(store, ra, rb)

    def score_list(
        self, store: FeatureStore, ra: list[int], rb: list[int]
    ) -> list[tuple[tuple[int, ...], float]]:
        """:meth:`score` as Python values, ``(levels, weight)`` per pair: what the resolver stores."""
        if len(ra) > SCALAR_MAX_PAIRS:
            lv, w = self.score_vectorised(store, np.asarray(ra, dtype=np.intp), np.asarray(rb, dtype=np.intp))
            return list(zip(map(tuple, lv.tolist()), w.tolist(), strict=True))
        codes = store.codes
        strs = store.string_lists()
        rows: dict[int, list[int]] = {}
        pair = self._pair
        out = []
        for x, y in zip(ra, rb, strict=True):
            a = rows.get(x)
            if a is None:
                a = rows[x] = codes[x].tolist()
            b = rows.get(y)
            if b is None:
                b = rows[y] = codes[y].tolist()
            out.append(pair(a, b, strs))
        return out

    def score_vectorised(
        self, store: FeatureStore, ra: IndexArray, rb: IndexArray
    ) -> tuple[LevelArray, FloatArray]:
        """:meth:`score` column-wise."""
        lv = self.levels_vectorised(store, ra, rb)
        return lv, self.weights(store, lv, ra)

    def score_features(
        self, left: Sequence[Features], right: Sequence[Features]
    ) -> tuple[LevelArray, FloatArray]:
        """Levels and match weights of pairs given as feature tuples (tools and tests)."""
        store = FeatureStore(self.n_features, capacity=2 * len(left) + 2)
        ra = np.array([store.put(f"l{i}", a) for i, a in enumerate(left)], dtype=np.intp)
        rb = np.array([store.put(f"r{i}", b) for i, b in enumerate(right)], dtype=np.intp)
        return self.score(store, ra, rb)

    def explain(self, a: Features, b: Features) -> tuple[float, list[LevelDetail]]:
        """Match weight of one pair and its per-comparison breakdown."""
        lv, w = self.score_features([a], [b])
        details = []
        for c, comp in enumerate(self.comparisons):
            i = int(lv[0, c])
            lvl = self._levels[c][i]
            adj = 0.0
            if lvl.tf is not None and lvl.tf_feature is not None:
                adj = lvl.tf.adjustment(a[lvl.tf_feature]) if a[lvl.tf_feature] is not None else 0.0
            details.append(LevelDetail(comp.name, comp.levels[i].label, lvl.weight, adj))
        return float(w[0]), details

    def tf_adjustments(self, features: Features, levels: bytes | Sequence[int]) -> bytes:
        """The term-frequency adjustments a pair earned, packed (``float64`` per level with ``tf``,
        in plan order; ``b""`` when all are zero). ``features`` are the pair's first record's, as
        :meth:`explain` takes them: with :meth:`link_comparisons` this rebuilds the breakdown of a
        stored edge without its records."""
        plan = self._tf_plan
        if not plan:
            return b""
        vals = [
            tf.adjustment(features[f]) if levels[c] == i and features[f] is not None else 0.0
            for c, i, f, tf in plan
        ]
        if not any(vals):
            return b""
        return struct.pack(f"<{len(vals)}d", *vals)

    def link_comparisons(
        self, levels: bytes | Sequence[int], tf: bytes = b""
    ) -> tuple[tuple[str, str, float], ...]:
        """``(comparison, level label, weight contribution)`` of a scored pair, as
        :class:`~core.golden.LinkRecord` holds them (the level's log2 m/u plus its term-frequency
        adjustment from :meth:`tf_adjustments`): equal to :meth:`explain`'s details of the pair."""
        extra = [0.0] * len(self._levels)
        if tf:
            for (c, _, _, _), v in zip(
                self._tf_plan, struct.unpack(f"<{len(self._tf_plan)}d", tf), strict=True
            ):
                extra[c] = v
        return tuple(
            (comp.name, comp.levels[int(i)].label, self._levels[c][int(i)].weight + extra[c])
            for c, (comp, i) in enumerate(zip(self.comparisons, levels, strict=False))
        )

    def level_labels(self, levels: bytes | Sequence[int]) -> dict[str, str]:
        """Comparison name -> level label, for a stored level vector."""
        return {
            comp.name: comp.levels[int(i)].label for comp, i in zip(self.comparisons, levels, strict=True)
        }
