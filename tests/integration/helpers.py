"""Helpers for integration tests: dataflow subprocesses, waiting, reading Delta tables."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import polars as pl
import yaml

from core.settings import Settings
from flows.engine.runner import free_ports

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
# "  12: name" and "             at path:line" lines of a Rust panic's backtrace
_BACKTRACE_FRAME = re.compile(r"^\s+(\d+: |at )")


def pg_lsn(text: str) -> int:
    """PostgreSQL ``X/Y`` LSN text as the integer Debezium reports."""
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def wait_for(what: str, fn: Callable[[], T | None], *, timeout: float = 90.0, every: float = 0.5) -> T:
    """Poll ``fn`` until it returns something other than None/False; fail with ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < end:
        last = fn()
        if last is not None and last is not False:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    """A free loopback port outside the ephemeral range (see ``flows.engine.runner.free_ports``)."""
    return free_ports(1)[0]


def isolated_config(tmp: Path, settings: Settings, **dataflow: object) -> Path:
    """A goldstream.yaml like the repo's, writing Delta tables and recovery state under ``tmp``."""
    doc = yaml.safe_load((REPO / "config" / "goldstream.yaml").read_text())
    doc["delta_root"] = str(tmp / "delta")
    doc["recovery_root"] = str(tmp / "recovery")
    doc["dataflow"] = {**doc.get("dataflow", {}), "metrics_port": free_port(), **dataflow}
    # GOLDSTREAM_TEST_RESOLVE_MODE=staged runs the same tests against the staged resolution.
    mode = os.environ.get("GOLDSTREAM_TEST_RESOLVE_MODE")
    if mode and "resolve_mode" not in dataflow:
        doc["dataflow"]["resolve_mode"] = mode
    path = tmp / "goldstream.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class FlowProcess:
    """``python -m flows.worker <args>`` (or another module) as a child in its own process group."""

    def __init__(self, config: Path, *args: str, log: Path, module: str = "flows.worker") -> None:
        self.config, self.args, self.log, self.module = config, args, log, module
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FlowProcess:
        env = {
            **os.environ,
            "GOLDSTREAM_CONFIG": str(self.config),
            "RUST_BACKTRACE": os.environ.get("RUST_BACKTRACE", "0"),
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no final snapshot."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        return self.proc.returncode

    def __enter__(self) -> FlowProcess:
        return self.start()

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.alive():
            self.stop()
        if exc_type is not None:
            # the test failed while this flow ran: its log is what explains it (pytest shows
            # captured output with the failure, also in CI where the log files are gone)
            print(f"--- last lines of {self.log.name} ({' '.join(self.args)}) ---\n{self.tail(60)}")

    def tail(self, n: int = 30) -> str:
        """The log's last ``n`` lines, without the frames of a Rust backtrace."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join([line for line in lines if not _BACKTRACE_FRAME.match(line)][-n:])


def with_connectors(config: Path, connectors_dir: Path) -> Path:
    """Point an isolated config at another connectors folder (``<dir>/connectors``)."""
    doc = yaml.safe_load(config.read_text())
    doc["config_dir"] = str(connectors_dir)
    config.write_text(yaml.safe_dump(doc))
    return config


def read_delta(path: Path) -> pl.DataFrame | None:
    """The table's rows, or None while it does not exist yet."""
    if not (path / "_delta_log").exists():
        return None
    return pl.read_delta(str(path))


def metric(port: int, name: str, **labels: str) -> float:
    """A counter's value from a process's /metrics endpoint (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0
