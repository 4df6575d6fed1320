"""Running a dataflow: recovery store, worker processes, metrics endpoint, supervision.

Bytewax scales with processes (one worker each is the sweet spot under the GIL). ``run_flow`` starts
``processes`` child processes that form one Bytewax cluster over loopback, supervises them, and
stops them all if one dies, so an operator never ends up with half a cluster. Rescaling is: stop,
then start again with another count; the recovery store (created with a fixed number of partitions)
carries offsets and state across.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from bytewax._bytewax import cli_main
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from prometheus_client import start_http_server

from core.errors import ConfigError, TerminalError
from core.runtime import tune_gc
from flows.engine.recovery import discard_abandoned_snapshots

log = logging.getLogger(__name__)


def ensure_recovery_dir(path: Path, partitions: int) -> Path:
    """Create and initialise the SQLite recovery partitions once; reuse them afterwards.

    Creation is atomic (initialised in a temporary folder, then renamed into place), because the
    processes of a cluster start at the same moment and one must never see a half-made store.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.parent / f".{path.name}.init-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        init_db_dir(staging, partitions)  # type: ignore[no-untyped-call]
        try:
            staging.rename(path)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process won the race: use its store
    existing = sorted(path.glob("part-*.sqlite3"))
    if len(existing) != partitions:
        log.warning(
            "recovery store %s has %d partitions (config says %d); keeping the existing ones",
            path,
            len(existing),
            partitions,
        )
    return path


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """``count`` currently free loopback TCP ports for the cluster's internal addresses.

    The ports come from outside the kernel's ephemeral range: between this check and the moment
    process 0 binds its port (seconds of imports later), an outgoing connection of any process (a
    Kafka or Postgres client) may be given an ephemeral port as its local port, and the cluster
    would then never form (the other processes retry "connecting to worker 0" forever).
    """
    low, high = _ephemeral_range()
    candidates = [p for p in range(20000, 65536) if not low <= p <= high]
    if not candidates:  # an unusual kernel setting leaves no such port: let the kernel choose
        log.warning("no loopback port outside the ephemeral range %d-%d; cluster start may race", low, high)
        candidates = [0]
    rng = random.Random()
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            port = rng.choice(candidates)
            if port and port in ports:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def run_in_process(
    flow: Dataflow,
    *,
    recovery_dir: Path | None,
    epoch_s: float,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run ``flow`` in this process (as one member of a cluster when ``addresses`` is given)."""
    if metrics_port:
        start_http_server(metrics_port + (process_id or 0), addr="127.0.0.1")
    recovery = None
    if recovery_dir is not None:
        discard_abandoned_snapshots(recovery_dir)
        recovery = RecoveryConfig(str(recovery_dir))  # type: ignore[no-untyped-call]
    tune_gc()
    cli_main(  # type: ignore[no-untyped-call]
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=epoch_s),
        recovery_config=recovery,
    )


def supervise(argv_for: list[list[str]], *, env: dict[str, str] | None = None) -> int:
    """Start one child per argv and wait; if any exits, stop the others. Returns the worst exit code.

    SIGINT/SIGTERM to the supervisor are forwarded to every child.
    """
    children = [subprocess.Popen(argv, env=env, start_new_session=False) for argv in argv_for]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            codes = [c.poll() for c in children]
            if all(c is not None for c in codes):
                break
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed and not stopping:
                log.error(
                    "worker process %d exited with %s; stopping the others", failed[0], codes[failed[0]]
                )
                forward(signal.SIGTERM, None)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and any(c.poll() is None for c in children):
                    time.sleep(0.2)
                for c in children:
                    if c.poll() is None:
                        c.kill()
            time.sleep(0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    final = [c.wait() for c in children]
    bad = [c for c in final if c != 0]
    return bad[0] if bad else 0


def run_cluster(
    flow_name: str,
    *,
    processes: int,
    workers: int,
    extra_args: list[str],
) -> int:
    """Run ``flow_name`` as ``processes`` child processes of ``workers`` workers each."""
    if processes < 1 or workers < 1:
        raise ConfigError("--processes and --workers must be at least 1")
    ports = free_ports(processes)
    addresses = ",".join(f"127.0.0.1:{p}" for p in ports)
    argvs = [
        [
            sys.executable,
            "-m",
            "flows.worker",
            flow_name,
            "--process-id",
            str(i),
            "--addresses",
            addresses,
            "--workers",
            str(workers),
            *extra_args,
        ]
        for i in range(processes)
    ]
    code = supervise(argvs, env=dict(os.environ))
    if code not in (0, -signal.SIGINT, -signal.SIGTERM, 130, 143):
        raise TerminalError(f"dataflow {flow_name} stopped with exit code {code}")
    return code
