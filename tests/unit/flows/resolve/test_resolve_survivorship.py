import datetime as dt
from pathlib import Path

import pytest

from core.errors import ConfigError
from flows.resolve.survivorship import Member, SurvivorshipConfig, build_golden, load_survivorship_config

REPO = Path(__file__).resolve().parents[4]
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def m(rid: str, source: str, days: int, **values: object) -> Member:
    return Member(rid, source, T0 + dt.timedelta(days=days), values)


def cfg(**kw: object) -> SurvivorshipConfig:
    base: dict[str, object] = {
        "entity": "customer",
        "sources": {"crm": {"trust": 0.9}, "erp": {"trust": 0.8}, "shop": {"trust": 0.3}},
    }
    base.update(kw)
    return SurvivorshipConfig.model_validate(base)


def test_source_priority_takes_the_first_source_with_a_value() -> None:
    c = cfg(attributes={"full_name": {"rule": "source_priority", "priority": ["erp", "crm", "shop"]}})
    members = [
        m("c1", "crm", 5, full_name="Anna Weber"),
        m("e1", "erp", 1, full_name=None),
        m("s1", "shop", 9, full_name="anna w."),
    ]
    g = build_golden(members, c, ["full_name"])
    assert g.values["full_name"] == "Anna Weber"
    p = g.provenance["full_name"]
    assert (p.source, p.record_id, p.rule) == ("crm", "c1", "source_priority")


def test_most_recent_takes_the_latest_change() -> None:
    c = cfg(attributes={"email": {"rule": "most_recent"}})
    members = [m("c1", "crm", 1, email="old@x.org"), m("s1", "shop", 7, email="new@x.org"), m("e1", "erp", 9)]
    g = build_golden(members, c, ["email"])
    assert g.values["email"] == "new@x.org"
    assert g.provenance["email"].source_ts == T0 + dt.timedelta(days=7)


def test_most_complete_takes_the_longest_value() -> None:
    c = cfg(attributes={"middle_name": {"rule": "most_complete"}})
    members = [m("c1", "crm", 1, middle_name="M."), m("s1", "shop", 1, middle_name="Maria")]
    assert build_golden(members, c, ["middle_name"]).values["middle_name"] == "Maria"


def test_most_frequent_weights_votes_by_trust() -> None:
    c = cfg(attributes={"phone": {"rule": "most_frequent"}})
    members = [
        m("s1", "shop", 1, phone="+491111"),
        m("s2", "shop", 2, phone="+491111"),
        m("c1", "crm", 3, phone="+492222"),
    ]
    g = build_golden(members, c, ["phone"])
    # two shop votes (0.3 each) lose to one crm vote (0.9)
    assert g.values["phone"] == "+492222"
    assert g.provenance["phone"].support == pytest.approx(0.9 / 1.5)
    members.append(m("s3", "shop", 4, phone="+491111"))
    members.append(m("s4", "shop", 5, phone=" +491111 "))
    g = build_golden(members, c, ["phone"])
    # the spellings of one value vote together; the most recent of them represents it
    assert g.values["phone"] == " +491111 " and g.provenance["phone"].record_id == "s4"


def test_a_group_wins_together() -> None:
    c = cfg(groups={"address": {"fields": ["street", "postal_code", "city"], "rule": "most_complete"}})
    members = [
        m("c1", "crm", 9, street="Hauptstr. 1", postal_code=None, city="Berlin"),
        m("e1", "erp", 1, street="Ring 5", postal_code="04109", city="Leipzig"),
    ]
    g = build_golden(members, c, ["street", "postal_code", "city"])
    assert (g.values["street"], g.values["postal_code"], g.values["city"]) == ("Ring 5", "04109", "Leipzig")
    assert {p.record_id for p in g.provenance.values()} == {"e1"}
    assert g.provenance["city"].group == "address"


def test_ties_go_to_trust_then_recency_then_record_id() -> None:
    c = cfg(attributes={"x": {"rule": "most_complete"}})
    assert build_golden([m("s1", "shop", 9, x="aa"), m("c1", "crm", 1, x="bb")], c, ["x"]).values["x"] == "bb"
    assert build_golden([m("c1", "crm", 1, x="aa"), m("c2", "crm", 2, x="bb")], c, ["x"]).values["x"] == "bb"
    assert build_golden([m("c2", "crm", 1, x="bb"), m("c1", "crm", 1, x="aa")], c, ["x"]).values["x"] == "aa"


def test_result_does_not_depend_on_member_order() -> None:
    c = cfg()
    members = [m(f"r{i}", ["crm", "erp", "shop"][i % 3], i % 4, v=str(i % 2)) for i in range(9)]
    expected = build_golden(members, c, ["v"])
    assert build_golden(list(reversed(members)), c, ["v"]) == expected


def test_missing_everywhere_leaves_the_field_out() -> None:
    g = build_golden([m("c1", "crm", 1, email="  ")], cfg(), ["email"])
    assert "email" not in g.values


def test_config_errors_and_the_shipped_config() -> None:
    with pytest.raises(ValueError, match="source_priority needs priority"):
        cfg(attributes={"x": {"rule": "source_priority"}})
    with pytest.raises(ValueError, match="has its own rule and is in group"):
        cfg(
            attributes={"city": {"rule": "most_recent"}},
            groups={"a": {"fields": ["city", "street"], "rule": "most_recent"}},
        )
    shipped = load_survivorship_config(REPO / "config/survivorship/customer.yaml")
    assert shipped.groups["address"].fields[0] == "street"


def test_unknown_key_in_file_names_the_path(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("entity: customer\nattributes:\n  email: {rule: most_recent, prio: [crm]}\n")
    with pytest.raises(ConfigError, match=r"attributes\.email\.prio: unknown key"):
        load_survivorship_config(p)
