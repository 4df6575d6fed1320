import itertools
import random
from pathlib import Path

import polars as pl
import pytest

from flows.resolve.config import Training, load_matching_config, write_matching_config
from flows.resolve.resolver import Resolver
from flows.resolve.train import format_weights, train, train_with_report
from tests.unit.flows.resolve.resolve_helpers import person_config

FIRST = ["anna", "maria", "peter", "jan", "olga", "li", "tom", "eva", "igor", "nina", "paul", "sara"]
LAST = ["weber", "nowak", "smith", "meyer", "kowalski", "garcia", "rossi", "berg", "lind", "okafor", "silva"]
CITIES = ["berlin", "paris", "lyon", "gdansk", "porto", "oslo", "rome"]


def typo(s: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(s))
    return s[:i] + rng.choice("aeiou") + s[i + 1 :]


@pytest.fixture(scope="module")
def people() -> pl.DataFrame:
    """400 people, 1-3 records each, with typos, missing values and moved emails."""
    rng = random.Random(5)
    rows = []
    for p in range(400):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        city, dob = (
            rng.choice(CITIES),
            f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(10)}",
        )
        email = f"{name.replace(' ', '.')}{p}@mail.org"
        for k in range(rng.choice([1, 2, 2, 3])):
            rows.append(
                {
                    "id": f"p{p}-{k}",
                    "entity": f"p{p}",
                    "name": typo(name, rng) if rng.random() < 0.3 else name,
                    "city": city if rng.random() < 0.85 else None,
                    "dob": dob if rng.random() < 0.8 else None,
                    "email": email if rng.random() < 0.6 else None,
                }
            )
    return pl.DataFrame(rows)


def untrained():  # type: ignore[no-untyped-def]
    cfg = person_config()
    comps = tuple(
        c.model_copy(
            update={"levels": tuple(lvl.model_copy(update={"m": None, "u": None}) for lvl in c.levels)}
        )
        for c in cfg.comparisons
    )
    training = Training(u_max_pairs=50_000, em_sessions=(("dob",), ("city",)))
    return cfg.model_copy(update={"comparisons": comps, "training": training, "prior": 0.5})


def test_em_learns_weights_that_resolve_the_people(people: pl.DataFrame) -> None:
    trained, report = train_with_report(people, untrained())
    assert report.records == people.height and report.candidate_pairs > 300
    assert [s[0] for s in report.sessions] == [("dob",), ("city",)]
    for comp in trained.comparisons:
        exact = next(lvl for lvl in comp.levels if lvl.label == "exact")
        assert exact.m is not None and exact.u is not None and exact.m > 5 * exact.u, comp.name
        last = comp.levels[-1]
        assert last.m is not None and last.u is not None and last.m < last.u, comp.name
    assert 0 < trained.prior < 0.01

    resolver = Resolver(trained)
    rows = people.to_dicts()
    resolver.upsert_many((r["id"], r) for r in rows)
    truth = {r["id"]: r["entity"] for r in rows}
    found = {tuple(sorted(p)) for m in resolver.clusters().values() for p in itertools.combinations(m, 2)}
    true_found = {p for p in found if truth[p[0]] == truth[p[1]]}
    sizes: dict[str, int] = {}
    for e in truth.values():
        sizes[e] = sizes.get(e, 0) + 1
    all_true = sum(n * (n - 1) // 2 for n in sizes.values())
    assert len(true_found) / len(found) > 0.95 and len(true_found) / all_true > 0.7


def test_trained_config_round_trips_and_prints(people: pl.DataFrame, tmp_path: Path) -> None:
    cfg = untrained()
    comps = list(cfg.comparisons)
    levels = list(comps[0].levels)
    levels[1] = levels[1].model_copy(update={"tf": "name"})
    comps[0] = comps[0].model_copy(update={"levels": tuple(levels)})
    trained = train(people, cfg.model_copy(update={"comparisons": tuple(comps)}))
    assert trained.term_frequencies.tables["name"].total == people.height
    path = tmp_path / "person.yaml"
    write_matching_config(trained, path)
    again = load_matching_config(path)
    assert again.term_frequencies.tables == trained.term_frequencies.tables
    assert again.comparisons == trained.comparisons and again.prior == trained.prior
    text = format_weights(again)
    assert text.splitlines()[0].split() == ["comparison", "level", "m", "u", "weight", "tf"]
    assert "prior (two random records match)" in text
