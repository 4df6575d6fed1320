"""A small matching config with fixed weights, shared by the resolver unit tests."""

from __future__ import annotations

from typing import Any

from flows.resolve.config import MatchingConfig


def person_config(**overrides: Any) -> MatchingConfig:
    """Persons with a name, a city, a date of birth and an email; weights chosen by hand."""
    data: dict[str, Any] = {
        "entity": "person",
        "features": {
            "name": {"source": "name", "ops": ["ascii", "lower", "letters"]},
            "name_sx": {"source": "name", "ops": ["ascii", "lower", "last_token", "soundex"]},
            "city": {"source": "city", "ops": ["lower", "strip"]},
            "dob": {"source": "dob", "ops": ["date"]},
            "email": {"source": "email", "ops": ["email"]},
        },
        "blocking": {
            "max_block_size": 50,
            "keys": [
                {"name": "email", "features": ["email"]},
                {"name": "name_city", "features": ["name_sx", "city"]},
                {"name": "dob", "features": ["dob"]},
            ],
        },
        "comparisons": [
            {
                "name": "name",
                "levels": [
                    {"label": "null", "missing": ["name"]},
                    {"label": "exact", "when": [{"exact": "name"}], "m": 0.7, "u": 0.001},
                    {"label": "jw_0.9", "when": [{"jaro_winkler": "name", "min": 0.9}], "m": 0.2, "u": 0.005},
                    {"label": "else", "m": 0.1, "u": 0.994},
                ],
            },
            {
                "name": "dob",
                "levels": [
                    {"label": "null", "missing": ["dob"]},
                    {"label": "exact", "when": [{"exact": "dob"}], "m": 0.8, "u": 0.001},
                    {"label": "within_1y", "when": [{"date_diff": "dob", "max": 366}], "m": 0.1, "u": 0.02},
                    {"label": "else", "m": 0.1, "u": 0.979},
                ],
            },
            {
                "name": "email",
                "levels": [
                    {"label": "null", "missing": ["email"]},
                    {"label": "exact", "when": [{"exact": "email"}], "m": 0.8, "u": 0.0001},
                    {"label": "else", "m": 0.2, "u": 0.9999},
                ],
            },
            {
                "name": "city",
                "levels": [
                    {"label": "null", "missing": ["city"]},
                    {"label": "exact", "when": [{"exact": "city"}], "m": 0.9, "u": 0.05},
                    {"label": "else", "m": 0.1, "u": 0.95},
                ],
            },
        ],
        "prior": 0.001,
        "clustering": {
            "threshold": 0.9,
            "edge_floor": 0.5,
            "min_cluster_support": 0.0,
            "missing_weight": -2.0,
        },
    }
    data.update(overrides)
    return MatchingConfig.model_validate(data)


def person(
    name: str | None, city: str | None = None, dob: str | None = None, email: str | None = None
) -> dict[str, Any]:
    """A record for :func:`person_config`."""
    return {"name": name, "city": city, "dob": dob, "email": email}
