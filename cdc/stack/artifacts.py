"""``goldstream stack fetch``: the Kafka/Connect runtime jars and the Debezium plugin, from Maven Central.

Both land in the state folder: ``kafka/libs`` (copy-dependencies of ``infra/kafka/pom.xml``) and
``connect-plugins/debezium-connector-postgres`` (the connector's ``plugin`` tar.gz, unpacked). Each is
stamped with the pom's hash, so a second run is a no-op until the pom changes.
"""

from __future__ import annotations

import collections
import hashlib
import shutil
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from cdc.stack import connect, kafka, proc
from cdc.stack.paths import StackPaths
from core.errors import ConfigError, TerminalError

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0"
STAMP = ".goldstream-stamp"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class PomInfo:
    """Versions pinned in ``infra/kafka/pom.xml`` and the hash the stamps compare against."""

    kafka_version: str
    debezium_version: str
    digest: str


def read_pom(pom: Path) -> PomInfo:
    """Read the pinned versions from the pom's ``<properties>``."""
    try:
        data = pom.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{pom}: file not found") from exc
    root = ET.fromstring(data)

    def prop(name: str) -> str:
        node = root.find(f"m:properties/m:{name}", _POM_NS)
        if node is None or not (node.text or "").strip():
            raise ConfigError(f"{pom}: <properties><{name}> is missing")
        return (node.text or "").strip()

    return PomInfo(
        kafka_version=prop("kafka.version"),
        debezium_version=prop("debezium.version"),
        digest=hashlib.sha256(data).hexdigest(),
    )


def _stamp_matches(folder: Path, digest: str) -> bool:
    try:
        return (folder / STAMP).read_text(encoding="utf-8").strip() == digest
    except OSError:
        return False


def _kafka_jar(paths: StackPaths, info: PomInfo) -> Path:
    return paths.kafka_libs / f"kafka_2.13-{info.kafka_version}.jar"


def _plugin_jar(paths: StackPaths, info: PomInfo) -> Path:
    version = info.debezium_version
    return paths.plugins / "debezium-connector-postgres" / f"debezium-connector-postgres-{version}.jar"


def _libs_ok(paths: StackPaths, info: PomInfo) -> bool:
    # The stamp says which pom was fetched; the jar check catches a folder deleted by hand.
    return _stamp_matches(paths.kafka_libs, info.digest) and _kafka_jar(paths, info).is_file()


def _plugin_ok(paths: StackPaths, info: PomInfo) -> bool:
    return _stamp_matches(paths.plugins, info.digest) and _plugin_jar(paths, info).is_file()


def up_to_date(paths: StackPaths) -> bool:
    """True if both the libs and the plugin were fetched for the current pom."""
    info = read_pom(paths.pom)
    return _libs_ok(paths, info) and _plugin_ok(paths, info)


def _mvn(paths: StackPaths, args: list[str], echo: proc.Echo, what: str) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise ConfigError("mvn not found: install Maven (scripts/bootstrap.sh does)")
    argv = [mvn, "-B", "-ntp", "-f", str(paths.pom), *args]
    last: collections.deque[str] = collections.deque(maxlen=40)
    downloads = 0
    started = time.monotonic()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    ) as mvn_proc:
        assert mvn_proc.stdout is not None
        for line in mvn_proc.stdout:
            last.append(line.rstrip("\n"))
            # A first fetch downloads a few hundred artifacts: report every 25 so it visibly moves.
            if line.startswith("Downloaded from"):
                downloads += 1
                if downloads % 25 == 0:
                    elapsed = time.monotonic() - started
                    echo(f"fetch:   {what}: {downloads} artifacts downloaded ({elapsed:.0f} s)")
        code = mvn_proc.wait()
    if code != 0:
        raise TerminalError(
            f"fetch: {what} failed (mvn exit {code}).\ncommand: {' '.join(argv)}\n"
            f"--- last {len(last)} lines of mvn output ---\n" + "\n".join(last)
        )


def _replace_dir(target: Path, staged: Path) -> None:
    # Swap in a fully populated folder so an interrupted fetch never leaves a half classpath.
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)


def _dir_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _fetch_libs(paths: StackPaths, info: PomInfo, echo: proc.Echo) -> None:
    staged = paths.kafka_libs.with_name("libs.partial")
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    echo(f"fetch: Kafka {info.kafka_version} runtime -> {paths.kafka_libs} (mvn copy-dependencies)")
    started = time.monotonic()
    _mvn(
        paths,
        [f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={staged}"],
        echo,
        "Kafka runtime jars",
    )
    expected = staged / f"kafka_2.13-{info.kafka_version}.jar"
    if not expected.is_file():
        raise TerminalError(f"fetch: mvn finished but {expected.name} is missing from {staged}")
    jars = len(list(staged.glob("*.jar")))
    (staged / STAMP).write_text(info.digest + "\n", encoding="utf-8")
    _replace_dir(paths.kafka_libs, staged)
    echo(f"fetch: {jars} jars, {_dir_size_mb(paths.kafka_libs):.0f} MB in {time.monotonic() - started:.1f} s")


def _fetch_plugin(paths: StackPaths, info: PomInfo, echo: proc.Echo) -> None:
    version = info.debezium_version
    artifact = f"io.debezium:debezium-connector-postgres:{version}:tar.gz:plugin"
    echo(f"fetch: Debezium PostgreSQL connector {version} -> {paths.plugins}")
    started = time.monotonic()
    paths.downloads.mkdir(parents=True, exist_ok=True)
    _mvn(
        paths,
        [f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={paths.downloads}"],
        echo,
        "Debezium plugin archive",
    )
    archive = paths.downloads / f"debezium-connector-postgres-{version}-plugin.tar.gz"
    if not archive.is_file():
        raise TerminalError(f"fetch: mvn finished but {archive} is missing")
    staged = paths.plugins.with_name("connect-plugins.partial")
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        # "data" filter: no absolute paths, no links escaping the folder, no device files.
        tar.extractall(staged, filter="data")
    jar = staged / "debezium-connector-postgres" / f"debezium-connector-postgres-{version}.jar"
    if not jar.is_file():
        raise TerminalError(f"fetch: {archive.name} did not contain {jar.relative_to(staged)}")
    (staged / STAMP).write_text(info.digest + "\n", encoding="utf-8")
    _replace_dir(paths.plugins, staged)
    echo(
        f"fetch: plugin unpacked ({_dir_size_mb(paths.plugins):.0f} MB) in {time.monotonic() - started:.1f} s"
    )


def fetch(paths: StackPaths, echo: proc.Echo = proc.log_echo, *, force: bool = False) -> bool:
    """Download what is missing or stale; True if anything was fetched, False if all was up to date."""
    info = read_pom(paths.pom)
    need_libs = force or not _libs_ok(paths, info)
    need_plugin = force or not _plugin_ok(paths, info)
    if not (need_libs or need_plugin):
        echo(f"fetch: Kafka {info.kafka_version} and Debezium {info.debezium_version} already fetched")
        return False
    running = [
        name
        for name, pid in (
            ("kafka broker", kafka.running_pid(paths)),
            ("kafka connect", connect.running_pid(paths)),
        )
        if pid is not None
    ]
    if running:
        raise TerminalError(
            f"fetch: {paths.pom} changed (or --force) while {', '.join(running)} is running on the "
            "current jars; run `goldstream stack down` first"
        )
    paths.state.mkdir(parents=True, exist_ok=True)
    if need_libs:
        _fetch_libs(paths, info, echo)
    if need_plugin:
        _fetch_plugin(paths, info, echo)
    return True
