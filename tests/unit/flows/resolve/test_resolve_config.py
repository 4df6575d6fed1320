from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError
from flows.resolve.config import (
    MatchingConfig,
    TermFrequencies,
    TermFrequencyTable,
    load_matching_config,
    write_matching_config,
)
from tests.unit.flows.resolve.resolve_helpers import person_config

REPO = Path(__file__).resolve().parents[4]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def base() -> dict[str, object]:
    return person_config().model_dump(mode="json", exclude_defaults=True)


@pytest.mark.parametrize(
    "path",
    [
        "config/matching/customer.yaml",
        "bench/er/configs/febrl.yaml",
        "bench/er/configs/historical_50k.yaml",
    ],
)
def test_shipped_configs_load(path: str) -> None:
    config = load_matching_config(REPO / path)
    assert config.comparisons and config.blocking.keys


def test_unknown_key_names_file_and_path(tmp_path: Path) -> None:
    data = base()
    data["blocking"]["keys"][0]["on"] = ["email"]  # type: ignore[index]
    with pytest.raises(ConfigError) as err:
        load_matching_config(write(tmp_path, data))
    assert "m.yaml: blocking.keys.0.on: unknown key" in str(err.value)


def test_unknown_feature_reference_is_an_error(tmp_path: Path) -> None:
    data = base()
    data["blocking"]["keys"][0]["features"] = ["emial"]  # type: ignore[index]
    with pytest.raises(ConfigError, match="blocking key email: unknown feature 'emial'"):
        load_matching_config(write(tmp_path, data))


def test_unknown_normalisation_is_an_error(tmp_path: Path) -> None:
    data = base()
    data["features"]["name"]["ops"] = ["lowercase"]  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"features\.name: .*unknown normalisation 'lowercase'"):
        load_matching_config(write(tmp_path, data))


def test_catch_all_level_must_come_last(tmp_path: Path) -> None:
    data = base()
    levels = data["comparisons"][0]["levels"]  # type: ignore[index]
    levels.append(levels.pop(1))
    with pytest.raises(ConfigError, match="the last level must be a catch-all"):
        load_matching_config(write(tmp_path, data))


def test_predicate_needs_exactly_one_kind_and_its_parameter(tmp_path: Path) -> None:
    data = base()
    data["comparisons"][0]["levels"][2]["when"] = [{"jaro_winkler": "name"}]  # type: ignore[index]
    with pytest.raises(ConfigError, match="jaro_winkler needs min"):
        load_matching_config(write(tmp_path, data))
    data["comparisons"][0]["levels"][2]["when"] = [{"jaro_winkler": "name", "exact": "name", "min": 0.9}]  # type: ignore[index]
    with pytest.raises(ConfigError, match="set exactly one of"):
        load_matching_config(write(tmp_path, data))


def test_null_level_takes_no_weights() -> None:
    data = base()
    data["comparisons"][0]["levels"][0]["m"] = 0.5  # type: ignore[index]
    with pytest.raises(ValueError, match="null level"):
        MatchingConfig.model_validate(data)


def test_write_and_load_round_trip_with_term_frequency_sidecar(tmp_path: Path) -> None:
    tf = TermFrequencies(tables={"name": TermFrequencyTable(total=10, counts={"anna": 4, "bob": 2})})
    config = person_config().model_copy(update={"term_frequencies": tf})
    path = tmp_path / "person.yaml"
    write_matching_config(config, path)
    assert (tmp_path / "person.tf.json").exists()
    assert "counts" not in path.read_text()
    again = load_matching_config(path)
    assert again.term_frequencies.tables == tf.tables
    assert again.comparisons == config.comparisons
    assert again.clustering == config.clustering
    assert again.prior == config.prior


def test_crossed_names_two_known_features(tmp_path: Path) -> None:
    data = base()
    data["comparisons"][0]["levels"][2]["when"] = [{"crossed": ["name", "emial"]}]  # type: ignore[index]
    with pytest.raises(ConfigError, match="unknown feature 'emial'"):
        load_matching_config(write(tmp_path, data))
    data["comparisons"][0]["levels"][2]["when"] = [{"crossed": ["name"]}]  # type: ignore[index]
    with pytest.raises(ConfigError, match="crossed"):
        load_matching_config(write(tmp_path, data))
