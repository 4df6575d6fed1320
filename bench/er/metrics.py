"""Accuracy of a clustering against labels: pairwise and B-cubed precision / recall / F1."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def pairwise(truth: Mapping[str, str], predicted: Mapping[str, str]) -> dict[str, float]:
    """Precision, recall and F1 over record pairs placed in the same cluster."""
    clusters: dict[str, list[str]] = defaultdict(list)
    for rid, c in predicted.items():
        clusters[c].append(rid)
    tp = fp = 0
    for members in clusters.values():
        counts = Counter(truth[m] for m in members)
        same = sum(k * (k - 1) // 2 for k in counts.values())
        n = len(members)
        tp += same
        fp += n * (n - 1) // 2 - same
    sizes = Counter(truth[r] for r in predicted)
    true_pairs = sum(k * (k - 1) // 2 for k in sizes.values())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / true_pairs if true_pairs else 1.0
    return {
        "precision": p,
        "recall": r,
        "f1": _f1(p, r),
        "true_pairs": true_pairs,
        "predicted_pairs": tp + fp,
    }


def bcubed(truth: Mapping[str, str], predicted: Mapping[str, str]) -> dict[str, float]:
    """B-cubed precision, recall and F1 (per-record overlap of its cluster and its entity)."""
    inter: Counter[tuple[str, str]] = Counter((predicted[r], truth[r]) for r in predicted)
    csize = Counter(predicted.values())
    esize = Counter(truth[r] for r in predicted)
    n = len(predicted)
    p = sum(k * k / csize[c] for (c, _), k in inter.items()) / n
    r = sum(k * k / esize[e] for (_, e), k in inter.items()) / n
    return {"precision": p, "recall": r, "f1": _f1(p, r)}


def true_pairs(ids: Sequence[str], labels: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of records with the same label."""
    groups: dict[str, list[str]] = defaultdict(list)
    for i, lab in zip(ids, labels, strict=True):
        groups[lab].append(i)
    return [(a, b) for g in groups.values() for i, a in enumerate(g) for b in g[i + 1 :]]


def missed_pairs_by_group(
    truth: Mapping[str, str], predicted: Mapping[str, str], group: Callable[[str], str]
) -> dict[str, int]:
    """True pairs split across clusters, counted by the (sorted) groups of their two records (say,
    their source tables), most first."""
    entities: dict[str, list[str]] = defaultdict(list)
    for rid in predicted:
        entities[truth[rid]].append(rid)
    missed: Counter[str] = Counter()
    for members in entities.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if predicted[a] != predicted[b]:
                    missed[" <-> ".join(sorted((group(a), group(b))))] += 1
    return dict(missed.most_common())
