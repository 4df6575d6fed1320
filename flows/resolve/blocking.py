"""Blocking: which record pairs are compared at all.

Each blocking key is a tuple of features; a record holding all of them has one key value for that
key, written ``"<key index>:<v1>|<v2>..."``. Two records are a *candidate pair* when they share a
key value held by at most ``max_block_size`` current records. That definition depends only on the
current set of records, never on arrival order, which is what keeps the resolver order-independent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from flows.resolve.config import MatchingConfig
from flows.resolve.features import Features


class BlockKeyer:
    """Computes the block key values of a feature tuple."""

    def __init__(self, config: MatchingConfig) -> None:
        idx = {n: i for i, n in enumerate(config.feature_names())}
        self.names: tuple[str, ...] = tuple(k.name for k in config.blocking.keys)
        self._keys: tuple[tuple[int, ...], ...] = tuple(
            tuple(idx[f] for f in k.features) for k in config.blocking.keys
        )
        self.max_block_size = config.blocking.max_block_size
        self._plan = tuple((f"{i}:", fs) for i, fs in enumerate(self._keys))

    def __call__(self, features: Features) -> tuple[str, ...]:
        """Key values of one record, in key order (a key with a missing feature gives none)."""
        out = []
        for prefix, fs in self._plan:
            if len(fs) == 1:
                v = features[fs[0]]
                if v is not None:
                    out.append(prefix + v)
                continue
            vals = [features[f] for f in fs]
            if None not in vals:
                out.append(prefix + "|".join(vals))  # type: ignore[arg-type]
        return tuple(out)

    def key_name(self, key: str) -> str:
        """The blocking key name of a key value."""
        return self.names[int(key.split(":", 1)[0])]


def candidate_pairs(keys: Sequence[Iterable[str]], max_block_size: int) -> npt.NDArray[np.int64]:
    """All candidate pairs ``(i, j)``, ``i < j``, of records given their key values (batch form).

    This is the same definition the streaming resolver applies incrementally: used by the trainer
    and to measure blocking recall.
    """
    blocks: dict[str, list[int]] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            blocks.setdefault(k, []).append(i)
    chunks = []
    for members in blocks.values():
        n = len(members)
        if n < 2 or n > max_block_size:
            continue
        m = np.asarray(members, dtype=np.int64)
        a, b = np.triu_indices(n, k=1)
        chunks.append(np.stack([m[a], m[b]], axis=1))
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks)
    pairs.sort(axis=1)
    n = max(len(keys), 1)
    codes = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([codes // n, codes % n], axis=1)
