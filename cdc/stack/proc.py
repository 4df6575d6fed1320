"""Background processes for the local stack: pid files, liveness, ports, waiting and log tails.

Only Linux is supported (``/proc`` is read to tell a live process from a zombie or from an unrelated
process that reused the pid).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from string import Template

from core.errors import ConfigError, TerminalError

Echo = Callable[[str], None]
"""Receives one human-readable progress line (the CLI prints it; the default logs it)."""

_log = logging.getLogger("cdc.stack")


def log_echo(line: str) -> None:
    """Default :data:`Echo`: the ``cdc.stack`` logger at INFO."""
    _log.info("%s", line)


# A log bigger than this is rotated to ``<name>.1`` when its process is started again.
LOG_ROTATE_BYTES = 50 * 1024 * 1024


@contextlib.contextmanager
def exclusive(lockfile: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lockfile`` (blocking) for the duration of the block.

    Two ``up`` runs at once (a CLI user and a test session) would otherwise both see a component
    down and race to start it; the loser would then fail with "port already in use".
    """
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with lockfile.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_pid(pidfile: Path) -> int | None:
    """The pid on the first line of ``pidfile`` (a PostgreSQL ``postmaster.pid`` works too), or None."""
    try:
        first = pidfile.read_text(encoding="utf-8").split("\n", 1)[0].strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def write_pid(pidfile: Path, pid: int) -> None:
    """Write ``pid`` atomically (a reader never sees a half-written file)."""
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(f"{pid}\n", encoding="utf-8")
    tmp.replace(pidfile)


def render_template(path: Path, **values: object) -> str:
    """Substitute ``${name}`` placeholders of the template at ``path``; errors name the file."""
    try:
        return Template(path.read_text(encoding="utf-8")).substitute(**values)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: template not found") from exc
    except KeyError as exc:
        raise ConfigError(f"{path}: unknown placeholder ${{{exc.args[0]}}}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc} (write a literal dollar sign as $$)") from exc


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless ``path`` already holds exactly that; True if it wrote."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.write_text(text, encoding="utf-8")
    return True


def _proc_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` (R, S, Z, ...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie has exited; it only awaits reaping)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` (empty if unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int, markers: Sequence[str]) -> bool:
    """True if ``pid`` is alive and its command line contains every marker.

    Markers (a main class, a path inside our state folder) guard against pid reuse: after a reboot or
    a crash the pid in a stale pid file may belong to an unrelated process we must never signal.
    """
    if not pid_alive(pid):
        return False
    joined = " ".join(cmdline(pid))
    return all(marker in joined for marker in markers)


def running_pid(pidfile: Path, markers: Sequence[str]) -> int | None:
    """The pid recorded in ``pidfile`` if that process is alive and ours, else None."""
    pid = read_pid(pidfile)
    if pid is not None and is_ours(pid, markers):
        return pid
    return None


def clear_stale_pidfile(pidfile: Path, markers: Sequence[str]) -> int | None:
    """Remove ``pidfile`` if its process is gone (or is not ours any more); return the stale pid."""
    pid = read_pid(pidfile)
    if pid is None:
        if pidfile.exists():
            pidfile.unlink()
        return None
    if is_ours(pid, markers):
        return None
    pidfile.unlink(missing_ok=True)
    return pid


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (we can bind it, as the server we start will)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Same as servers do: a port held only by TIME_WAIT connections counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="utf-8").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owner(port: int) -> int | None:
    """Best effort: the pid of the process listening on ``port`` (None if unknown or not permitted)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return int(entry.name)
        except OSError:
            continue
    return None


def describe_port_user(port: int) -> str:
    """``pid 123 (java ...)`` for the listener of ``port``, or a hint when it cannot be determined."""
    pid = port_owner(port)
    if pid is None:
        return "an unknown process (try `ss -ltnp`)"
    args = " ".join(cmdline(pid))
    if len(args) > 160:
        args = args[:157] + "..."
    return f"pid {pid} ({args})"


def ensure_port_free(component: str, host: str, port: int) -> None:
    """Raise a TerminalError naming the squatter if ``host:port`` is taken before we start ``component``."""
    if not port_free(host, port):
        raise TerminalError(
            f"{component}: port {host}:{port} is already in use by {describe_port_user(port)}, "
            "which is not a process of this stack (no matching pid file). Stop it, or change the port "
            "in config/goldstream.yaml."
        )


def _rotate(log: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_name(log.name + ".1"))


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    pidfile: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` detached (own session, stdin closed), stdout+stderr appended to ``log``.

    The new session keeps Ctrl-C in the terminal that ran ``goldstream stack up`` from reaching the
    server, and lets it outlive the CLI. The pid is written to ``pidfile``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    _rotate(log)
    with log.open("ab") as out:
        out.write(f"\n===== goldstream: starting at {time.strftime('%Y-%m-%d %H:%M:%S')}: ".encode())
        out.write((" ".join(argv) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    write_pid(pidfile, proc.pid)
    return proc.pid


def _reap(pid: int) -> None:
    # If the process is our own child (started in this Python process), collect its exit status so
    # it does not linger as a zombie; for anyone else's child this is a no-op.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int, *, timeout: float, markers: Sequence[str]) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL. Returns True if it had to be killed.

    Does nothing unless ``pid`` is alive and matches ``markers`` (see :func:`is_ours`).
    """
    if not is_ours(pid, markers):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return False
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    return True


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.5,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``check`` until it returns True (-> True) or ``timeout`` passes (-> False).

    ``alive`` is polled too: when the process being waited for has died there is no point in
    waiting out the timeout, so this returns False at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if alive is not None and not alive():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of ``path`` (reads at most the last 64 KiB)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            data = fh.read()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    text = data.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])


def failure(component: str, log: Path, problem: str, *, lines: int = 20) -> TerminalError:
    """A TerminalError naming the component and its log, with the log's last lines attached."""
    return TerminalError(
        f"{component}: {problem}\nlog: {log}\n--- last {lines} lines of {log.name} ---\n{tail(log, lines)}"
    )
