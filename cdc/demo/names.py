"""Name data and script conversion: transliteration, ASCII folding, romanised name pairs, nicknames.

The demo needs the same person written in different scripts (Κωνσταντίνος / Konstantinos, 王伟 / Wang
Wei) and under different given names (Robert / Bob). Faker draws names but cannot relate them, so the
relations live here as small tables; no network or extra dependency needed.
"""

from __future__ import annotations

import unicodedata

# Greek, close to ELOT 743 / passport practice. Digraphs first: they read as one sound.
_GREEK_DIGRAPHS = {
    "ου": "ou",
    "αι": "ai",
    "ει": "ei",
    "οι": "oi",
    "αυ": "av",
    "ευ": "ev",
    "μπ": "mp",
    "ντ": "nt",
    "γκ": "gk",
    "γγ": "ng",
}
_GREEK = {
    "α": "a",
    "β": "v",
    "γ": "g",
    "δ": "d",
    "ε": "e",
    "ζ": "z",
    "η": "i",
    "θ": "th",
    "ι": "i",
    "κ": "k",
    "λ": "l",
    "μ": "m",
    "ν": "n",
    "ξ": "x",
    "ο": "o",
    "π": "p",
    "ρ": "r",
    "σ": "s",
    "ς": "s",
    "τ": "t",
    "υ": "y",
    "φ": "f",
    "χ": "ch",
    "ψ": "ps",
    "ω": "o",
}
# Russian, the popular passport-style romanisation (Aleksandr, Yuliya, Dmitriy -> kept simple).
_CYRILLIC = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "д": "d",
    "е": "e",
    "ё": "e",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "й": "y",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ф": "f",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ъ": "",
    "ы": "y",
    "ь": "",
    "э": "e",
    "ю": "yu",
    "я": "ya",
}
# Latin letters NFKD does not decompose.
_LATIN_SPECIAL = {
    "ß": "ss",
    "ø": "o",
    "Ø": "O",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "þ": "th",
    "Þ": "Th",
    "ı": "i",
}
_GERMAN = {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _match_case(source: str, latin: str) -> str:
    if not latin or not source[0].isupper():
        return latin
    # A whole upper-case digraph stays upper case (ΟΥ -> OU); otherwise only the first letter (Ου -> Ou).
    return latin.upper() if len(source) > 1 and source.isupper() else latin[0].upper() + latin[1:]


def _convert(text: str, single: dict[str, str], digraphs: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if len(pair) == 2 and pair.lower() in digraphs:
            out.append(_match_case(pair, digraphs[pair.lower()]))
            i += 2
            continue
        ch = text[i]
        low = ch.lower()
        out.append(_match_case(ch, single[low]) if low in single else ch)
        i += 1
    return "".join(out)


def transliterate(text: str) -> str:
    """Greek and Cyrillic to Latin letters; other text is returned unchanged (accents kept)."""
    if not any("\u0370" <= c <= "\u04ff" for c in text):
        return text
    # Greek accents (tonos) carry no letter identity: drop them before the table lookup.
    return _convert(_strip_marks(text), {**_GREEK, **_CYRILLIC}, _GREEK_DIGRAPHS)


def fold_ascii(text: str, *, german: bool = False) -> str:
    """Latin text to plain ASCII the way legacy systems store it (Müller -> Muller, or Mueller)."""
    text = transliterate(text)
    if german:
        text = "".join(_GERMAN.get(c, c) for c in text)
    text = "".join(_LATIN_SPECIAL.get(c, c) for c in text)
    return _strip_marks(text).encode("ascii", "ignore").decode("ascii")


def is_latin(text: str) -> bool:
    """True when every letter in ``text`` is a Latin letter (accents allowed)."""
    return all(not c.isalpha() or "LATIN" in unicodedata.name(c, "") for c in text)


# Chinese: (characters, pinyin, gender or '' for surnames). Faker's zh_CN romanised names are drawn
# independently of its characters, so we keep our own aligned pairs.
ZH_FAMILY: tuple[tuple[str, str], ...] = (
    ("王", "Wang"),
    ("李", "Li"),
    ("张", "Zhang"),
    ("刘", "Liu"),
    ("陈", "Chen"),
    ("杨", "Yang"),
    ("黄", "Huang"),
    ("赵", "Zhao"),
    ("吴", "Wu"),
    ("周", "Zhou"),
    ("徐", "Xu"),
    ("孙", "Sun"),
    ("马", "Ma"),
    ("朱", "Zhu"),
    ("胡", "Hu"),
    ("郭", "Guo"),
    ("何", "He"),
    ("林", "Lin"),
    ("高", "Gao"),
    ("罗", "Luo"),
)
ZH_GIVEN: tuple[tuple[str, str, str], ...] = (
    ("伟", "Wei", "M"),
    ("强", "Qiang", "M"),
    ("磊", "Lei", "M"),
    ("军", "Jun", "M"),
    ("勇", "Yong", "M"),
    ("杰", "Jie", "M"),
    ("涛", "Tao", "M"),
    ("明", "Ming", "M"),
    ("超", "Chao", "M"),
    ("建华", "Jianhua", "M"),
    ("志强", "Zhiqiang", "M"),
    ("晓明", "Xiaoming", "M"),
    ("俊杰", "Junjie", "M"),
    ("芳", "Fang", "F"),
    ("娜", "Na", "F"),
    ("敏", "Min", "F"),
    ("静", "Jing", "F"),
    ("丽", "Li", "F"),
    ("艳", "Yan", "F"),
    ("娟", "Juan", "F"),
    ("霞", "Xia", "F"),
    ("秀英", "Xiuying", "F"),
    ("海燕", "Haiyan", "F"),
    ("丽娟", "Lijuan", "F"),
)
# Arabic: (script, usual Latin spelling, other spellings seen in the wild).
AR_GIVEN: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("محمد", "Mohammed", "M", ("Muhammad", "Mohamed", "Mohammad")),
    ("أحمد", "Ahmed", "M", ("Ahmad",)),
    ("علي", "Ali", "M", ()),
    ("عمر", "Omar", "M", ("Umar",)),
    ("خالد", "Khaled", "M", ("Khalid",)),
    ("يوسف", "Youssef", "M", ("Yusuf", "Yousef")),
    ("حسن", "Hassan", "M", ("Hasan",)),
    ("إبراهيم", "Ibrahim", "M", ("Ebrahim",)),
    ("سارة", "Sara", "F", ("Sarah",)),
    ("فاطمة", "Fatima", "F", ("Fatma", "Fatemah")),
    ("مريم", "Maryam", "F", ("Mariam",)),
    ("ليلى", "Layla", "F", ("Leila", "Laila")),
    ("نور", "Nour", "F", ("Noor", "Nur")),
    ("عائشة", "Aisha", "F", ("Aysha", "Aishah")),
    ("هدى", "Huda", "F", ("Hoda",)),
)
AR_FAMILY: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("الهاشمي", "Al-Hashimi", ("Al Hashimi", "Alhashimi", "El-Hashemi")),
    ("المنصوري", "Al Mansouri", ("Al-Mansoori", "Almansouri")),
    ("الشامسي", "Al Shamsi", ("Al-Shamsi", "Alshamsi")),
    ("النعيمي", "Al Nuaimi", ("Al-Nuaimi", "Alnuaimi")),
    ("حداد", "Haddad", ("Hadad",)),
    ("خوري", "Khoury", ("Khouri", "Khuri")),
    ("منصور", "Mansour", ("Mansur",)),
    ("سليمان", "Suleiman", ("Sulaiman", "Soliman")),
    ("عبدالله", "Abdullah", ("Abdallah", "Abdulla")),
    ("الفلاسي", "Al Falasi", ("Al-Falasi",)),
    ("ناصر", "Nasser", ("Nasir", "Naser")),
)
# Arabic cities of the UAE with their Latin names (faker ar_AA addresses are US-shaped).
AR_CITIES: tuple[tuple[str, str], ...] = (
    ("دبي", "Dubai"),
    ("أبوظبي", "Abu Dhabi"),
    ("الشارقة", "Sharjah"),
    ("العين", "Al Ain"),
)
AR_STREETS: tuple[tuple[str, str], ...] = (
    ("شارع الشيخ زايد", "Sheikh Zayed Road"),
    ("شارع الوصل", "Al Wasl Road"),
    ("شارع الكورنيش", "Corniche Road"),
    ("شارع المطار", "Airport Road"),
)

