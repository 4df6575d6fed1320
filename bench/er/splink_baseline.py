"""The batch baseline: Splink 5 (DuckDB) with its published demo settings for each data set.

Historical persons: Splink's ``deduplicate_50k_synthetic`` example (forename/surname, date of birth,
postcode, birth place and occupation with term frequencies; EM sessions on first name + surname and
on date of birth). FEBRL: Splink's ``febrl3`` example. The demo's canonical customers have no
published example: :func:`_customers` is Splink's comparison library applied to the same canonical
fields our config compares, with blocking rules like ours and EM sessions on email and date of birth
(the sessions of ``config/matching/customer.yaml``). Both estimate u from random pairs with a
fixed seed, so runs repeat. Clusters are connected components at a match probability threshold
(0.95, the demo's choice); the best threshold in hindsight is reported too, to be fair to Splink.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import polars as pl

from bench.er.metrics import pairwise

THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)
DEFAULT_THRESHOLD = 0.95


def _historical(db_api: Any, df: pd.DataFrame) -> Any:
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on

    blocking = [
        block_on("substr(first_name,1,3)", "substr(surname,1,4)"),
        block_on("surname", "dob"),
        block_on("first_name", "dob"),
        block_on("postcode_fake", "first_name"),
        block_on("postcode_fake", "surname"),
        block_on("dob", "birth_place"),
        block_on("substr(postcode_fake,1,3)", "dob"),
        block_on("substr(postcode_fake,1,3)", "first_name"),
        block_on("substr(postcode_fake,1,3)", "surname"),
        block_on("substr(first_name,1,2)", "substr(surname,1,2)", "substr(dob,1,4)"),
    ]
    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=[
            cl.ForenameSurnameComparison(
                "first_name", "surname", forename_surname_concat_col_name="first_name_surname_concat"
            ),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.PostcodeComparison("postcode_fake"),
            cl.ExactMatch("birth_place").configure(term_frequency_adjustments=True),
            cl.ExactMatch("occupation").configure(term_frequency_adjustments=True),
        ],
    )
    df = df.copy()
    df["first_name_surname_concat"] = df["first_name"] + " " + df["surname"]
    linker = Linker(db_api.register(df), settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [
            block_on("first_name", "surname", "dob"),
            block_on("substr(first_name,1,2)", "surname", "substr(postcode_fake,1,2)"),
            block_on("dob", "postcode_fake"),
        ],
        recall=0.6,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname"), estimate_without_term_frequencies=True
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("dob"), estimate_without_term_frequencies=True
    )
    return linker


def _febrl(db_api: Any, df: pd.DataFrame) -> Any:
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on

    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[
            block_on("soc_sec_id"),
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("postcode"),
        ],
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
    )
    linker = Linker(db_api.register(df), settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [
            block_on("soc_sec_id"),
            block_on("given_name", "surname", "date_of_birth"),
            "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
        ],
        recall=0.9,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    return linker


def _customers(db_api: Any, df: pd.DataFrame) -> Any:
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on

    df = df.copy()
    # Splink's name comparisons work on one column: a person's full name or an organisation's name.
    df["name"] = df["full_name"].where(df["full_name"].notna(), df["organisation_name"])
    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("lower(name)"),
            block_on("birth_date", "postal_code"),
            block_on("postal_code", "street"),
        ],
        comparisons=[
            cl.ExactMatch("kind"),
            cl.NameComparison("name").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.ExactMatch("postal_code").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("street", [0.88]),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.ExactMatch("country"),
        ],
    )
    linker = Linker(db_api.register(df), settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("name", "birth_date")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=3)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("email"), estimate_without_term_frequencies=True
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("birth_date"), estimate_without_term_frequencies=True
    )
    return linker


def run(kind: str, data: pl.DataFrame, truth: dict[str, str]) -> dict[str, Any]:
    """Train, predict and cluster with Splink; pairwise accuracy per threshold."""
    from splink import DuckDBAPI

    t0 = time.perf_counter()
    frame = data.drop("label")
    frame = frame.drop("id") if "unique_id" in frame.columns else frame.rename({"id": "unique_id"})
    df = frame.to_pandas()
    df = df.astype(object).where(df.notna(), None)
    db_api = DuckDBAPI()
    builders = {"historical_50k": _historical, "febrl": _febrl, "demo": _customers}
    linker = builders[kind](db_api, df)
    predictions = linker.inference.predict(threshold_match_probability=min(THRESHOLDS))
    per_threshold = {}
    for th in THRESHOLDS:
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=th
        ).as_pandas_dataframe()
        assigned = dict(
            zip(clusters["unique_id"].astype(str), clusters["cluster_id"].astype(str), strict=True)
        )
        m = pairwise(truth, assigned)
        sizes = clusters["cluster_id"].value_counts()
        per_threshold[th] = {**m, "largest_cluster": int(sizes.max())}
    seconds = time.perf_counter() - t0
    best_th = max(per_threshold, key=lambda t: per_threshold[t]["f1"])
    chosen = per_threshold[DEFAULT_THRESHOLD]
    return {
        "splink_f1_pairwise": chosen["f1"],
        "splink_precision": chosen["precision"],
        "splink_recall": chosen["recall"],
        "splink_largest_cluster": chosen["largest_cluster"],
        "splink_threshold": DEFAULT_THRESHOLD,
        "splink_f1_pairwise_best": per_threshold[best_th]["f1"],
        "splink_best_threshold": best_th,
        "splink_seconds": seconds,
        "splink_f1_by_threshold": {str(t): round(v["f1"], 4) for t, v in per_threshold.items()},
    }
