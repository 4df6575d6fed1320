"""Bringing the whole local stack up and down, in dependency order, and reporting on it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdc.demo.api import stack as demo_api
from cdc.stack import artifacts, connect, kafka, postgres, proc
from cdc.stack.credentials import ensure_password
from cdc.stack.paths import StackPaths, stack_paths
from core.errors import TerminalError
from core.settings import Settings, project_root


@dataclass(frozen=True)
class Timeouts:
    """Readiness budgets in seconds; measured on 2 cores: PostgreSQL <1 s, broker 3-6 s, Connect ~4 s."""

    postgres: float = 60.0
    broker: float = 120.0
    connect: float = 180.0
    demo_api: float = 30.0


@dataclass(frozen=True)
class ComponentStart:
    """What ``up`` did for one component."""

    component: str
    pid: int
    already_running: bool
    seconds: float  # start (or re-check) until ready


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``goldstream stack status``."""

    component: str
    up: bool
    pid: int | None
    address: str
    log: Path
    detail: str


def _ensure_component(
    name: str,
    paths_pidfile: Path,
    running: Callable[[], int | None],
    markers: tuple[str, ...],
    start: Callable[[], int],
    wait: Callable[[int], None],
    echo: proc.Echo,
) -> ComponentStart:
    started = time.monotonic()
    pid = running()
    if pid is not None:
        # Running already: still confirm readiness (it may be mid-start from a concurrent `up`).
        wait(pid)
        seconds = time.monotonic() - started
        echo(f"{name}: already running (pid {pid}), ready")
        return ComponentStart(name, pid, True, seconds)
    stale = proc.clear_stale_pidfile(paths_pidfile, markers)
    if stale:
        echo(f"{name}: removed stale pid file {paths_pidfile} (pid {stale} is gone)")
    pid = start()
    echo(f"{name}: started pid {pid}, waiting for readiness")
    wait(pid)
    seconds = time.monotonic() - started
    echo(f"{name}: ready in {seconds:.1f} s (pid {pid})")
    return ComponentStart(name, pid, False, seconds)


def _up_postgres(
    settings: Settings, paths: StackPaths, timeouts: Timeouts, echo: proc.Echo
) -> ComponentStart:
    started = time.monotonic()
    postgres.init_cluster(settings, paths, echo)
    changed = postgres.configure(settings, paths)
    pid = postgres.running_pid(paths)
    if pid is not None:
        if changed:
            postgres.reload(paths)
            echo(
                "postgres: configuration changed and reloaded; listen address, port or WAL settings "
                "only take effect after `goldstream stack down` + `up`"
            )
        postgres.wait_ready(settings, paths, pid, timeouts.postgres)
        echo(f"postgres: already running (pid {pid}), ready")
        return ComponentStart("postgres", pid, True, time.monotonic() - started)
    pid = postgres.start(settings, paths, timeouts.postgres)
    postgres.wait_ready(settings, paths, pid, timeouts.postgres)
    seconds = time.monotonic() - started
    echo(f"postgres: ready in {seconds:.1f} s (pid {pid}, {settings.postgres.host}:{settings.postgres.port})")
    return ComponentStart("postgres", pid, False, seconds)


def _warn_changed(name: str, changed: bool, running: int | None, echo: proc.Echo) -> None:
    if changed and running is not None:
        echo(f"{name}: configuration changed; it takes effect after `goldstream stack down` + `up`")


def up(
    settings: Settings, *, echo: proc.Echo = proc.log_echo, timeouts: Timeouts | None = None
) -> list[ComponentStart]:
    """Fetch if needed, then start PostgreSQL, the Kafka broker, Kafka Connect and the demo CRM/ERP APIs.

    Idempotent: running components are only re-checked; databases, role, grants and publications are
    re-ensured. Raises TerminalError naming the component and its log when something fails to start.
    """
    timeouts = timeouts or Timeouts()
    paths = stack_paths(settings)
    with proc.exclusive(_lockfile(paths)):
        return _up(settings, paths, timeouts, echo)


def _lockfile(paths: StackPaths) -> Path:
    return paths.state / ".stack.lock"


def _up(settings: Settings, paths: StackPaths, timeouts: Timeouts, echo: proc.Echo) -> list[ComponentStart]:
    artifacts.fetch(paths, echo)
    password, generated = ensure_password(settings)
    if generated:
        echo(f"secrets: generated {settings.postgres.password_env}, stored in {paths.secrets} (mode 0600)")
    api_secrets = demo_api.ensure_secrets(settings)
    if api_secrets:
        echo(f"secrets: generated {', '.join(api_secrets)}, stored in {paths.secrets} (mode 0600)")

    results = [_up_postgres(settings, paths, timeouts, echo)]
    postgres.bootstrap(settings, paths, password, echo)

    _warn_changed("kafka", kafka.write_properties(settings, paths), kafka.running_pid(paths), echo)

    def start_broker() -> int:
        kafka.format_storage(paths, echo)
        return kafka.start(settings, paths)

    results.append(
        _ensure_component(
            "kafka",
            paths.broker_pidfile,
            lambda: kafka.running_pid(paths),
            kafka.markers(paths),
            start_broker,
            lambda pid: kafka.wait_ready(settings, paths, pid, timeouts.broker),
            echo,
        )
    )

    _warn_changed("connect", connect.write_properties(settings, paths), connect.running_pid(paths), echo)
    results.append(
        _ensure_component(
            "connect",
            paths.connect_pidfile,
            lambda: connect.running_pid(paths),
            connect.markers(paths),
            lambda: connect.start(settings, paths),
            lambda pid: connect.wait_ready(settings, paths, pid, timeouts.connect),
            echo,
        )
    )
    for system in demo_api.SYSTEMS:
        results.append(_up_demo_api(settings, paths, system, timeouts, echo))
    summary = ", ".join(
        f"{r.component} {'running' if r.already_running else 'started'} {r.seconds:.1f} s" for r in results
    )
    echo(f"stack: up ({summary})")
    return results


