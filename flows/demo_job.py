"""The demo job behind ``goldstream demo run``: the whole path on the local stack, visibly.

Stack up -> demo systems seeded -> connectors applied -> ingest dataflow running (bronze, silver,
entity resolution, gold) -> load applied -> a live summary of every layer's Delta tables. Each step
is idempotent, so running it again resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core.settings import Settings

BRONZE_COLUMNS = ["table", "rows", "r", "c", "u", "d", "t", "last_source_ts"]


def bronze_tables(settings: Settings) -> list[Path]:
    """Every bronze table under the Delta root."""
    return sorted(p.parent for p in (settings.delta_root / "bronze").glob("*/*/*/_delta_log"))


def bronze_summary(settings: Settings) -> pl.DataFrame:
    """Rows per op and the newest source commit time, per bronze table."""
    rows = []
    for path in bronze_tables(settings):
        df = pl.scan_delta(str(path)).select("op", "source_ts").collect()
        ops = dict(df.group_by("op").len().iter_rows())
        rows.append(
            {
                "table": str(path.relative_to(settings.delta_root / "bronze")).replace(os.sep, "."),
                "rows": df.height,
                **{op: int(ops.get(op, 0)) for op in ("r", "c", "u", "d", "t")},
                "last_source_ts": df["source_ts"].max(),
            }
        )
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in BRONZE_COLUMNS})
    return pl.DataFrame(rows)


def _rows(path: Path) -> pl.LazyFrame | None:
    return pl.scan_delta(str(path)) if (path / "_delta_log").is_dir() else None


def layers_summary(settings: Settings) -> pl.DataFrame:
    """One line per silver entity and gold table: what the layers above bronze hold right now."""
    rows: list[dict[str, object]] = []
    silver = settings.delta_root / "silver"
    for path in sorted(p.parent for p in silver.glob("*/_delta_log")):
        frame = _rows(path)
        if frame is None:
            continue
        df = frame.filter(pl.col("source_key") != "__truncate__").select("deleted", "source_system").collect()
        live = df.filter(~pl.col("deleted"))
        systems = ", ".join(sorted(live["source_system"].unique().to_list()))
        rows.append(
            {
                "layer": "silver",
                "table": path.name,
                "rows": live.height,
                "detail": f"{df.height - live.height} soft-deleted; from {systems or '-'}",
            }
        )
    gold = settings.delta_root / "gold"
    for path in sorted(p.parent for p in gold.glob("golden_*/_delta_log")):
        if path.name.endswith("_history"):
            continue
        frame = _rows(path)
        if frame is None:
            continue
        df = frame.select("golden_status", "members").collect()
        active = df.filter(pl.col("golden_status") == "active")
        multi = active.filter(pl.col("members").list.len() > 1).height
        rows.append(
            {
                "layer": "gold",
                "table": path.name,
                "rows": active.height,
                "detail": f"{multi} joined from several records; {df.height - active.height} retired",
            }
        )
    lineage = _rows(gold / "lineage")
    if lineage is not None:
        kinds = dict(lineage.group_by("kind").len().collect().iter_rows())
        rows.append(
            {
                "layer": "gold",
                "table": "lineage",
                "rows": sum(kinds.values()),
                "detail": f"{kinds.get('MERGED', 0)} merged, {kinds.get('SPLIT', 0)} split",
            }
        )
    sync_log = _rows(settings.delta_root / "sync_log")
    if sync_log is not None:
        counts = sync_log.group_by("target", "status").len().collect()
        for target in sorted(set(counts["target"].to_list())):
            mine = dict(counts.filter(pl.col("target") == target).select("status", "len").iter_rows())
            rows.append(
                {
                    "layer": "sync",
                    "table": f"sync_log {target}",
                    "rows": int(sum(mine.values())),
                    "detail": ", ".join(f"{n} {s}" for s, n in sorted(mine.items())),
                }
            )
    return pl.DataFrame(
        rows, schema={"layer": pl.String, "table": pl.String, "rows": pl.Int64, "detail": pl.String}
    )


def example_golden_id(settings: Settings, entity: str = "customer") -> str | None:
    """A golden record joined from the most source records (for ``goldstream explain``)."""
    frame = _rows(settings.delta_root / "gold" / f"golden_{entity}")
    if frame is None:
        return None
    df = (
        frame.filter(pl.col("golden_status") == "active")
        .select("golden_id", pl.col("members").list.len().alias("n"))
        .sort(["n", "golden_id"], descending=[True, False])
        .head(1)
        .collect()
    )
    return str(df["golden_id"][0]) if df.height else None


@dataclass
class BackgroundFlow:
    """A dataflow started as a child process, logging to a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, settings: Settings, flow: str, *args: str) -> BackgroundFlow:
        """Start ``python -m flows.worker <flow>``; its output goes to ``<state>/logs/<flow>.log``."""
        log = settings.state_dir / "logs" / f"{flow}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flows.worker", flow, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_BACKTRACE": "0"},
            )
        return cls(proc, log)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """Ask it to stop (SIGINT), then kill it if it does not."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def tail(self, n: int = 20) -> str:
        """The last lines of its log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
