"""Target files, the outbound mapping and its exact read-back through the inbound mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc.demo.countries import COUNTRIES
from core.errors import ConfigError
from core.golden import content_hash
from core.settings import Settings, load_settings
from flows.propagate.config import load_target, load_targets
from flows.propagate.flow import readback_for
from flows.propagate.mapping import ReadBack, country_name, family_given, outbound

SETTINGS = load_settings()
TARGETS = {c.target: c for c in load_targets(SETTINGS)}
READBACK = {name: readback_for(cfg, SETTINGS.config_dir) for name, cfg in TARGETS.items()}

PERSON: dict[str, Any] = {
    "kind": "person",
    "status": "active",
    "full_name": "Anna Maria Schmidt",
    "first_name": "Anna",
    "middle_name": "Maria",
    "last_name": "Schmidt",
    "email": "anna@example.com",
    "phone": "+4930123456",
    "street": "Hauptstr. 1",
    "postal_code": "10115",
    "city": "Berlin",
    "country": "DE",
    "currency": "EUR",
}
ORGANISATION: dict[str, Any] = {
    "kind": "organisation",
    "status": "active",
    "organisation_name": "Acme Widgets GmbH",
    "tax_id": "DE123456789",
    "phone": "+442071234567",
    "city": "London",
    "postal_code": "SW1A 1AA",
    "country": "GB",
    "currency": "GBP",
}


def test_both_targets_load() -> None:
    assert set(TARGETS) == {"crm", "erp"}
    assert TARGETS["crm"].merge_policy == "merge" and TARGETS["erp"].merge_policy == "repoint_deactivate"
    assert TARGETS["crm"].api.auth.kind == "oauth2_client_credentials"


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    text = (SETTINGS.config_dir / "targets" / "crm.yaml").read_text()
    bad = tmp_path / "crm.yaml"
    bad.write_text(
        text.replace("batch_size: 100", "batch_size: 100\nrate_limit_x: 1").replace(
            "  resource: accounts", "  resource: accounts\n  secret: oops"
        )
    )
    with pytest.raises(ConfigError) as exc:
        load_target(bad)
    msg = str(exc.value)
    assert "rate_limit_x: unknown key" in msg and "api.secret: unknown key" in msg


def test_file_name_must_match_target(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text((SETTINGS.config_dir / "targets" / "crm.yaml").read_text())
    with pytest.raises(ConfigError, match="differs from the file name"):
        load_target(other)


def test_secrets_are_env_names_only() -> None:
    for cfg in TARGETS.values():
        assert cfg.api.auth.secret_env.isupper()
        dumped = cfg.model_dump_json()
        assert "secret_env" in dumped and "password" not in dumped


def test_outbound_crm_person_and_organisation() -> None:
    crm = TARGETS["crm"]
    assert outbound(crm, PERSON) == {
        "account_type": "Person",
        "name": "Anna Maria Schmidt",
        "phone": "+4930123456",
        "billing_street": "Hauptstr. 1",
        "billing_city": "Berlin",
        "billing_postal_code": "10115",
        "billing_country": "Germany",
        "status": "Active",
        "currency_iso_code": "EUR",
    }
    org = outbound(crm, {**ORGANISATION, "status": "past_due"})
    assert org["name"] == "Acme Widgets GmbH" and org["account_type"] == "Organization"
    assert org["status"] == "Inactive"  # map default "*"
    assert org["billing_street"] is None  # optional fields are cleared, not left stale


def test_outbound_erp_person_name_and_required_fields() -> None:
    erp = TARGETS["erp"]
    assert outbound(erp, PERSON)["name1"] == "Schmidt, Anna Maria"
    no_currency = outbound(erp, {**PERSON, "currency": None})
    assert "currency" not in no_currency  # a required field is never sent as null


def test_helpers() -> None:
    assert family_given("Lee", "Ann", None) == "Lee, Ann"
    assert family_given(None, "Ann", None) is None
    assert country_name("DE") == "Germany" and country_name("ZZ") == "ZZ"


@pytest.mark.parametrize("target", ["crm", "erp"])
@pytest.mark.parametrize("values", [PERSON, ORGANISATION], ids=["person", "organisation"])
def test_round_trip_through_the_inbound_mapping(target: str, values: dict[str, Any]) -> None:
    cfg, rb = TARGETS[target], READBACK[target]
    back = rb.canonical([outbound(cfg, values)])[0]
    assert back is not None
    expected = {k: values.get(k) for k in rb.echo_fields}
    got = {k: back.get(k) for k in rb.echo_fields}
    if values["kind"] == "organisation":
        # Only the person's name parts are derived; an organisation has none on either side.
        for k in ("full_name", "first_name", "middle_name", "last_name"):
            expected[k] = got[k]
    assert got == expected


@pytest.mark.parametrize("iso2", sorted(COUNTRIES))
def test_every_demo_country_reads_back(iso2: str) -> None:
    rb = READBACK["crm"]
    back = rb.canonical([outbound(TARGETS["crm"], {**PERSON, "country": iso2, "phone": None})])[0]
    assert back is not None and back["country"] == iso2


def test_echo_fields_are_exactly_those_derived_from_pushed_columns() -> None:
    crm, erp = READBACK["crm"].echo_fields, READBACK["erp"].echo_fields
    assert "created_at" not in crm and "updated_at" not in crm and "job_title" not in crm
    assert {"kind", "status", "full_name", "country", "phone", "currency"} <= set(crm)
    assert {"email", "tax_id", "kind"} <= set(erp)


def test_fingerprint_changes_with_any_echo_field_only() -> None:
    rb: ReadBack = READBACK["erp"]
    base = outbound(TARGETS["erp"], PERSON)
    same = rb.fingerprint({**base, "payment_terms": "NT60", "long_text": "note"})  # unmapped columns
    assert rb.fingerprint(base) == same
    assert rb.fingerprint({**base, "city": "Hamburg"}) != rb.fingerprint(base)
    mapped = rb.canonical([base])[0]
    assert mapped is not None and rb.fingerprint(base) == content_hash(mapped, rb.echo_fields)


def test_settings_fallbacks() -> None:
    crm = TARGETS["crm"]
    settings: Settings = SETTINGS
    assert crm.base_url(settings) == settings.demo_apis.crm.url
    assert crm.client_id(settings) == settings.demo_apis.crm.client_id
    assert TARGETS["erp"].client_id(settings) == ""


def test_cases_fall_back_when_a_case_has_no_value() -> None:
    crm = TARGETS["crm"]
    parts = {**PERSON, "full_name": None}
    assert outbound(crm, parts)["name"] == "Anna Maria Schmidt"  # joined from the parts
    assert outbound(crm, {**ORGANISATION, "organisation_name": None, "full_name": "Acme"})["name"] == "Acme"
