"""The Kafka Connect worker (distributed mode, one worker) with the Debezium PostgreSQL plugin."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import httpx

from cdc.stack import kafka, proc
from cdc.stack.paths import StackPaths
from core.errors import ConfigError
from core.settings import Settings

CONNECT_MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"
POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"


def rest_address(settings: Settings) -> tuple[str, int]:
    """Host and port of ``connect.url`` (where the worker's REST API listens)."""
    parts = urlsplit(settings.connect.url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ConfigError(f"connect.url: expected http://host:port, got {settings.connect.url!r}")
    return parts.hostname, parts.port


def render_worker_properties(settings: Settings, paths: StackPaths) -> str:
    """The worker properties from ``infra/kafka/connect-distributed.properties``."""
    host, port = rest_address(settings)
    return proc.render_template(
        paths.connect_template,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        rest_host=host,
        rest_port=port,
        plugin_path=paths.plugins,
    )


def markers(paths: StackPaths) -> tuple[str, ...]:
    """What the worker's command line contains (guards against signalling a recycled pid)."""
    return (CONNECT_MAIN, str(paths.connect_properties))


def running_pid(paths: StackPaths) -> int | None:
    """Pid of our running worker, or None."""
    return proc.running_pid(paths.connect_pidfile, markers(paths))


def write_properties(settings: Settings, paths: StackPaths) -> bool:
    """Render the worker properties into the state folder (every ``up``); True if the content changed."""
    paths.connect_root.mkdir(parents=True, exist_ok=True)
    return proc.write_if_changed(paths.connect_properties, render_worker_properties(settings, paths))


def start(settings: Settings, paths: StackPaths) -> int:
    """Start the worker detached; returns its pid. The caller checked it is not running yet.

    The worker inherits this process's environment on purpose: connector configs say
    ``${env:GOLDSTREAM_DB_PASSWORD}`` and the EnvVarConfigProvider resolves that inside the worker.
    """
    host, port = rest_address(settings)
    proc.ensure_port_free("kafka connect", host, port)
    env = dict(os.environ)
    if not env.get(settings.postgres.password_env):
        raise ConfigError(
            f"kafka connect: {settings.postgres.password_env} is not set; connectors could not log in"
        )
    argv = kafka.java_command(
        paths,
        ["-Xms256m", f"-Xmx{settings.connect.heap}"],
        CONNECT_MAIN,
        str(paths.connect_properties),
        logs_dir=paths.connect_root / "logs",
    )
    return proc.spawn(
        argv, log=paths.connect_log, pidfile=paths.connect_pidfile, env=env, cwd=paths.connect_root
    )


def _get_json(client: httpx.Client, path: str) -> object | None:
    try:
        response = client.get(path)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body: object = response.json()
    except ValueError:
        return None
    return body


def plugin_classes(settings: Settings, timeout: float = 5.0) -> list[str] | None:
    """Connector classes the worker has loaded (``GET /connector-plugins``); None if it does not answer."""
    with httpx.Client(base_url=settings.connect.url, timeout=timeout) as client:
        body = _get_json(client, "/connector-plugins")
    if not isinstance(body, list):
        return None
    return [str(item.get("class")) for item in body if isinstance(item, dict)]


def worker_ready(settings: Settings) -> bool:
    """True once ``GET /`` answers and the Debezium PostgreSQL connector is among the plugins."""
    with httpx.Client(base_url=settings.connect.url, timeout=3.0) as client:
        root = _get_json(client, "/")
        if not isinstance(root, dict) or "version" not in root:
            return False
        plugins = _get_json(client, "/connector-plugins")
    return isinstance(plugins, list) and any(
        isinstance(item, dict) and item.get("class") == POSTGRES_CONNECTOR_CLASS for item in plugins
    )


def wait_ready(settings: Settings, paths: StackPaths, pid: int, timeout: float) -> None:
    """Block until the REST API lists the Debezium plugin; TerminalError with the log tail otherwise."""
    host, port = rest_address(settings)
    started = time.monotonic()
    ok = proc.wait_until(
        lambda: proc.port_open(host, port) and worker_ready(settings),
        timeout=timeout,
        interval=0.5,
        alive=lambda: proc.pid_alive(pid),
    )
    if ok:
        return
    if not proc.pid_alive(pid):
        raise proc.failure("kafka connect", paths.connect_log, f"process {pid} exited during startup")
    plugins = plugin_classes(settings)
    problem = f"not ready after {time.monotonic() - started:.0f} s"
    if plugins is not None:
        problem += (
            f": REST API is up but {POSTGRES_CONNECTOR_CLASS} is not among {len(plugins)} plugins "
            f"(check {paths.plugins}; `goldstream stack fetch --force` restores it)"
        )
    else:
        problem += f": no answer from {settings.connect.url}/connector-plugins"
    raise proc.failure("kafka connect", paths.connect_log, problem)


def stop(paths: StackPaths, echo: proc.Echo, timeout: float = 30.0) -> None:
    """SIGTERM the worker (it leaves the group and stops tasks cleanly), SIGKILL after ``timeout``."""
    pid = running_pid(paths)
    if pid is None:
        stale = proc.clear_stale_pidfile(paths.connect_pidfile, markers(paths))
        if stale:
            echo(f"connect: removed stale pid file (pid {stale} is gone)")
        return
    started = time.monotonic()
    killed = proc.terminate(pid, timeout=timeout, markers=markers(paths))
    paths.connect_pidfile.unlink(missing_ok=True)
    how = "killed after SIGTERM timeout" if killed else "stopped"
    echo(f"connect: {how} (pid {pid}) in {time.monotonic() - started:.1f} s")
