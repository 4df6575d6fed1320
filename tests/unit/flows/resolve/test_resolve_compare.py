import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.resolve.compare import SCALAR_MAX_PAIRS, Scorer, probability, weight_of
from flows.resolve.config import MatchingConfig, TermFrequencies, TermFrequencyTable
from flows.resolve.features import FeatureStore
from tests.unit.flows.resolve.resolve_helpers import person_config


def one_comparison(levels: list[dict[str, Any]], features: dict[str, Any]) -> MatchingConfig:
    return MatchingConfig.model_validate(
        {
            "entity": "t",
            "features": features,
            "blocking": {"keys": [{"name": "k", "features": [next(iter(features))]}]},
            "comparisons": [{"name": "c", "levels": [*levels, {"label": "else", "m": 0.1, "u": 0.9}]}],
        }
    )


def level_of(config: MatchingConfig, a: dict[str, Any], b: dict[str, Any]) -> str:
    from flows.resolve.features import FeatureExtractor

    ext = FeatureExtractor(config)
    lv, _ = Scorer(config).score_features([ext(a)], [ext(b)])
    return config.comparisons[0].levels[int(lv[0, 0])].label


F = {"x": {"source": "x"}, "y": {"source": "y"}}


def test_first_level_that_holds_wins() -> None:
    cfg = one_comparison(
        [
            {"label": "null", "missing": ["x"]},
            {"label": "exact", "when": [{"exact": "x"}], "m": 0.5, "u": 0.01},
            {"label": "jw", "when": [{"jaro_winkler": "x", "min": 0.9}], "m": 0.3, "u": 0.02},
            {"label": "lev2", "when": [{"levenshtein": "x", "max": 2}], "m": 0.1, "u": 0.07},
        ],
        F,
    )
    assert level_of(cfg, {"x": "martha"}, {"x": "martha"}) == "exact"
    assert level_of(cfg, {"x": "martha"}, {"x": "marhta"}) == "jw"
    assert level_of(cfg, {"x": "abcd"}, {"x": "abxy"}) == "lev2"
    assert level_of(cfg, {"x": "abcd"}, {"x": "wxyz"}) == "else"
    assert level_of(cfg, {"x": None}, {"x": "martha"}) == "null"


def test_null_level_any_or_all() -> None:
    lv = [{"label": "null", "missing": ["x", "y"], "missing_mode": "all"}]
    cfg = one_comparison([*lv, {"label": "x", "when": [{"exact": "x"}], "m": 0.5, "u": 0.01}], F)
    assert level_of(cfg, {"x": "a", "y": None}, {"x": "a", "y": None}) == "x"
    assert level_of(cfg, {"x": None, "y": None}, {"x": "a", "y": "b"}) == "null"
    lv = [{"label": "null", "missing": ["x", "y"]}]
    cfg = one_comparison([*lv, {"label": "x", "when": [{"exact": "x"}], "m": 0.5, "u": 0.01}], F)
    assert level_of(cfg, {"x": "a", "y": None}, {"x": "a", "y": "b"}) == "null"


def test_swapped_and_any_exact() -> None:
    cfg = one_comparison(
        [
            {"label": "swapped", "when": [{"swapped": ["x", "y"]}], "m": 0.5, "u": 0.01},
            {"label": "any", "when": [{"any_exact": ["x", "y"]}], "m": 0.3, "u": 0.01},
        ],
        F,
    )
    assert level_of(cfg, {"x": "ann", "y": "lee"}, {"x": "lee", "y": "ann"}) == "swapped"
    assert level_of(cfg, {"x": "+441", "y": None}, {"x": None, "y": "+441"}) == "any"
    assert level_of(cfg, {"x": "+441", "y": "+442"}, {"x": "+443", "y": "+444"}) == "else"


