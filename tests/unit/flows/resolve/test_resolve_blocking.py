from flows.resolve.blocking import BlockKeyer, candidate_pairs
from flows.resolve.features import FeatureExtractor
from tests.unit.flows.resolve.resolve_helpers import person, person_config


def test_keys_skip_missing_features() -> None:
    cfg = person_config()
    ext, keys = FeatureExtractor(cfg), BlockKeyer(cfg)
    k = keys(ext(person("Anna Weber", "Berlin", "1990-01-02", "a@x.org")))
    assert k == ("0:a@x.org", "1:W160|berlin", "2:1990-01-02")
    assert keys(ext(person("Anna Weber"))) == ()
    assert keys.key_name(k[1]) == "name_city"


def test_candidate_pairs_respect_the_block_size_cap() -> None:
    keys = [("0:a", "1:x"), ("0:a",), ("0:a",), ("1:x",), ()]
    assert candidate_pairs(keys, 3).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2]]
    # block "0:a" has 3 members: above a cap of 2 it yields no pairs
    assert candidate_pairs(keys, 2).tolist() == [[0, 3]]
