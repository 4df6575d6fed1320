"""Feature extraction from several source fields, and the account "family" it makes possible."""

from __future__ import annotations

from typing import Any

import pytest

from flows.resolve.config import MatchingConfig
from flows.resolve.features import FeatureExtractor
from flows.resolve.resolver import Resolver


def extractor(join: str) -> FeatureExtractor:
    cfg = MatchingConfig.model_validate(
        {
            "entity": "t",
            "features": {"f": {"source": ["a", "b"], "join": join, "ops": ["lower"]}},
            "blocking": {"keys": [{"name": "k", "features": ["f"]}]},
            "comparisons": [
                {
                    "name": "c",
                    "levels": [
                        {"label": "same", "when": [{"exact": "f"}], "m": 0.9, "u": 0.1},
                        {"label": "else", "m": 0.1, "u": 0.9},
                    ],
                }
            ],
        }
    )
    return FeatureExtractor(cfg)


@pytest.mark.parametrize(
    ("join", "record", "expected"),
    [
        ("all", {"a": "X", "b": "Y"}, "x y"),
        ("all", {"a": "X", "b": None}, None),
        ("any", {"a": None, "b": "Y"}, "y"),
        ("any", {"a": "X", "b": "Y"}, "x y"),
        ("first", {"a": "X", "b": "Y"}, "x"),
        ("first", {"a": None, "b": "Y"}, "y"),
        ("first", {"a": " ", "b": None}, None),
    ],
)
def test_join_modes(join: str, record: dict[str, Any], expected: str | None) -> None:
    assert extractor(join)(record) == (expected,)


def family_config() -> MatchingConfig:
    """A contact meets its account: the account family blocks them, ``crossed`` compares the
    contact's reference with the account's own key (system-qualified, so keys of two systems never
    meet), and the kind keeps an organisation's employees apart from the organisation."""
    return MatchingConfig.model_validate(
        {
            "entity": "customer",
            "features": {
                "kind": {"source": "kind"},
                "system": {"source": "source_system"},
                "own_ref": {"source": ["source_system", "source_key"]},
                "parent": {"source": ["source_system", "parent_ref"]},
                "family": {"source": ["parent_ref", "source_key"], "join": "first"},
            },
            "blocking": {"keys": [{"name": "family", "features": ["system", "family"]}]},
            "comparisons": [
                {
                    "name": "kind",
                    "levels": [
                        {"label": "same", "when": [{"exact": "kind"}], "m": 0.99999, "u": 0.8},
                        {"label": "different", "m": 0.00001, "u": 0.2},
                    ],
                },
                {
                    "name": "parent",
                    "levels": [
                        {
                            "label": "is_parent",
                            "when": [{"crossed": ["parent", "own_ref"]}],
                            "m": 0.9,
                            "u": 1e-6,
                        },
                        {"label": "else", "m": 0.1, "u": 0.999999},
                    ],
                },
            ],
            "prior": 0.01,
        }
    )


def test_a_contact_joins_its_person_account_but_not_a_sibling_or_another_system() -> None:
    r = Resolver(family_config())
    r.upsert("crm:public.accounts:acc-1", {"kind": "person", "source_system": "crm", "source_key": "acc-1"})
    r.upsert(
        "crm:public.contacts:7",
        {"kind": "person", "source_system": "crm", "source_key": "7", "parent_ref": "acc-1"},
    )
    # Another contact of the same account is not the contact (a sibling), and a key "acc-1" in
    # another system is another record.
    r.upsert(
        "crm:public.contacts:8",
        {"kind": "person", "source_system": "crm", "source_key": "8", "parent_ref": "acc-1"},
    )
    r.upsert("erp:erp.debtors:acc-1", {"kind": "person", "source_system": "erp", "source_key": "acc-1"})
    assert r.golden_id("crm:public.contacts:7") == r.golden_id("crm:public.accounts:acc-1")
    assert r.golden_id("crm:public.contacts:8") == r.golden_id("crm:public.accounts:acc-1")
    assert r.explain_pair("crm:public.contacts:7", "crm:public.contacts:8").comparisons[1].level == "else"
    assert r.golden_id("erp:erp.debtors:acc-1") != r.golden_id("crm:public.accounts:acc-1")