def test_crossed_compares_one_sides_feature_with_the_others_other_feature() -> None:
    cfg = one_comparison([{"label": "crossed", "when": [{"crossed": ["x", "y"]}], "m": 0.5, "u": 0.01}], F)
    # x of either side against y of the other: a contact's account reference and the account's key.
    assert level_of(cfg, {"x": "acc-1", "y": "c-7"}, {"x": None, "y": "acc-1"}) == "crossed"
    assert level_of(cfg, {"x": None, "y": "acc-1"}, {"x": "acc-1", "y": "c-7"}) == "crossed"
    # Never x with x or y with y: two contacts of one account are not thereby one person.
    assert level_of(cfg, {"x": "acc-1", "y": "c-7"}, {"x": "acc-1", "y": "c-8"}) == "else"
    assert level_of(cfg, {"x": None, "y": "k"}, {"x": None, "y": "k"}) == "else"
    assert level_of(cfg, {"x": "a", "y": None}, {"x": None, "y": None}) == "else"


def test_dates_and_numbers() -> None:
    cfg = one_comparison(
        [
            {"label": "month", "when": [{"date_diff": "x", "max": 31}], "m": 0.5, "u": 0.01},
            {
                "label": "amount",
                "when": [{"numeric_diff": "y", "max": 0.1, "relative": True}],
                "m": 0.3,
                "u": 0.02,
            },
        ],
        {"x": {"source": "x", "ops": ["date"]}, "y": {"source": "y"}},
    )
    assert level_of(cfg, {"x": "2020-01-01"}, {"x": "2020-01-30"}) == "month"
    assert level_of(cfg, {"x": "2020-01-01", "y": "100"}, {"x": "2020-03-01", "y": "95"}) == "amount"
    assert level_of(cfg, {"x": "2020-01-01", "y": "100"}, {"x": "2020-03-01", "y": "80"}) == "else"


def test_match_weight_is_prior_plus_level_weights() -> None:
    cfg = person_config()
    scorer = Scorer(cfg)
    a = ("anna weber", "W160", "berlin", "1990-01-02", None)
    w, details = scorer.explain(a, a)
    expected = weight_of(cfg.prior) + sum(d.weight for d in details)
    assert math.isclose(w, expected)
    assert [d.level for d in details] == ["exact", "exact", "null", "exact"]
    assert probability(w) > 0.99


def with_name_tf(base: MatchingConfig, counts: dict[str, int]) -> MatchingConfig:
    comps = list(base.comparisons)
    levels = list(comps[0].levels)
    levels[1] = levels[1].model_copy(update={"tf": "name"})
    comps[0] = comps[0].model_copy(update={"levels": tuple(levels)})
    tf = TermFrequencies(tables={"name": TermFrequencyTable(total=10_000, counts=counts)})
    return base.model_copy(update={"comparisons": tuple(comps), "term_frequencies": tf})


def test_term_frequency_common_values_count_less_than_rare_ones() -> None:
    base = person_config()
    cfg = with_name_tf(base, {"john smith": 500, "anna weber": 5})
    scorer = Scorer(cfg)
    common = ("john smith", None, None, None, None)
    rare = ("anna weber", None, None, None, None)
    unseen = ("zoe quist", None, None, None, None)
    w_common, d_common = scorer.explain(common, common)
    w_rare, _ = scorer.explain(rare, rare)
    w_unseen, _ = scorer.explain(unseen, unseen)
    assert w_common < w_rare < w_unseen
    assert d_common[0].tf_adjustment < 0
    # Without a table the level's own u applies.
    assert scorer.explain(common, common)[0] != Scorer(base).explain(common, common)[0]