def _up_demo_api(
    settings: Settings, paths: StackPaths, system: str, timeouts: Timeouts, echo: proc.Echo
) -> ComponentStart:
    # Needs only PostgreSQL; adds its columns and trigger to the system's tables on start.
    return _ensure_component(
        demo_api.component(system),
        paths.demo_api_pidfile(system),
        lambda: demo_api.running_pid(settings, paths, system),
        demo_api.markers(settings, system),
        lambda: demo_api.start(settings, paths, system),
        lambda pid: demo_api.wait_ready(settings, paths, system, pid, timeouts.demo_api),
        echo,
    )


def _purge(paths: StackPaths, echo: proc.Echo) -> None:
    state = paths.state
    # Refuse anything that is obviously not a dedicated state folder.
    forbidden = {Path("/"), Path.home().resolve(), project_root().resolve()}
    if state in forbidden or len(state.parts) < 3:
        raise TerminalError(f"stack down --purge: refusing to delete the contents of {state}")
    if not state.exists():
        return
    for child in state.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    echo(f"stack: purged {state}")


def down(settings: Settings, *, purge: bool = False, echo: proc.Echo = proc.log_echo) -> None:
    """Stop the demo APIs, Connect, the broker, then PostgreSQL (only pids from our pid files). Idempotent.

    ``purge`` then deletes everything in the state folder (data, logs, jars, generated secrets).
    """
    paths = stack_paths(settings)
    with proc.exclusive(_lockfile(paths)):
        _down(settings, paths, echo)
    if purge:
        # After releasing the lock: purging deletes the lock file too.
        _purge(paths, echo)
    echo("stack: down")


def _down(settings: Settings, paths: StackPaths, echo: proc.Echo) -> None:
    for system in demo_api.SYSTEMS:
        demo_api.stop(settings, paths, system, echo)
    connect.stop(paths, echo)
    kafka.stop(paths, echo)
    postgres.stop(paths, echo)
    apis = [(demo_api.component(s), demo_api.running_pid(settings, paths, s)) for s in demo_api.SYSTEMS]
    still = [
        name
        for name, pid in (
            *apis,
            ("connect", connect.running_pid(paths)),
            ("kafka", kafka.running_pid(paths)),
            ("postgres", postgres.running_pid(paths)),
        )
        if pid is not None
    ]
    if still:
        raise TerminalError(f"stack down: still running: {', '.join(still)}")


def status(settings: Settings) -> list[ComponentStatus]:
    """The state of each component: process alive (from its pid file) and its port answering."""
    paths = stack_paths(settings)
    rows: list[ComponentStatus] = []

    pg = settings.postgres
    pid = postgres.running_pid(paths)
    up_pg = pid is not None and postgres.ready(settings)
    rows.append(
        ComponentStatus(
            "postgres",
            up_pg,
            pid,
            f"{pg.host}:{pg.port}",
            paths.pg_log,
            f"databases: {', '.join(pg.databases)}" if up_pg else _why_down(pid),
        )
    )

    host, port = kafka.bootstrap_address(settings)
    pid = kafka.running_pid(paths)
    up_kafka = pid is not None and proc.port_open(host, port) and kafka.broker_ready(settings)
    rows.append(
        ComponentStatus(
            "kafka",
            up_kafka,
            pid,
            f"{host}:{port}",
            paths.broker_log,
            f"KRaft, controller :{settings.kafka.controller_port}" if up_kafka else _why_down(pid),
        )
    )

    host, port = connect.rest_address(settings)
    pid = connect.running_pid(paths)
    up_connect = pid is not None and proc.port_open(host, port) and connect.worker_ready(settings)
    rows.append(
        ComponentStatus(
            "connect",
            up_connect,
            pid,
            f"{host}:{port}",
            paths.connect_log,
            "Debezium PostgreSQL plugin loaded" if up_connect else _why_down(pid),
        )
    )
    for system in demo_api.SYSTEMS:
        api = demo_api.api_settings(settings, system)
        pid = demo_api.running_pid(settings, paths, system)
        body = demo_api.health(settings, system) if pid is not None else None
        rows.append(
            ComponentStatus(
                demo_api.component(system),
                body is not None,
                pid,
                f"{api.host}:{api.port}",
                paths.demo_api_log(system),
                demo_api.describe(settings, system, body) if body is not None else _why_down(pid),
            )
        )
    return rows


def _why_down(pid: int | None) -> str:
    return "not running" if pid is None else "process alive but not answering (starting? see log)"
