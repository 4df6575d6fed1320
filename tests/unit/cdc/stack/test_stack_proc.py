"""Pid files, liveness, ports and stopping processes (real short-lived processes, no services)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.stack import proc
from core.errors import TerminalError

SLEEPER = "import time; time.sleep(60)  # goldstream-proc-test"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('handler-' + 'installed', flush=True); time.sleep(60)  # goldstream-proc-test"
)


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        sock.close()


def test_pid_file_roundtrip(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert proc.read_pid(pidfile) is None
    proc.write_pid(pidfile, 1234)
    assert proc.read_pid(pidfile) == 1234
    pidfile.write_text("garbage\n")
    assert proc.read_pid(pidfile) is None
    # PostgreSQL's postmaster.pid: pid on the first line, more lines after.
    pidfile.write_text("4321\n/data\n1700000000\n54329\n")
    assert proc.read_pid(pidfile) == 4321


def test_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while proc._proc_state(child.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc._proc_state(child.pid) == "Z"  # exited, not reaped yet
    assert not proc.pid_alive(child.pid)
    child.wait()
    assert not proc.pid_alive(child.pid)


def test_spawn_markers_and_terminate(tmp_path: Path) -> None:
    log, pidfile = tmp_path / "logs" / "p.log", tmp_path / "p.pid"
    pid = proc.spawn([sys.executable, "-c", SLEEPER], log=log, pidfile=pidfile)
    try:
        assert proc.read_pid(pidfile) == pid
        assert proc.pid_alive(pid)
        assert os.getsid(pid) == pid  # its own session: Ctrl-C in our terminal does not reach it
        assert proc.running_pid(pidfile, ["goldstream-proc-test"]) == pid
        # A live process whose command line does not match is not ours: never signalled.
        assert proc.running_pid(pidfile, ["kafka.Kafka"]) is None
        assert proc.terminate(pid, timeout=5, markers=["kafka.Kafka"]) is False
        assert proc.pid_alive(pid)
        assert proc.terminate(pid, timeout=10, markers=["goldstream-proc-test"]) is False
        assert not proc.pid_alive(pid)
    finally:
        if proc.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert "goldstream: starting at" in log.read_text()


def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    pid = proc.spawn([sys.executable, "-c", STUBBORN], log=log, pidfile=tmp_path / "s.pid")
    # (the log's header line repeats the program text, so wait for the concatenated word)
    assert proc.wait_until(lambda: "handler-installed" in log.read_text(), timeout=10, interval=0.05)
    started = time.monotonic()
    assert proc.terminate(pid, timeout=0.5, markers=["goldstream-proc-test"]) is True
    assert not proc.pid_alive(pid)
    assert time.monotonic() - started < 10


def test_stale_pidfile(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pidfile = tmp_path / "gone.pid"
    proc.write_pid(pidfile, child.pid)
    assert proc.running_pid(pidfile, ["x"]) is None
    assert proc.clear_stale_pidfile(pidfile, ["x"]) == child.pid
    assert not pidfile.exists()
    assert proc.clear_stale_pidfile(pidfile, ["x"]) is None


def test_live_pidfile_is_kept(tmp_path: Path) -> None:
    pidfile = tmp_path / "me.pid"
    proc.write_pid(pidfile, os.getpid())
    marker = proc.cmdline(os.getpid())[0]
    assert proc.clear_stale_pidfile(pidfile, [marker]) is None
    assert pidfile.exists()


def test_ports(listener: tuple[str, int]) -> None:
    host, port = listener
    assert not proc.port_free(host, port)
    assert proc.port_open(host, port)
    assert proc.port_owner(port) == os.getpid()
    with pytest.raises(
        TerminalError, match=rf"kafka broker: port 127\.0\.0\.1:{port} is already in use by pid {os.getpid()}"
    ):
        proc.ensure_port_free("kafka broker", host, port)


def test_free_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert proc.port_free("127.0.0.1", port)
    assert not proc.port_open("127.0.0.1", port)
    proc.ensure_port_free("x", "127.0.0.1", port)


def test_wait_until_stops_when_process_died() -> None:
    started = time.monotonic()
    assert not proc.wait_until(lambda: False, timeout=30, interval=0.05, alive=lambda: False)
    assert time.monotonic() - started < 1
    calls = iter([False, False, True])
    assert proc.wait_until(lambda: next(calls), timeout=5, interval=0.01)


def test_tail_and_failure(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert proc.tail(log, 3) == "line 97\nline 98\nline 99"
    err = proc.failure("kafka connect", log, "not ready after 180 s")
    text = str(err)
    assert isinstance(err, TerminalError)
    assert text.startswith("kafka connect: not ready after 180 s")
    assert str(log) in text and "line 80" in text and "line 79" not in text
    assert "cannot read" in proc.tail(tmp_path / "missing.log")


def test_write_if_changed(tmp_path: Path) -> None:
    target = tmp_path / "f"
    assert proc.write_if_changed(target, "a")
    assert not proc.write_if_changed(target, "a")
    assert proc.write_if_changed(target, "b")


def test_exclusive_serialises(tmp_path: Path) -> None:
    import threading

    lock = tmp_path / "state" / ".stack.lock"
    order: list[str] = []

    def other() -> None:
        with proc.exclusive(lock):
            order.append("other")

    with proc.exclusive(lock):
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "other"]
