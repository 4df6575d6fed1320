import random
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from cdc.demo.noise import (
    Name,
    NoiseProfile,
    case_noise,
    edit_distance,
    email_variant,
    misread_date,
    nickname,
    noisy_name,
    typo,
    whitespace_noise,
)

names = st.text(alphabet=st.characters(categories=("Lu", "Ll")), min_size=1, max_size=20)


@given(names, st.integers(0, 2**32))
def test_typo_is_one_edit_and_keeps_the_first_letter(text: str, seed: int) -> None:
    out = typo(text, random.Random(seed))
    assert edit_distance(text, out) <= 1
    assert out[:1] == text[:1]
    if len(text) < 4:
        assert out == text


def test_edit_distance() -> None:
    assert edit_distance("Margaret", "Margaret") == 0
    assert edit_distance("Margaret", "Magraret") == 1  # neighbours swapped
    assert edit_distance("Margaret", "Margret") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3


def test_typo_usually_changes_something() -> None:
    rng = random.Random(1)
    changed = sum(typo("Margaret", rng) != "Margaret" for _ in range(200))
    assert changed > 150


@given(st.integers(0, 2**32))
def test_nickname_is_a_known_short_form(seed: int) -> None:
    rng = random.Random(seed)
    assert nickname("Robert", rng) in {"Bob", "Rob", "Bobby"}
    assert nickname("Elizabeth", rng) in {"Liz", "Beth", "Betty", "Eliza", "Lizzie"}
    assert nickname("Konstantinos", rng) == "Kostas"  # romanised name -> romanised nickname
    assert nickname("Κωνσταντίνος", rng) == "Κώστας"
    assert nickname("Zebulon", rng) == "Zebulon"


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ '-", min_size=1),
    st.integers(0, 2**32),
)
def test_case_and_whitespace_noise_keep_the_letters(text: str, seed: int) -> None:
    rng = random.Random(seed)
    assert case_noise(text, rng).casefold() == text.casefold()
    assert whitespace_noise(text, rng).split() == text.split()


def test_case_noise_on_other_scripts() -> None:
    rng = random.Random(2)
    for text in ("Müller", "Дмитрий", "Αικατερίνη"):
        assert case_noise(text, rng).casefold() == text.casefold()


def test_email_variant_is_the_same_mailbox_case_insensitively() -> None:
    rng = random.Random(3)
    for _ in range(50):
        out = email_variant("jane.doe@example.com", rng, tag="shop")
        assert out.lower().replace("+shop", "") == "jane.doe@example.com"


@given(st.dates(min_value=date(1940, 1, 1), max_value=date(2010, 12, 31)), st.integers(0, 2**32))
def test_misread_date_is_a_valid_nearby_or_swapped_date(value: date, seed: int) -> None:
    out = misread_date(value, random.Random(seed))
    assert out != value
    assert out.year == value.year
    swapped = (out.month, out.day) == (value.day, value.month)
    assert swapped or (out.month == value.month and abs(out.day - value.day) == 1)


def test_noisy_name_without_noise_is_the_identity() -> None:
    name = Name("Robert", "Smith")
    assert noisy_name(name, NoiseProfile(), random.Random(1)) == name


def test_noisy_name_full_noise_stays_recognisable() -> None:
    profile = NoiseProfile(nickname=1, typo=1, case=1, whitespace=1)
    rng = random.Random(5)
    for _ in range(100):
        out = noisy_name(Name("Elizabeth", "Thompson"), profile, rng)
        given_ok = (
            out.given.strip().casefold() in {"liz", "beth", "betty", "eliza", "lizzie"}
            or edit_distance(out.given.casefold(), "elizabeth") <= 1
            or any(
                edit_distance(out.given.casefold(), n) <= 1
                for n in ("liz", "beth", "betty", "eliza", "lizzie")
            )
        )
        assert given_ok, out
        assert edit_distance(out.family.strip().casefold(), "thompson") <= 1, out


def test_swapped_fields() -> None:
    out = noisy_name(Name("Wei", "Wang"), NoiseProfile(swap_names=1), random.Random(1))
    assert out == Name("Wang", "Wei")
    assert out.full() == "Wang Wei"
