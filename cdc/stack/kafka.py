"""The Kafka broker: single node, KRaft (combined broker + controller), from Maven Central jars."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cdc.stack import proc
from cdc.stack.paths import StackPaths
from core.errors import ConfigError, TerminalError
from core.settings import Settings

BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"

# The launch-script defaults of kafka-run-class.sh (Kafka 4.x), minus JMX.
JVM_PERFORMANCE_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
)


def java_bin() -> str:
    """The ``java`` executable (``$JAVA_HOME/bin/java`` if set, else the one on PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ConfigError("java not found: Kafka 4.x needs Java 17+ (run scripts/bootstrap.sh)")
    return found


def java_command(paths: StackPaths, heap: list[str], main: str, *args: str, logs_dir: Path) -> list[str]:
    """``java <heap> <perf opts> <log4j> -cp '<libs>/*' <main> <args>``, like kafka-run-class.sh."""
    return [
        java_bin(),
        *heap,
        *JVM_PERFORMANCE_OPTS,
        f"-Dlog4j2.configurationFile={paths.log4j}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        f"{paths.kafka_libs}/*",
        main,
        *args,
    ]


def bootstrap_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the first ``kafka.bootstrap_servers`` entry (where the local broker listens)."""
    first = settings.kafka.bootstrap_servers.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"kafka.bootstrap_servers: expected host:port, got {first!r}")
    return host.strip("[]"), int(port)


def render_server_properties(settings: Settings, paths: StackPaths) -> str:
    """The broker's server.properties from ``infra/kafka/server.properties``."""
    host, port = bootstrap_address(settings)
    return proc.render_template(
        paths.server_template,
        host=host,
        port=port,
        controller_port=settings.kafka.controller_port,
        data_dir=paths.kafka_data,
        partitions=settings.kafka.topic_partitions,
    )


def markers(paths: StackPaths) -> tuple[str, ...]:
    """What the broker's command line contains (guards against signalling a recycled pid)."""
    return (BROKER_MAIN, str(paths.broker_properties))


def running_pid(paths: StackPaths) -> int | None:
    """Pid of our running broker, or None."""
    return proc.running_pid(paths.broker_pidfile, markers(paths))


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A Kafka cluster id: 16 random bytes as unpadded URL-safe base64 (like ``StorageTool random-uuid``).

    Never one starting with ``-`` (1 in 64 would): the storage tool would read it as an option and
    refuse to format (Kafka's own ``Uuid.randomUuid`` skips those for the same reason).
    """
    while True:
        cid = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def write_properties(settings: Settings, paths: StackPaths) -> bool:
    """Render server.properties into the state folder (every ``up``); True if the content changed."""
    paths.kafka_root.mkdir(parents=True, exist_ok=True)
    return proc.write_if_changed(paths.broker_properties, render_server_properties(settings, paths))


def format_storage(paths: StackPaths, echo: proc.Echo) -> bool:
    """Format the KRaft data dir once (``StorageTool format --standalone``). True if it formatted now."""
    if (paths.kafka_data / "meta.properties").is_file():
        return False
    paths.kafka_data.mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    echo(f"kafka: formatting {paths.kafka_data} (cluster id {cluster_id})")
    # --standalone because server.properties uses controller.quorum.bootstrap.servers (a dynamic
    # KIP-853 quorum); without it StorageTool refuses to format a controller.
    argv = java_command(
        paths,
        ["-Xmx256m"],
        STORAGE_TOOL_MAIN,
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(paths.broker_properties),
        logs_dir=paths.kafka_root / "logs",
    )
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise TerminalError(
            "kafka: StorageTool format failed (exit "
            f"{result.returncode}): {' '.join(argv)}\n" + "\n".join(output[-20:])
        )
    return True


def start(settings: Settings, paths: StackPaths) -> int:
    """Start the broker detached; returns its pid. The caller checked it is not running yet."""
    host, port = bootstrap_address(settings)
    proc.ensure_port_free("kafka broker", host, port)
    proc.ensure_port_free("kafka controller", host, settings.kafka.controller_port)
    heap = settings.kafka.heap
    argv = java_command(
        paths,
        [f"-Xms{heap}", f"-Xmx{heap}"],
        BROKER_MAIN,
        str(paths.broker_properties),
        logs_dir=paths.kafka_root / "logs",
    )
    return proc.spawn(argv, log=paths.broker_log, pidfile=paths.broker_pidfile, cwd=paths.kafka_root)


def broker_ready(settings: Settings) -> bool:
    """True if the broker answers a metadata request and reports itself (the AdminClient check)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            # librdkafka would log every refused connection to stderr while the broker starts.
            "log_level": 0,
            "socket.connection.setup.timeout.ms": 2000,
        }
    )
    try:
        metadata = admin.list_topics(timeout=3)
    except Exception:
        return False
    return bool(metadata.brokers)


def wait_ready(settings: Settings, paths: StackPaths, pid: int, timeout: float) -> None:
    """Block until the broker serves metadata; TerminalError with the log tail on death or timeout."""
    host, port = bootstrap_address(settings)
    started = time.monotonic()
    ok = proc.wait_until(
        lambda: proc.port_open(host, port) and broker_ready(settings),
        timeout=timeout,
        interval=0.5,
        alive=lambda: proc.pid_alive(pid),
    )
    if ok:
        return
    if not proc.pid_alive(pid):
        raise proc.failure("kafka broker", paths.broker_log, f"process {pid} exited during startup")
    raise proc.failure(
        "kafka broker",
        paths.broker_log,
        f"not ready after {time.monotonic() - started:.0f} s (no metadata from {host}:{port})",
    )


def stop(paths: StackPaths, echo: proc.Echo, timeout: float = 60.0) -> None:
    """SIGTERM the broker (controlled shutdown), SIGKILL after ``timeout``; remove the pid file."""
    pid = running_pid(paths)
    if pid is None:
        stale = proc.clear_stale_pidfile(paths.broker_pidfile, markers(paths))
        if stale:
            echo(f"kafka: removed stale pid file (pid {stale} is gone)")
        return
    started = time.monotonic()
    killed = proc.terminate(pid, timeout=timeout, markers=markers(paths))
    paths.broker_pidfile.unlink(missing_ok=True)
    how = "killed after SIGTERM timeout" if killed else "stopped"
    echo(f"kafka: {how} (pid {pid}) in {time.monotonic() - started:.1f} s")
