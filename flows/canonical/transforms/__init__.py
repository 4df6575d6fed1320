"""The transform library: every step name a mapping file may use, by name."""

from __future__ import annotations

from flows.canonical.transforms import codes, combine, numbers, text, time
from flows.canonical.transforms.base import KindError, RowCtx, Transform, VectorCtx

REGISTRY: dict[str, Transform] = {
    t.name: t for module in (text, combine, numbers, codes, time) for t in module.TRANSFORMS
}

__all__ = ["REGISTRY", "KindError", "RowCtx", "Transform", "VectorCtx"]
