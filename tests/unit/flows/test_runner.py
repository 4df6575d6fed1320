"""The dataflow runner's recovery store handling."""

import socket
from pathlib import Path
from threading import Thread

from flows.engine.runner import _ephemeral_range, ensure_recovery_dir, free_ports


def test_recovery_store_is_created_whole_once(tmp_path: Path) -> None:
    path = tmp_path / "recovery" / "bronze"
    ensure_recovery_dir(path, 4)
    assert len(list(path.glob("part-*.sqlite3"))) == 4
    marker = path / "part-0.sqlite3"
    mtime = marker.stat().st_mtime_ns
    ensure_recovery_dir(path, 4)  # reused, not re-initialised
    assert marker.stat().st_mtime_ns == mtime


def test_concurrent_creators_never_see_a_partial_store(tmp_path: Path) -> None:
    path = tmp_path / "recovery" / "bronze"
    seen: list[int] = []

    def start() -> None:
        ensure_recovery_dir(path, 8)
        seen.append(len(list(path.glob("part-*.sqlite3"))))

    threads = [Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [8, 8, 8, 8]
    assert not list(path.parent.glob(".bronze.init-*"))


def test_cluster_ports_are_distinct_free_and_outside_the_ephemeral_range() -> None:
    # An outgoing client connection can be handed any ephemeral port; a cluster port from that
    # range could be taken before process 0 binds it and the cluster would never form.
    low, high = _ephemeral_range()
    for _ in range(20):
        ports = free_ports(4)
        assert len(set(ports)) == 4
        assert all(not low <= p <= high and p >= 20000 for p in ports)
    socks = []
    try:
        for p in free_ports(3):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))  # really free right after the call
    finally:
        for s in socks:
            s.close()
