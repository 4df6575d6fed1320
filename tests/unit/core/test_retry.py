import pytest

from core.errors import TerminalError, TransientError
from core.retry import retry_transient


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, s: float) -> None:
        self.now += s

    def __call__(self) -> float:
        return self.now


def test_retries_transient_then_succeeds() -> None:
    calls: list[int] = []
    clock = FakeClock()

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("not yet")
        return "ok"

    assert retry_transient(flaky, operation="x", sleep=clock.sleep, clock=clock) == "ok"
    assert len(calls) == 3


def test_gives_up_as_terminal_after_deadline() -> None:
    clock = FakeClock()

    def down() -> None:
        raise TransientError("broker down")

    with pytest.raises(TerminalError, match=r"x: still failing after .* broker down"):
        retry_transient(down, operation="x", deadline_s=5, sleep=clock.sleep, clock=clock)
    assert clock.now <= 5


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        retry_transient(broken, operation="x")
    assert len(calls) == 1
