"""Classification: type code -> XDS class code (ASS_X04), DMP rubric, Mon espace santé category, formatCode.

The rubric assignments are inferred (no public machine-readable mapping exists, cda.md 6.1 #4-5); they live
in ONE place, ``cda/data/document-types.csv``, so they can be corrected without touching code.
"""

from __future__ import annotations

from dataclasses import dataclass

from cda import valuesets as vs
from cda.model import CdaDocument


@dataclass(frozen=True)
class Classification:
    type_code: str
    type_label: str
    class_code: str
    class_label: str
    dmp_rubric: str  # one of valuesets.DMP_RUBRICS (or the "gestion" bucket, "" for technical documents)
    mes_rubric: str  # Mon espace santé category code (valuesets.MES_CATEGORIES), "" when not shown
    mes_rubric_label: str
    format_code: str  # "" when classifying a bare type code
    dmp_accepted: bool
    in_vaccination_book: bool  # also shown in the patient's carnet vaccinal (CAR_VAC)
    rubric_inferred: bool  # True: the rubric comes from the inferred reference table

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def classify_type(type_code: str, *, format_code: str = "") -> Classification:
    """Classify a type code. Raises ``UnknownTypeCode`` (field ``code``) for a code outside the table."""
    row = vs.document_type(type_code)
    return Classification(
        type_code=row.code,
        type_label=row.label,
        class_code=row.class_code,
        class_label=row.class_label,
        dmp_rubric=row.dmp_rubric,
        mes_rubric=row.mes_rubric,
        mes_rubric_label=vs.MES_CATEGORIES.get(row.mes_rubric, ""),
        format_code=format_code,
        dmp_accepted=row.dmp_accepted,
        in_vaccination_book=row.car_vac,
        rubric_inferred=row.rubric_source == "INFERRED",
    )


def format_code_of(doc: CdaDocument) -> str:
    """The XDS formatCode of a document (ASS_A11): media type for level 1, volet templateId for structured."""
    if doc.is_level1:
        return vs.MEDIA_TYPE_FORMATS.get(doc.media_type, "")
    formats = vs.volet_format_codes()
    for root, _ in doc.template_ids:
        if root in formats:
            return formats[root]
    return vs.FORMAT_STRUCTURED_DEFAULT


def classify_document(doc: CdaDocument) -> Classification:
    return classify_type(doc.type_code, format_code=format_code_of(doc))


# --- lookups by what a person types (no case, no accents, singular or plural) ---------------------------


def fold(text: str) -> str:
    """Lower case without accents or punctuation, one space between words ("Comptes-rendus" ->
    "comptes rendus", "Prévention" -> "prevention"): how a typed name is compared with a label."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in bare).split())


def _singular(folded: str) -> str:
    return " ".join(w[:-1] if len(w) > 3 and w[-1] in "sx" else w for w in folded.split())


def rubric_named(text: str) -> str | None:
    """The DMP rubric a person means ("comptes rendus", "Compte-rendu", "prevention" -> "Prévention"),
    None when it names none or several. Also accepts the administrative bucket (``DMP_RUBRIC_GESTION``)."""
    wanted = _singular(fold(text))
    if not wanted:
        return None
    rubrics = (*vs.DMP_RUBRICS, vs.DMP_RUBRIC_GESTION)
    for rubric in rubrics:
        if _singular(fold(rubric)) == wanted:
            return rubric
    # a part of one name only ("imagerie", "biologie"): that rubric; ambiguous or none: None
    partial = [r for r in rubrics if f" {wanted} " in f" {_singular(fold(r))} "]
    return partial[0] if len(partial) == 1 else None


def types_matching(text: str, *, dmp_only: bool = True) -> list[vs.DocumentType]:
    """Document types whose code is ``text`` or whose label contains it (accent- and case-insensitive),
    in table order; an exact label match comes alone."""
    rows = [t for t in vs.document_types().values() if t.dmp_accepted or not dmp_only]
    code = text.strip()
    exact_code = [t for t in rows if t.code == code]
    if exact_code:
        return exact_code
    wanted = fold(text)
    if not wanted:
        return rows
    exact = [t for t in rows if fold(t.label) == wanted]
    if exact:
        return exact
    return [t for t in rows if wanted in fold(t.label) or _singular(wanted) in _singular(fold(t.label))]