# Formal given names -> the short forms people use. Keyed by the formal name; gender for drawing.
NICKNAMES: dict[str, tuple[str, ...]] = {
    # English
    "Robert": ("Bob", "Rob", "Bobby"),
    "William": ("Bill", "Will", "Billy"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "John": ("Jack", "Johnny"),
    "Richard": ("Rick", "Dick", "Rich"),
    "Michael": ("Mike", "Mikey"),
    "Thomas": ("Tom", "Tommy"),
    "Christopher": ("Chris",),
    "Daniel": ("Dan", "Danny"),
    "Joseph": ("Joe", "Joey"),
    "Charles": ("Charlie", "Chuck"),
    "Anthony": ("Tony",),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Andrew": ("Andy", "Drew"),
    "Matthew": ("Matt",),
    "Nicholas": ("Nick", "Nicky"),
    "Benjamin": ("Ben", "Benny"),
    "Samuel": ("Sam", "Sammy"),
    "Jonathan": ("Jon", "Jonny"),
    "Steven": ("Steve",),
    "Alexander": ("Alex", "Xander"),
    "Timothy": ("Tim", "Timmy"),
    "Gregory": ("Greg",),
    "Patrick": ("Pat", "Paddy"),
    "Frederick": ("Fred", "Freddie"),
    "Theodore": ("Ted", "Teddy", "Theo"),
    "Elizabeth": ("Liz", "Beth", "Betty", "Eliza", "Lizzie"),
    "Margaret": ("Maggie", "Peggy", "Meg"),
    "Katherine": ("Kate", "Kathy", "Katie"),
    "Jennifer": ("Jen", "Jenny"),
    "Patricia": ("Pat", "Patty", "Trish"),
    "Susan": ("Sue", "Susie"),
    "Rebecca": ("Becky", "Becca"),
    "Deborah": ("Debbie", "Deb"),
    "Victoria": ("Vicky", "Tori"),
    "Jessica": ("Jess", "Jessie"),
    "Alexandra": ("Alex", "Sandra", "Lexi"),
    "Christine": ("Chris", "Tina"),
    "Abigail": ("Abby",),
    "Samantha": ("Sam",),
    "Jacqueline": ("Jackie",),
    "Kimberly": ("Kim",),
    "Josephine": ("Jo", "Josie"),
    # German
    "Johannes": ("Hans", "Jo"),
    "Elisabeth": ("Lisa", "Liesel", "Elli"),
    "Friedrich": ("Fritz",),
    "Wolfgang": ("Wolf",),
    "Katharina": ("Kathi", "Katja"),
    "Stefanie": ("Steffi",),
    "Andreas": ("Andi",),
    # Romance languages
    "Francisco": ("Paco", "Fran", "Chico"),
    "José": ("Pepe", "Zé"),
    "Manuel": ("Manolo",),
    "Dolores": ("Lola",),
    "Giuseppe": ("Beppe", "Peppe"),
    "Alessandro": ("Sandro", "Ale"),
    "Giovanni": ("Gianni",),
    "Frédéric": ("Fred",),
    # Russian
    "Александр": ("Саша", "Шура"),
    "Дмитрий": ("Дима",),
    "Михаил": ("Миша",),
    "Иван": ("Ваня",),
    "Владимир": ("Володя", "Вова"),
    "Николай": ("Коля",),
    "Сергей": ("Серёжа",),
    "Алексей": ("Лёша",),
    "Екатерина": ("Катя",),
    "Мария": ("Маша",),
    "Анастасия": ("Настя",),
    "Елена": ("Лена",),
    "Татьяна": ("Таня",),
    "Ольга": ("Оля",),
    # Greek
    "Κωνσταντίνος": ("Κώστας",),
    "Γεώργιος": ("Γιώργος",),
    "Δημήτριος": ("Δημήτρης",),
    "Ιωάννης": ("Γιάννης",),
    "Παναγιώτης": ("Πάνος",),
    "Ευάγγελος": ("Βαγγέλης",),
    "Αικατερίνη": ("Κατερίνα",),
    "Αλέξανδρος": ("Αλέκος",),
}

# Formal names to draw from per locale (with gender), so nicknames actually get a chance to occur.
FORMAL_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "M": (
            "Robert", "William", "James", "John", "Richard", "Michael", "Thomas", "Christopher", "Daniel",
            "Joseph", "Charles", "Anthony", "Edward", "Andrew", "Matthew", "Nicholas", "Benjamin", "Samuel",
            "Jonathan", "Steven", "Alexander", "Timothy", "Gregory", "Patrick", "Frederick", "Theodore",
        ),
        "F": (
            "Elizabeth", "Margaret", "Katherine", "Jennifer", "Patricia", "Susan", "Rebecca", "Deborah",
            "Victoria", "Jessica", "Alexandra", "Christine", "Abigail", "Samantha", "Jacqueline",
            "Kimberly", "Josephine",
        ),
    },
    "de": {
        "M": ("Johannes", "Friedrich", "Wolfgang", "Andreas", "Alexander"),
        "F": ("Elisabeth", "Katharina", "Stefanie"),
    },
    "ru": {
        "M": ("Александр", "Дмитрий", "Михаил", "Иван", "Владимир", "Николай", "Сергей", "Алексей"),
        "F": ("Екатерина", "Мария", "Анастасия", "Елена", "Татьяна", "Ольга"),
    },
    "el": {
        "M": ("Κωνσταντίνος", "Γεώργιος", "Δημήτριος", "Ιωάννης", "Παναγιώτης", "Ευάγγελος", "Αλέξανδρος"),
        "F": ("Αικατερίνη",),
    },
    "es": {"M": ("Francisco", "José", "Manuel"), "F": ("Dolores",)},
    "it": {"M": ("Giuseppe", "Alessandro", "Giovanni"), "F": ()},
}  # fmt: skip

_NICK_INDEX: dict[str, tuple[str, ...]] = {fold_ascii(k).casefold(): v for k, v in NICKNAMES.items()}


def nicknames_for(given: str) -> tuple[str, ...]:
    """The short forms of a formal given name (any case, accents optional); empty when none known."""
    return _NICK_INDEX.get(fold_ascii(given.strip()).casefold(), ())


def formal_of(nickname: str) -> tuple[str, ...]:
    """The formal names a nickname may stand for (Bob -> Robert); for tests and sanity checks."""
    key = nickname.strip().casefold()
    return tuple(formal for formal, nicks in NICKNAMES.items() if key in (n.casefold() for n in nicks))
