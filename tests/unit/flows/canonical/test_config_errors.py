"""Load-time validation: every structural mistake is a ConfigError naming the file and the key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from flows.canonical import compile_mappings
from tests.unit.flows.canonical.conftest import CONFIG, WriteMapping, write_yaml

HEAD = """
version: 1
entity: customer
source:
  system: crm
  schema: public
  table: people
  key: [id]
  columns:
    id: int
    name: text
    status: text
    born: date
    country: text
fields:
  kind: {const: person}
  status: {from: status, steps: [{enum: {A: active}}]}
"""


def error_of(write_mapping: WriteMapping, extra: str, *, head: str = HEAD, table: str = "people") -> str:
    with pytest.raises(ConfigError) as info:
        write_mapping("crm", table, head + extra)
    return str(info.value)


def assert_located(message: str, key_path: str, words: str) -> None:
    """The message names the file, the key path and says what is wrong."""
    line = next((ln for ln in message.splitlines() if f": {key_path}:" in ln), None)
    assert line is not None, f"no error at {key_path!r} in:\n{message}"
    assert re.search(r"crm/people\.yaml: ", line), line
    assert words in line, line


def test_the_demo_mappings_compile() -> None:
    mappings = compile_mappings(CONFIG)
    assert len(mappings) == 16
    assert mappings.for_table("crm", "public", "accounts") is not None
    assert mappings.for_table("crm", "public", "opportunities") is None
    assert set(mappings.entities()) == {
        "customer",
        "customer_address",
        "product",
        "order",
        "order_line",
        "invoice",
        "invoice_line",
        "payment",
    }


def test_unknown_transform(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  full_name: {from: name, steps: [text, lowr]}\n")
    assert_located(msg, "fields.full_name.steps.1", "unknown transform 'lowr'")


def test_unknown_transform_argument(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  birth_date: {from: name, steps: [{date: {fromat: mdy}}]}\n")
    assert_located(msg, "fields.birth_date.steps.0.date.fromat", "unknown argument")


def test_unknown_canonical_field(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  nickname: {from: name}\n")
    assert_located(msg, "fields.nickname", "customer has no field 'nickname'")


def test_unknown_source_column(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  full_name: {from: nmae}\n")
    assert_located(msg, "fields.full_name.from", "source column 'nmae' is not declared")


def test_missing_required_field(write_mapping: WriteMapping) -> None:
    head = HEAD.replace("  status: {from: status, steps: [{enum: {A: active}}]}\n", "")
    msg = error_of(write_mapping, "  full_name: {from: name}\n", head=head)
    assert_located(msg, "fields", "required customer field 'status' has no mapping")


def test_key_must_be_declared(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "", head=HEAD.replace("key: [id]", "key: [id, region]"))
    assert_located(msg, "source.key.1", "key column 'region' is not declared")


def test_key_needs_at_least_one_column(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "", head=HEAD.replace("key: [id]", "key: []"))
    assert_located(msg, "source.key", "at least 1 item")


def test_hook_that_does_not_import(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  full_name: {from: name, hook: no_such_module.anywhere:fn}\n")
    assert_located(msg, "fields.full_name.hook", "does not import")


def test_hook_without_the_function(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  full_name: {from: name, hook: flows.canonical.hooks:nope}\n")
    assert_located(msg, "fields.full_name.hook", "has no function 'nope'")


def test_hook_with_the_wrong_arity(write_mapping: WriteMapping) -> None:
    hook = "tests.unit.flows.canonical.hooks_for_tests:two_args"
    msg = error_of(write_mapping, f"  full_name: {{from: name, hook: '{hook}'}}\n")
    assert_located(msg, "fields.full_name.hook", "cannot take 1 argument")


def test_step_fed_the_wrong_kind(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  full_name: {from: born, steps: [lower]}\n")
    assert_located(msg, "fields.full_name.steps.0", "'lower' takes text, got date")


def test_pipeline_must_end_in_the_fields_type(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  birth_date: {from: name, steps: [trim]}\n")
    assert_located(msg, "fields.birth_date", "produces text, but customer.birth_date is date")


def test_enum_values_must_be_allowed(write_mapping: WriteMapping) -> None:
    head = HEAD.replace("{enum: {A: active}}", "{enum: {A: active, X: gone}}")
    msg = error_of(write_mapping, "", head=head)
    assert_located(msg, "fields.status", "'gone' not allowed for status")


def test_several_columns_need_a_combining_step(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  full_name: {from: [name, country], steps: [trim]}\n")
    assert_located(msg, "fields.full_name.steps.0", "combine them first")


def test_reference_to_a_field_the_mapping_does_not_fill(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  phone: {from: name, steps: [{phone: {region_from: country}}]}\n")
    assert_located(msg, "fields.phone.steps.0", "refers to field 'country'")


def test_dependency_cycle(write_mapping: WriteMapping) -> None:
    extra = "  full_name: {from: $first_name}\n  first_name: {from: $full_name}\n"
    msg = error_of(write_mapping, extra)
    assert "dependency cycle" in msg and "full_name" in msg


def test_required_fields_cannot_be_conditional(write_mapping: WriteMapping) -> None:
    head = HEAD.replace(
        "  kind: {const: person}\n", "  kind: {const: person, when: {column: name, is_null: false}}\n"
    )
    msg = error_of(write_mapping, "", head=head)
    assert_located(msg, "fields.kind.when", "'kind' is required: it cannot be conditional")


def test_condition_on_an_unknown_column(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "  full_name: {from: name, when: {column: typo, equals: x}}\n")
    assert_located(msg, "fields.full_name.when.column", "source column 'typo' is not declared")


def test_money_needs_one_source_of_minor_digits(write_mapping: WriteMapping) -> None:
    head = HEAD.replace("entity: customer", "entity: product").replace(
        "  kind: {const: person}\n  status: {from: status, steps: [{enum: {A: active}}]}\n",
        "  sku: {from: name}\n  name: {from: name}\n  status: {const: active}\n",
    )
    msg = error_of(write_mapping, "  price_minor: {from: name, steps: [{money: {unit: major}}]}\n", head=head)
    assert_located(
        msg, "fields.price_minor.steps.0.money", "exactly one of currency, currency_from, minor_digits"
    )


def test_unknown_top_level_key_and_bad_timezone(write_mapping: WriteMapping) -> None:
    msg = error_of(
        write_mapping,
        "colour: blue\n",
        head=HEAD.replace("  key: [id]", "  key: [id]\n  timezone: Mars/Base"),
    )
    assert "colour: unknown key" in msg
    with pytest.raises(ConfigError, match=r"source.timezone: unknown time zone 'Mars/Base'"):
        write_mapping("crm", "people", HEAD.replace("  key: [id]", "  key: [id]\n  timezone: Mars/Base"))


def test_yaml_booleans_as_column_names_are_explained(write_mapping: WriteMapping) -> None:
    msg = error_of(
        write_mapping, "", head=HEAD.replace("    country: text\n", "    country: text\n    on: bool\n")
    )
    assert "quote them" in msg


def test_file_must_sit_under_its_system_and_be_named_after_its_table(write_mapping: WriteMapping) -> None:
    msg = error_of(write_mapping, "", table="persons")
    assert "crm/persons.yaml: source.table: 'people' does not match the file name 'persons'" in msg


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    root = tmp_path / "mappings"
    write_yaml(
        root, "crm", "people", HEAD + "  nickname: {from: name}\n  full_name: {from: name, steps: [lowr]}\n"
    )
    write_yaml(root, "shop", "people", HEAD.replace("system: crm", "system: shop"))
    with pytest.raises(ConfigError) as info:
        compile_mappings(tmp_path)  # the config folder is accepted as well as config/mappings
    text = str(info.value)
    assert "fields.nickname" in text and "fields.full_name.steps.0" in text
    assert "shop/people.yaml" not in text  # that one is fine


def test_missing_mappings_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mappings folder not found"):
        compile_mappings(tmp_path / "nope")
