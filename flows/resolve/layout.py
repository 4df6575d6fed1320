"""Which resolution an ingest recovery store was written by, so a flow never resumes the other's.

The single operator keeps its state under the step ``resolve.golden``; the staged resolution under
``resolve.records``, ``resolve.blocks``, ... with ``dataflow.resolve_key_groups`` keys per step. A
flow resumed with the other mode (or another key-group count) would find no resolution state while
its Kafka offsets resume where they were: the records read before would be missing from every golden
record. So the layout is written next to the store (``resolve-layout.json``) and checked at every
start; a store written before the marker existed is recognised by its snapshots' step ids.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Literal

from core.errors import ConfigError

MARKER = "resolve-layout.json"

Mode = Literal["single", "staged"]


def stored_layout(store: Path) -> tuple[str, int | None] | None:
    """(mode, key groups or None when unknown) of the resolution state in ``store``; None: none."""
    marker = store / MARKER
    if marker.is_file():
        data = json.loads(marker.read_text(encoding="utf-8"))
        return str(data["mode"]), data.get("key_groups")
    steps: set[str] = set()
    for part in sorted(store.glob("part-*.sqlite3")):
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute("SELECT DISTINCT step_id FROM snaps").fetchall()
            except sqlite3.DatabaseError:
                continue
        for (step_id,) in rows:
            parts = str(step_id).split(".")
            if len(parts) >= 2 and parts[-2] == "resolve":
                steps.add(parts[-1])
    if steps & {"records", "blocks", "pairs", "cluster", "values"}:
        return "staged", None
    if "golden" in steps:
        return "single", None
    return None


def check_layout(store: Path, mode: Mode, key_groups: int) -> None:
    """Refuse a store written by the other resolution (or another key-group count); record the
    layout of a store that has none yet."""
    groups = key_groups if mode == "staged" else None
    got = stored_layout(store)
    if got is not None:
        old_mode, old_groups = got
        if old_mode != mode or (groups is not None and old_groups is not None and old_groups != groups):
            was = old_mode if old_groups is None else f"{old_mode} with {old_groups} key groups"
            now = mode if groups is None else f"{mode} with {groups} key groups"
            raise ConfigError(
                f"{store}: the recovery store holds entity-resolution state written by the {was} "
                f"resolution, but dataflow.resolve_mode / resolve_key_groups ask for {now}; set them back, "
                "or start over with `goldstream run ingest --reset` (resolution state cannot be converted)"
            )
        if (store / MARKER).is_file():
            return
    tmp = store / f".{MARKER}.{os.getpid()}"
    tmp.write_text(json.dumps({"mode": mode, "key_groups": groups}) + "\n", encoding="utf-8")
    tmp.replace(store / MARKER)
