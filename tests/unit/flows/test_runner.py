"""The dataflow runner's recovery store handling."""

from pathlib import Path
from threading import Thread

from flows.engine.runner import ensure_recovery_dir


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
