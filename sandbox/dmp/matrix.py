"""The habilitation matrix (profession x document type), as the DMP sandbox enforces it.

The one data file is ``cda/data/habilitations.csv`` (owned by the CDA engine, read through
``cda.habilitations``). Rows marked INFERRED are enforced like confirmed ones (issue 4 §4): the
sandbox must be strict, and the table is one file that can be corrected.
"""

from __future__ import annotations

from cda import habilitations as hab


def can_read(profession: str, specialty: str, type_code: str, *, role: str = "") -> bool:
    return hab.can_read(profession, specialty, type_code, role=role)


def can_write(profession: str, specialty: str, type_code: str, *, role: str = "") -> bool:
    return hab.can_write(profession, specialty, type_code, role=role)


def explain_write(profession: str, specialty: str, type_code: str) -> str:
    return "Dépôt refusé : " + hab.explain(profession, specialty, type_code, action="write")
