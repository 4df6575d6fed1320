from prometheus_client import CollectorRegistry, Histogram, generate_latest

from core.metrics import observe_many


def _exposition(values: list[float], bulk: bool) -> list[str]:
    reg = CollectorRegistry()
    h = Histogram("t_seconds", "t", ["layer"], buckets=(0.1, 1, 10), registry=reg)
    if bulk:
        observe_many(h, values, layer="x")
    else:
        for v in values:
            h.labels(layer="x").observe(v)
    return [line for line in generate_latest(reg).decode().splitlines() if "_created" not in line]


def test_observe_many_equals_observe_per_value() -> None:
    values = [0.0, 0.1, 0.1000001, 0.5, 1.0, 9.99, 10.0, 11.0, 1e9]
    assert _exposition(values, bulk=True) == _exposition(values, bulk=False)


def test_observe_many_with_nothing_is_a_no_op() -> None:
    assert _exposition([], bulk=True) == _exposition([], bulk=False)
