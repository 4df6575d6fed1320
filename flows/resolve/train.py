"""Unsupervised training: term frequencies, u by random sampling, m (and the prior) by EM.

``train(records, config)`` estimates the Fellegi-Sunter parameters of ``config`` from a polars
DataFrame of records (silver, or a benchmark set) and returns a new config; ``write_matching_config``
(in :mod:`flows.resolve.config`) writes it back as YAML and ``format_weights`` prints it.

The method follows Splink's, which is the published reference for it:

* term frequencies: value counts per feature named by a level's ``tf``;
* u: the level shares among uniformly random record pairs (seeded), a pseudo-count of one keeping
  rare levels above zero;
* m: expectation-maximisation over pairs. With ``training.em_sessions`` each session uses the
  pairs agreeing exactly on some features and leaves out (holds fixed) the comparisons reading the
  same fields, whose outcomes the session's selection would bias; the m of a comparison is the mean
  over the sessions that estimated it. Without sessions, one run over the resolver's candidate
  pairs estimates every comparison;
* the prior (chance two random records match): EM of the match share alone over the candidate
  pairs with m and u fixed, scaled by candidate pairs / all pairs.

With ``training.estimate_u: em`` one EM run over the candidate pairs estimates m, u and the prior
together (all conditional on a pair being a candidate, which is the population the resolver scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from flows.resolve.blocking import BlockKeyer, candidate_pairs
from flows.resolve.compare import LevelArray, Scorer
from flows.resolve.config import Comparison, Level, MatchingConfig, TermFrequencies, TermFrequencyTable
from flows.resolve.features import FeatureExtractor, Features, FeatureStore

FloatArray = npt.NDArray[np.float64]
_CHUNK = 200_000
_EPS = 1e-6


def extract(records: pl.DataFrame, config: MatchingConfig) -> list[Features]:
    """Feature tuples of every row of ``records``."""
    ext = FeatureExtractor(config)
    cols = [c for c in ext.fields if c in records.columns]
    return [ext(row) for row in records.select(cols).iter_rows(named=True)]


def term_frequency_tables(
    features: Sequence[Features], config: MatchingConfig
) -> dict[str, TermFrequencyTable]:
    """Value counts of every feature a level adjusts by term frequency (values seen twice or more)."""
    idx = {n: i for i, n in enumerate(config.feature_names())}
    wanted = sorted({lvl.tf for c in config.comparisons for lvl in c.levels if lvl.tf is not None})
    out = {}
    for name in wanted:
        f = idx[name]
        counts: dict[str, int] = {}
        total = 0
        for row in features:
            v = row[f]
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
                total += 1
        kept = {k: c for k, c in sorted(counts.items()) if c >= 2}
        out[name] = TermFrequencyTable(total=total, counts=kept)
    return out


def feature_store(features: Sequence[Features], n_features: int) -> FeatureStore:
    """A store holding record ``i`` in row ``i``."""
    store = FeatureStore(n_features, capacity=len(features) + 1)
    for i, f in enumerate(features):
        store.put(str(i), f)
    return store


def _levels_for(scorer: Scorer, store: FeatureStore, pairs: npt.NDArray[np.int64]) -> LevelArray:
    parts = []
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start : start + _CHUNK]
        parts.append(scorer.levels(store, chunk[:, 0].astype(np.intp), chunk[:, 1].astype(np.intp)))
    if not parts:
        return np.empty((0, scorer.n_comparisons), dtype=np.int8)
    return np.concatenate(parts)


def _null_levels(comp: Comparison) -> list[bool]:
    return [lvl.is_null for lvl in comp.levels]


def _shares(
    levels: LevelArray, comps: Sequence[Comparison], weights: FloatArray | None = None
) -> list[FloatArray]:
    """Per comparison, the share of each non-null level (pseudo-count 1; null levels NaN)."""
    out = []
    for c, comp in enumerate(comps):
        n_lv = len(comp.levels)
        counts = np.bincount(levels[:, c].astype(np.int64), weights=weights, minlength=n_lv).astype(
            np.float64
        )
        null = np.array(_null_levels(comp))
        counts[~null] += 1.0 if weights is None else _EPS
        counts[null] = 0.0
        share = counts / max(counts.sum(), _EPS)
        share[null] = np.nan
        out.append(share)
    return out


def random_pairs(n: int, k: int, seed: int) -> npt.NDArray[np.int64]:
    """``k`` uniformly random pairs of distinct records among ``n`` (seeded)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=k)
    j = rng.integers(0, n - 1, size=k)
    j = j + (j >= i)
    return np.stack([i, j], axis=1).astype(np.int64)


@dataclass
class _Params:
    m: list[FloatArray]
    u: list[FloatArray]
    lam: float


def _log(a: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.clip(a, _EPS, 1.0))
    out[np.isnan(a)] = 0.0
    return out


