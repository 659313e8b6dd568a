"""Identity traits as INSi accepts them (insi.md §5.2): normalisation for the request, syntax checks.

The stored traits are never changed: uppercase and the removal of diacritics/ligatures happen only when a
request is built (``for_request``). A character with no defined mapping (a digit, ``_``, ``@``, a
non-Latin letter…) is refused with a French message naming it, never dropped silently.
"""

from __future__ import annotations

import re
import unicodedata

from ps_agent.identity.errors import InsiInputError
from ps_agent.identity.model import Sex, TraitsQuery

MAX_NAME_LENGTH = 100
# Ligatures and letters that NFD does not decompose (insi.md §5.2: É→E, Œ→OE, Æ→AE).
_LIGATURES = {"Œ": "OE", "œ": "OE", "Æ": "AE", "æ": "AE", "ß": "SS", "Ø": "O", "ø": "O", "Ð": "D", "Þ": "TH"}
# [I] Typographic apostrophes and the modifier letter apostrophe are the apostrophe a user meant;
# they are mapped to ``'`` (a defined mapping), every other punctuation sign is refused.
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"}
_ALLOWED = re.compile(r"^[A-Z '\-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COG = re.compile(r"^(?:\d{2}|2A|2B)\d{3}$")

FIELD_LABELS = {
    "birth_name": "nom de naissance",
    "first_name": "prénom",
    "sex": "sexe",
    "birth_date": "date de naissance",
    "birth_place": "lieu de naissance (code COG)",
}


def _fold(text: str) -> str:
    out = []
    for ch in text:
        ch = _APOSTROPHES.get(ch, ch)
        if ch in _LIGATURES:
            out.append(_LIGATURES[ch])
            continue
        decomposed = unicodedata.normalize("NFD", ch)
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        out.append(base.upper() if base.isascii() else ch)
    return "".join(out)


def normalise_name(value: str, field: str) -> str:
    """Uppercase, diacritics/ligatures removed, spaces collapsed; refuse unmapped characters."""
    label = FIELD_LABELS.get(field, field)
    text = " ".join(_fold(value).split())
    bad = sorted({c for c in text if not _ALLOWED.match(c)})
    if bad:
        shown = ", ".join(f"« {c} »" for c in bad)
        raise InsiInputError(
            f"Le {label} contient un caractère refusé par l'INSi : {shown}. Seuls les lettres, l'espace, "
            "l'apostrophe et le trait d'union sont admis.",
            code="traits_characters",
            field=field,
        )
    return text


def check_name_syntax(text: str, field: str) -> None:
    """Syntax rules of the birth name / first name (insi.md §5.2, EF_INS10_01/02)."""
    label = FIELD_LABELS.get(field, field)

    def refuse(why: str) -> InsiInputError:
        return InsiInputError(
            f"Le {label} « {text} » est refusé par l'INSi : {why}.", code="traits_syntax", field=field
        )

    if not text:
        raise InsiInputError(f"Le {label} est obligatoire.", code="traits_missing", field=field)
    if len(text) > MAX_NAME_LENGTH:
        raise refuse(f"{MAX_NAME_LENGTH} caractères au plus")
    if text[0] in " -":
        raise refuse("il ne peut pas commencer par un espace ou un trait d'union")
    if "''" in text or "' " in text or " '" in text:
        raise refuse("apostrophe doublée ou accolée à un espace")
    if "---" in text or " -" in text or "- " in text:
        raise refuse("traits d'union mal placés")
    if field == "birth_name":
        if text[-1] in "-'":
            raise refuse("il ne peut pas finir par un trait d'union ou une apostrophe")
    else:
        if "--" in text:
            raise refuse("le double trait d'union ne sépare que les noms de famille")
        if text[-1] in "-'":
            raise refuse("il ne peut pas finir par un trait d'union ou une apostrophe")


def name_for_request(value: str, field: str) -> str:
    text = normalise_name(value, field)
    check_name_syntax(text, field)
    return text


def check_date(value: str, field: str = "birth_date") -> str:
    """``YYYY-MM-DD`` by pattern only: lunar dates (``1962-00-00``, ``1980-02-31``) are valid INSi dates."""
    text = value.strip()
    if not _DATE.match(text):
        raise InsiInputError(
            f"La date « {value} » n'est pas au format AAAA-MM-JJ attendu par l'INSi.",
            code="traits_date",
            field=field,
        )
    return text


def check_sex(value: Sex | str) -> str:
    text = str(value).strip().upper()
    if text not in ("M", "F"):
        raise InsiInputError(
            f"Sexe « {value} » refusé : l'INSi n'accepte que M ou F.", code="traits_sex", field="sex"
        )
    return text


def check_cog(value: str) -> str:
    text = value.strip().upper()
    if not _COG.match(text):
        raise InsiInputError(
            f"Lieu de naissance « {value} » refusé : un code COG de 5 caractères est attendu "
            "(ex. 63220, 2A020, 99352 pour l'étranger).",
            code="traits_cog",
            field="birth_place",
        )
    return text


def for_request(query: TraitsQuery) -> TraitsQuery:
    """The query as INSi wants it (every field checked); first names normalised one by one."""
    firsts = tuple(name_for_request(f, "first_name") for f in query.first_names if f.strip())
    if not firsts:
        raise InsiInputError(
            "Au moins un prénom de naissance est obligatoire.", code="traits_missing", field="first_name"
        )
    return TraitsQuery(
        birth_name=name_for_request(query.birth_name, "birth_name"),
        first_names=firsts,
        sex=Sex(check_sex(query.sex)),
        birth_date=check_date(query.birth_date),
        birth_place=check_cog(query.birth_place) if query.birth_place else None,
    )


def split_first_names(value: str) -> tuple[str, ...]:
    """A ``ListePrenom`` (or a typed list) into names; hyphenated names stay whole."""
    return tuple(value.split())


def first_names_coherent(first: str, names: str) -> bool:
    """EXI ID 10: the first given name is coherent with the list after treating ``-`` and ``'`` as spaces."""

    def words(s: str) -> list[str]:
        return s.replace("-", " ").replace("'", " ").split()

    f, n = words(first), words(names)
    return bool(f) and n[: len(f)] == f
