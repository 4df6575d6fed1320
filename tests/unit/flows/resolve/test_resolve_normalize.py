import pytest

from flows.resolve.normalize import chain, parse_op


@pytest.mark.parametrize(
    ("ops", "value", "expected"),
    [
        (["ascii", "lower"], "Ærø Müller", "aero muller"),
        (["strip"], "  a \t b  ", "a b"),
        (["letters"], "o'neil-smith 3rd", "o neil smith rd"),
        (["digits"], "+44 (0)20 7946-0958", "4402079460958"),
        (["phone"], "+44 20 7946 0958", "+442079460958"),
        (["phone"], "12-34", None),
        (["email"], " John.Doe+news@GoogleMail.com ", "johndoe@gmail.com"),
        (["email"], "Jane.Doe@Example.org", "jane.doe@example.org"),
        (["email"], "not an email", None),
        (["email_domain"], "a@B.com", "b.com"),
        (["date"], "1990-2-3", "1990-02-03"),
        (["date"], "19900203", "1990-02-03"),
        (["date"], "1790-02-82", None),
        (["year"], "1862-01-01", "1862"),
        (["lower", "first_token"], "SY5 7NT", "sy5"),
        (["lower", "drop_last:2"], "sy5 7nt", "sy5 7"),
        (["lower", "first_token", "leading_letters"], "EC1A 1BB", "ec"),
        (["prefix:3"], "william", "wil"),
        (["lower", "soundex"], "Watts", "W320"),
        (["lower", "metaphone"], "Whitehead", "WTHT"),
        (["sort_tokens"], "watts william", "watts william"),
        (["sort_tokens"], "william watts", "watts william"),
        (["last_token"], "sir william watts", "watts"),
        (["strip"], "   ", None),
        # translit: one written word stays one word; an unspaced Han name splits after the family name
        (["translit", "lower"], "Haiyan Lin", "haiyan lin"),
        (["translit", "lower"], "林海燕", "lin haiyan"),
        (["translit", "lower"], "海燕 林", "haiyan lin"),
        (["translit", "lower", "sort_tokens"], "孙涛", "sun tao"),
        (["translit", "lower", "sort_tokens"], "涛 孙", "sun tao"),
        (["translit", "lower"], "Ślebioda Zoë", "slebioda zoe"),
        (["translit", "lower", "letters"], "Jean-Luc O'Brien", "jean luc o brien"),
        # ascii keeps one syllable per Han character: the order-free form of a native-script name
        (["ascii", "lower", "letters", "sort_tokens"], "井上零", "jing ling shang"),
        (["ascii", "lower", "letters", "sort_tokens"], "零 井上", "jing ling shang"),
        (["email_local", "letters", "sort_tokens"], "Kamper.Mette+shop@web.de", "kamper mette"),
    ],
)
def test_operations(ops: list[str], value: str, expected: str | None) -> None:
    assert chain(ops)(value) == expected


def test_none_stays_none() -> None:
    assert chain(["lower", "soundex"])(None) is None


def test_empty_result_is_no_value() -> None:
    assert chain(["digits"])("abc") is None
    assert chain(["lower", "leading_letters"])("123") is None


@pytest.mark.parametrize("spec", ["lowercase", "prefix", "prefix:0", "prefix:x", "lower:2"])
def test_unknown_operation_is_an_error(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown normalisation"):
        parse_op(spec)