def _em(
    levels: LevelArray,
    comps: Sequence[Comparison],
    params: _Params,
    *,
    active: Sequence[bool],
    update_m: Sequence[bool],
    update_u: bool,
    update_lam: bool,
    iterations: int,
    tolerance: float,
) -> _Params:
    """Expectation-maximisation over the distinct comparison patterns of ``levels``."""
    if len(levels) == 0:
        return params
    patterns, counts = np.unique(levels, axis=0, return_counts=True)
    counts = counts.astype(np.float64)
    m = [x.copy() for x in params.m]
    u = [x.copy() for x in params.u]
    lam = params.lam
    for _ in range(iterations):
        s = np.full(len(patterns), math.log(lam) - math.log1p(-lam))
        for c in range(len(comps)):
            if active[c]:
                s += _log(m[c])[patterns[:, c]] - _log(u[c])[patterns[:, c]]
        p = 1.0 / (1.0 + np.exp(-np.clip(s, -700, 700)))
        wm = counts * p
        change = 0.0
        if update_lam:
            new_lam = float(np.clip(wm.sum() / counts.sum(), _EPS, 1 - _EPS))
            change = max(change, abs(new_lam - lam))
            lam = new_lam
        new_m = _shares(patterns, comps, wm)
        new_u = _shares(patterns, comps, counts - wm) if update_u else u
        for c in range(len(comps)):
            if active[c] and update_m[c]:
                change = max(change, float(np.nanmax(np.abs(new_m[c] - m[c]))))
                m[c] = new_m[c]
            if active[c] and update_u:
                change = max(change, float(np.nanmax(np.abs(new_u[c] - u[c]))))
                u[c] = new_u[c]
        if change < tolerance:
            break
    return _Params(m, u, lam)


def _initial_m(comp: Comparison) -> FloatArray:
    """Configured m, or a default that falls with each level (agreement levels first)."""
    vals = []
    n_real = sum(1 for lvl in comp.levels if not lvl.is_null)
    rank = 0
    for lvl in comp.levels:
        if lvl.is_null:
            vals.append(np.nan)
            continue
        vals.append(lvl.m if lvl.m is not None else 0.9 * (0.35**rank) if rank < n_real - 1 else 0.05)
        rank += 1
    arr = np.array(vals, dtype=np.float64)
    arr[~np.isnan(arr)] /= np.nansum(arr)
    return arr


def _fields_of(config: MatchingConfig, features: Sequence[str]) -> set[str]:
    return {s for f in features for s in config.features[f].sources}


def _comparison_fields(config: MatchingConfig, comp: Comparison) -> set[str]:
    feats: set[str] = set()
    for lvl in comp.levels:
        feats.update(lvl.missing or ())
        for p in lvl.when:
            feats.update(p.features)
    return _fields_of(config, sorted(feats))


def _session_pairs(features: Sequence[Features], idx: Sequence[int], max_block: int) -> npt.NDArray[np.int64]:
    keys: list[tuple[str, ...]] = []
    for row in features:
        vals = [row[i] for i in idx]
        keys.append(("|".join(vals),) if all(v is not None for v in vals) else ())  # type: ignore[arg-type]
    return candidate_pairs(keys, max_block)


def _sample(pairs: npt.NDArray[np.int64], k: int, seed: int) -> npt.NDArray[np.int64]:
    if len(pairs) <= k:
        return pairs
    rng = np.random.default_rng(seed)
    return pairs[np.sort(rng.choice(len(pairs), size=k, replace=False))]


@dataclass(frozen=True)
class TrainingReport:
    """What training saw, for the CLI to print."""

    records: int
    u_pairs: int
    candidate_pairs: int
    sessions: tuple[tuple[tuple[str, ...], int, tuple[str, ...]], ...]
    """(session features, pairs, comparisons estimated) per EM session."""
    match_share_of_candidates: float