def every_kind_config() -> MatchingConfig:
    """One comparison per predicate kind (and both null modes), to hold both scoring paths to it."""
    base = with_name_tf(person_config(), {"anna": 300, "anna weber": 20, "lee": 2})
    extra = MatchingConfig.model_validate(
        {
            "entity": "t",
            "features": {
                "first": {"source": "name", "ops": ["first_token"]},
                "last": {"source": "name", "ops": ["last_token"]},
                "phone": {"source": "phone", "ops": ["phone"]},
                "mobile": {"source": "mobile", "ops": ["phone"]},
                "amount": {"source": "amount"},
                "email_name": {"source": "email", "ops": ["email_local", "letters", "sort_tokens"]},
                "name_sorted": {"source": "name", "ops": ["translit", "lower", "sort_tokens"]},
            },
            "blocking": {"keys": [{"name": "k", "features": ["first"]}]},
            "comparisons": [
                {
                    "name": "names",
                    "levels": [
                        {"label": "null", "missing": ["first", "last"], "missing_mode": "all"},
                        {"label": "swapped", "when": [{"swapped": ["first", "last"]}], "m": 0.1, "u": 0.001},
                        {
                            "label": "lev1",
                            "when": [{"damerau_levenshtein": "last", "max": 1}],
                            "m": 0.3,
                            "u": 0.01,
                        },
                        {
                            "label": "tokens",
                            "when": [{"token_set": "first", "min": 0.8}],
                            "m": 0.2,
                            "u": 0.02,
                        },
                        {"label": "jaro", "when": [{"jaro": "last", "min": 0.7}], "m": 0.2, "u": 0.1},
                        {"label": "else", "m": 0.2, "u": 0.869},
                    ],
                },
                {
                    "name": "phones",
                    "levels": [
                        {"label": "same", "when": [{"any_exact": ["phone", "mobile"]}], "m": 0.7, "u": 0.001},
                        {"label": "null", "missing": ["phone", "mobile"]},
                        {"label": "else", "m": 0.3, "u": 0.999},
                    ],
                },
                {
                    "name": "email_name",
                    "levels": [
                        {
                            "label": "spells",
                            "when": [{"crossed": ["email_name", "name_sorted"]}],
                            "m": 0.1,
                            "u": 0.001,
                        },
                        {"label": "else", "m": 0.9, "u": 0.999},
                    ],
                },
                {
                    "name": "amount",
                    "levels": [
                        {"label": "null", "missing": ["amount"]},
                        {
                            "label": "close",
                            "when": [{"numeric_diff": "amount", "max": 0.1, "relative": True}],
                        },
                        {"label": "near", "when": [{"numeric_diff": "amount", "max": 5}], "m": 0.3, "u": 0.1},
                        {"label": "else", "m": 0.1, "u": 0.8},
                    ],
                },
            ],
        }
    )
    return base.model_copy(
        update={
            "features": {**base.features, **extra.features},
            "comparisons": base.comparisons + extra.comparisons,
        }
    )


_words = st.sampled_from(["anna", "ana", "anne", "weber", "webber", "lee", "li", "jo", "joe", ""])
_names = st.lists(_words, min_size=0, max_size=3).map(lambda ws: " ".join(w for w in ws if w) or None)
_dates = st.sampled_from([None, "1990-01-02", "1990-02-01", "1990-01-03", "1991-01-02", "1990-13-01"])
_cities = st.sampled_from([None, "berlin", "bern", "paris"])
_emails = st.sampled_from([None, "a@x.org", "b@x.org", "anna.weber@x.org", "lee.anna@y.org"])
_phones = st.sampled_from([None, "+44 20 1234", "+44201234", "+33 1 999 999"])
_amounts = st.sampled_from([None, "100", "95", "104.5", "20", "x"])
_records = st.fixed_dictionaries(
    {"name": _names, "city": _cities, "dob": _dates, "email": _emails, "phone": _phones, "mobile": _phones}
    | {"amount": _amounts}
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_records, _records), min_size=1, max_size=SCALAR_MAX_PAIRS * 3))
def test_pair_by_pair_and_column_wise_scoring_agree_exactly(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    from flows.resolve.features import FeatureExtractor

    cfg = every_kind_config()
    ext = FeatureExtractor(cfg)
    scorer = Scorer(cfg)
    store = FeatureStore(len(cfg.features))
    ra = np.array([store.put(f"a{i}", ext(a)) for i, (a, _) in enumerate(pairs)])
    rb = np.array([store.put(f"b{i}", ext(b)) for i, (_, b) in enumerate(pairs)])
    scalar_levels, scalar_weights = scorer.score_scalar(store, ra, rb)
    vector_levels, vector_weights = scorer.score_vectorised(store, ra, rb)
    assert (scalar_levels == vector_levels).all()
    assert (scalar_weights == vector_weights).all()
