import pytest

from cdc.demo.names import fold_ascii, formal_of, is_latin, nicknames_for, transliterate


@pytest.mark.parametrize(
    ("native", "latin"),
    [
        ("Ζαφείρης", "Zafeiris"),
        ("Αικατερίνη", "Aikaterini"),
        ("Γεώργιος Παπαδόπουλος", "Georgios Papadopoulos"),
        ("ΟΥΡΑΝΙΑ", "OURANIA"),
        ("Александр", "Aleksandr"),
        ("Юлия Щербакова", "Yuliya Shcherbakova"),
        ("Жуков", "Zhukov"),
    ],
)
def test_transliterate_greek_and_cyrillic(native: str, latin: str) -> None:
    assert transliterate(native) == latin


def test_transliterate_leaves_other_scripts_alone() -> None:
    assert transliterate("Müller") == "Müller"
    assert transliterate("王伟") == "王伟"


@pytest.mark.parametrize(
    ("text", "plain", "german"),
    [
        ("Müller", "Muller", "Mueller"),
        ("Großmann", "Grossmann", "Grossmann"),
        ("Łukasz Żółć", "Lukasz Zolc", "Lukasz Zolc"),
        ("François", "Francois", "Francois"),
        ("Øystein", "Oystein", "Oystein"),
        ("Σωτηράλης", "Sotiralis", "Sotiralis"),
    ],
)
def test_fold_ascii(text: str, plain: str, german: str) -> None:
    assert fold_ascii(text) == plain
    assert fold_ascii(text, german=True) == german
    assert fold_ascii(text).isascii()


def test_nicknames_both_ways() -> None:
    assert "Bob" in nicknames_for("Robert")
    assert "Liz" in nicknames_for("elizabeth")  # case-insensitive
    assert "Robert" in formal_of("bob")
    assert "Elizabeth" in formal_of("Liz")
    assert nicknames_for("Zebulon") == ()
    # Accents optional and scripts bridged: the romanised formal name finds the Greek nickname.
    assert "Pepe" in nicknames_for("Jose")
    assert "Κώστας" in nicknames_for("Konstantinos")


def test_is_latin() -> None:
    assert is_latin("Émile O'Neil-Smith")
    assert not is_latin("Дима")
    assert not is_latin("山田")