def train_with_report(records: pl.DataFrame, config: MatchingConfig) -> tuple[MatchingConfig, TrainingReport]:
    """:func:`train`, also returning what was estimated from how many pairs."""
    t = config.training
    features = extract(records, config)
    n = len(features)
    if n < 2:
        raise ValueError("training needs at least two records")
    tables = term_frequency_tables(features, config)
    cfg = config.model_copy(update={"term_frequencies": TermFrequencies(tables=tables)})
    scorer = Scorer(cfg)
    store = feature_store(features, len(cfg.features))
    comps = cfg.comparisons
    u_pairs = random_pairs(n, t.u_max_pairs, t.seed)
    u = _shares(_levels_for(scorer, store, u_pairs), comps)
    m = [_initial_m(c) for c in comps]
    keyer = BlockKeyer(cfg)
    cand = candidate_pairs([keyer(f) for f in features], cfg.blocking.max_block_size)
    cand_sample = _sample(cand, t.em_max_pairs, t.seed + 1)
    cand_levels = _levels_for(scorer, store, cand_sample)
    fixed = set(t.fix_m)
    update_m = [c.name not in fixed for c in comps]
    lam0 = 0.1
    sessions_done: list[tuple[tuple[str, ...], int, tuple[str, ...]]] = []
    if t.estimate_u == "em":
        params = _em(
            cand_levels,
            comps,
            _Params(m, u, lam0),
            active=[True] * len(comps),
            update_m=update_m,
            update_u=True,
            update_lam=True,
            iterations=t.em_max_iterations,
            tolerance=t.em_tolerance,
        )
        m, u, lam_c = params.m, params.u, params.lam
        prior = lam_c
        sessions_done.append(((), len(cand_sample), tuple(c.name for c in comps)))
    else:
        sessions = t.em_sessions or ((),)
        sums = [np.zeros_like(x) for x in m]
        seen = [0] * len(comps)
        fidx = {nm: i for i, nm in enumerate(cfg.feature_names())}
        for s_no, session in enumerate(sessions):
            if session:
                pairs = _sample(
                    _session_pairs(features, [fidx[f] for f in session], t.em_max_block_size),
                    t.em_max_pairs,
                    t.seed + 2 + s_no,
                )
                lv = _levels_for(scorer, store, pairs)
                blocked = _fields_of(cfg, session)
                active = [not (_comparison_fields(cfg, c) & blocked) for c in comps]
            else:
                pairs, lv, active = cand_sample, cand_levels, [True] * len(comps)
            params = _em(
                lv,
                comps,
                _Params(m, u, lam0),
                active=active,
                update_m=update_m,
                update_u=False,
                update_lam=True,
                iterations=t.em_max_iterations,
                tolerance=t.em_tolerance,
            )
            for c in range(len(comps)):
                if active[c] and update_m[c]:
                    sums[c] = sums[c] + np.nan_to_num(params.m[c])
                    seen[c] += 1
            sessions_done.append(
                (tuple(session), len(pairs), tuple(c.name for c, a in zip(comps, active, strict=True) if a))
            )
        for c in range(len(comps)):
            if seen[c]:
                est = sums[c] / seen[c]
                est[np.isnan(m[c])] = np.nan
                m[c] = est
        lam_c = _em(
            cand_levels,
            comps,
            _Params(m, u, lam0),
            active=[True] * len(comps),
            update_m=[False] * len(comps),
            update_u=False,
            update_lam=True,
            iterations=t.em_max_iterations,
            tolerance=t.em_tolerance,
        ).lam
        all_pairs = n * (n - 1) / 2
        prior = lam_c * len(cand) / all_pairs
    prior = float(min(max(prior, 1e-9), 0.5))
    new_comps = []
    for c, comp in enumerate(comps):
        levels = []
        for i, lvl in enumerate(comp.levels):
            if lvl.is_null:
                levels.append(lvl)
                continue
            levels.append(
                Level.model_validate(
                    {
                        **lvl.model_dump(exclude_none=True),
                        "m": _round(float(m[c][i])),
                        "u": _round(float(u[c][i])),
                    }
                )
            )
        new_comps.append(comp.model_copy(update={"levels": tuple(levels)}))
    out = cfg.model_copy(update={"comparisons": tuple(new_comps), "prior": _round(prior)})
    out = MatchingConfig.model_validate(out.model_dump())
    report = TrainingReport(n, len(u_pairs), len(cand), tuple(sessions_done), lam_c)
    return out, report


def _round(x: float) -> float:
    """Six significant digits, clamped inside (0, 1): stable YAML without false precision."""
    return min(max(float(f"{x:.6g}"), 1e-12), 0.999999)


def train(records: pl.DataFrame, config: MatchingConfig) -> MatchingConfig:
    """Estimate term frequencies, m, u and the prior of ``config`` from ``records`` (unsupervised)."""
    return train_with_report(records, config)[0]


def format_weights(config: MatchingConfig) -> str:
    """The trained weights as a text table: comparison, level, m, u, log2(m/u)."""
    rows = [("comparison", "level", "m", "u", "weight", "tf")]
    for comp in config.comparisons:
        for lvl in comp.levels:
            if lvl.is_null:
                rows.append((comp.name, lvl.label, "-", "-", "0", ""))
                continue
            m = "-" if lvl.m is None else f"{lvl.m:.4g}"
            u = "-" if lvl.u is None else f"{lvl.u:.4g}"
            rows.append((comp.name, lvl.label, m, u, f"{lvl.weight():+.2f}", lvl.tf or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    prior_w = math.log2(config.prior / (1 - config.prior))
    lines.append(f"prior (two random records match): {config.prior:.4g} = {prior_w:+.2f} bits")
    return "\n".join(lines)
