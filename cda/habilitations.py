"""Habilitation matrix: which profession may read / deposit which document type.

Data: ``cda/data/habilitations.csv`` (the project's one copy, rows keep their CONFIRMED/INFERRED marks).
Resolution, for (profession, specialty, type code, role):

1. rows of the profession (``NONPS`` for staff without a TRE_G15 profession);
2. the most specific type match wins: exact type code, then ``class:NN`` (class of the type via ASS_X04),
   then ``*``; at equal type specificity an exact specialty beats ``*``;
3. a role (``REGULATEUR``, ``MEDECIN_TRAITANT``) is resolved the same way among the role's rows; it decides
   *read*, and it can only *restrict* write (write = profession write AND role write): a role never grants
   a deposit the profession does not have.

No row -> neither read nor write (deny by default).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cda import valuesets as vs
from cda.valuesets import _read_csv

NON_PS = "NONPS"

# Plural labels used in the French explanations.
PROFESSION_PLURALS: dict[str, str] = {
    "10": "Les médecins",
    "21": "Les pharmaciens",
    "40": "Les chirurgiens-dentistes",
    "50": "Les sages-femmes",
    "60": "Les infirmiers",
    "70": "Les masseurs-kinésithérapeutes",
    "80": "Les pédicures-podologues",
    "91": "Les orthophonistes",
    "92": "Les orthoptistes",
    NON_PS: "Les personnels non professionnels de santé",
}
ROLE_PLURALS = {"REGULATEUR": "Les médecins régulateurs", "MEDECIN_TRAITANT": "Les médecins traitants"}


@dataclass(frozen=True)
class Rule:
    profession_code: str
    specialty_code: str
    role: str
    type_code: str  # exact code, "class:NN" or "*"
    read: bool
    write: bool
    status: str  # e.g. "read=CONFIRMED; write=INFERRED"
    label: str
    source: str


@dataclass(frozen=True)
class Decision:
    read: bool
    write: bool
    rule: Rule | None  # the row that decided (None: no row -> denied)
    confirmed: bool  # False when the deciding row is marked INFERRED for the asked action


@functools.cache
def rules() -> tuple[Rule, ...]:
    return tuple(
        Rule(
            r["profession_code"],
            r["specialty_code"],
            r["role"],
            r["type_code"],
            r["read"] == "Y",
            r["write"] == "Y",
            r["status"],
            r["label_fr"],
            r["source"],
        )
        for r in _read_csv("habilitations.csv")
    )


def _profession(code: str) -> str:
    return code.strip() if code and code.strip() else NON_PS


def _best(profession: str, specialty: str, role: str, type_code: str) -> Rule | None:
    class_code = vs.document_types()[type_code].class_code if type_code in vs.document_types() else ""
    best: tuple[int, int] | None = None
    chosen: Rule | None = None
    for rule in rules():
        if rule.profession_code != profession or rule.role != role:
            continue
        if rule.specialty_code not in ("*", specialty):
            continue
        if rule.type_code == type_code:
            type_rank = 3
        elif class_code and rule.type_code == f"class:{class_code}":
            type_rank = 2
        elif rule.type_code == "*":
            type_rank = 1
        else:
            continue
        rank = (type_rank, 1 if rule.specialty_code == specialty else 0)
        if best is None or rank > best:
            best, chosen = rank, rule
    return chosen


@functools.lru_cache(maxsize=4096)  # a pure function of the fixed table: asked on every deposit
def decide(profession_code: str, specialty_code: str, type_code: str, *, role: str = "") -> Decision:
    profession = _profession(profession_code)
    base = _best(profession, specialty_code or "", "", type_code)
    if not role:
        if base is None:
            return Decision(False, False, None, False)
        return Decision(base.read, base.write, base, "INFERRED" not in base.status)
    role_rule = _best(profession, specialty_code or "", role, type_code)
    if role_rule is None:
        return decide(profession_code, specialty_code, type_code)
    write = bool(base and base.write) and role_rule.write
    return Decision(role_rule.read, write, role_rule, "INFERRED" not in role_rule.status)


def can_read(profession_code: str, specialty_code: str, type_code: str, *, role: str = "") -> bool:
    return decide(profession_code, specialty_code, type_code, role=role).read


def can_write(profession_code: str, specialty_code: str, type_code: str, *, role: str = "") -> bool:
    return decide(profession_code, specialty_code, type_code, role=role).write


def _type_phrase(type_code: str) -> str:
    row = vs.document_types().get(type_code)
    if row is None:
        return f"aux documents de type « {type_code} »"
    return f"aux documents « {row.label} » (classe {row.class_label})"


def explain(
    profession_code: str, specialty_code: str, type_code: str, *, action: str = "read", role: str = ""
) -> str:
    """A French sentence explaining the decision, e.g.
    "Les pharmaciens n'ont pas accès aux documents « CR d'imagerie médicale » (classe Imagerie médicale)."
    ``action`` is "read" or "write".
    """
    decision = decide(profession_code, specialty_code, type_code, role=role)
    who = ROLE_PLURALS.get(role) or PROFESSION_PLURALS.get(
        _profession(profession_code), f"Les professionnels (profession {profession_code})"
    )
    phrase = _type_phrase(type_code)
    if decision.rule is None:
        return f"{who} ne figurent pas dans la matrice d'habilitations : accès refusé {phrase}."
    if action == "write":
        verb = "peuvent déposer des documents" if decision.write else "ne peuvent pas déposer de documents"
        sentence = f"{who} {verb} {phrase.removeprefix('aux documents ')}."
    else:
        sentence = f"{who} ont accès {phrase}." if decision.read else f"{who} n'ont pas accès {phrase}."
    return sentence
