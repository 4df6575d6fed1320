"""The demo job behind ``goldstream demo run``: the whole path on the local stack, visibly.

Stack up -> demo systems seeded -> connectors applied -> bronze dataflow running -> load applied ->
a live summary of the bronze Delta tables. Each step is idempotent, so running it again resumes.
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
