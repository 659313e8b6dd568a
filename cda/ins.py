"""INS (Identifiant National de Santé) checks: NIR/NIA format and key, OIDs per environment, mandatory traits.

A wrong key is an error, never a warning: a document filed under the wrong patient is the worst outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cda.errors import InvalidIns

OID_NIR = "1.2.250.1.213.1.4.8"  # production INS-NIR
OID_NIA = "1.2.250.1.213.1.4.9"  # INS-NIA (identifiant d'attente)
OID_TEST = "1.2.250.1.213.1.4.10"  # INS-NIR of test patients
OID_DEMO = "1.2.250.1.213.1.4.11"  # INS-NIR of demonstration patients

INS_OIDS: dict[str, str] = {
    OID_NIR: "INS-NIR",
    OID_NIA: "INS-NIA",
    OID_TEST: "INS-NIR de test",
    OID_DEMO: "INS-NIR de démonstration",
}
OID_BY_ENVIRONMENT: dict[str, str] = {"production": OID_NIR, "test": OID_TEST, "demo": OID_DEMO}

# The traits the INS referential requires next to an INS (cda.md 1 row 12a), as paths under patientRole.
MANDATORY_TRAITS: dict[str, str] = {
    "family_name": "patient/name/family[@qualifier='BR']",
    "first_given_name": "patient/name/given[@qualifier='BR']",
    "given_names": "patient/name/given (sans qualifier)",
    "birth_date": "patient/birthTime",
    "birth_place": "patient/birthplace/place/addr/county",
    "sex": "patient/administrativeGenderCode",
}

_NIR_RE = re.compile(r"^[1-478][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{8}$")


def normalize(value: str) -> str:
    """Upper-case, spaces removed ("2 79 03 51 215 189 89" -> "279035121518989")."""
    return re.sub(r"\s+", "", value or "").upper()


def nir_key(first13: str) -> int:
    """The 2-digit key of a 13-character NIR: 97 - (number mod 97); Corsica 2A -> 19, 2B -> 18."""
    digits = first13.upper()
    corsica = {"2A": "19", "2B": "18"}
    if digits[5:7] in corsica:  # the department sits at positions 6-7
        digits = digits[:5] + corsica[digits[5:7]] + digits[7:]
    return 97 - (int(digits) % 97)


def check_nir(value: str, *, field: str = "patient.ins") -> str:
    """Return the normalised 15-character NIR/NIA or raise ``InvalidIns`` naming the field."""
    nir = normalize(value)
    if len(nir) != 15:
        raise InvalidIns(
            f"Le matricule INS doit compter 15 caractères (13 + clé), « {value} » en compte {len(nir)}.",
            field=field,
        )
    if not _NIR_RE.match(nir):
        raise InvalidIns(
            f"Le matricule INS « {value} » est mal formé (chiffres attendus, département corse 2A/2B admis).",
            field=field,
        )
    key = int(nir[13:])
    expected = nir_key(nir[:13])
    if key != expected:
        raise InvalidIns(
            f"La clé du matricule INS « {nir} » est fausse ({nir[13:]} au lieu de {expected:02d}) : "
            "vérifiez la saisie ou relisez la carte Vitale / le téléservice INSi.",
            field=field,
        )
    return nir


def check_oid(oid: str, *, field: str = "patient.ins_oid") -> str:
    if oid not in INS_OIDS:
        raise InvalidIns(
            f"L'OID « {oid} » n'est pas un OID d'INS (attendu : {', '.join(INS_OIDS)}).",
            field=field,
        )
    return oid


def check_oid_for_environment(oid: str, environment: str, *, field: str = "patient.ins_oid") -> None:
    """Production accepts only real INS (NIR/NIA); test and demo platforms accept only their own OID."""
    check_oid(oid, field=field)
    allowed = {OID_NIR, OID_NIA} if environment == "production" else {OID_BY_ENVIRONMENT.get(environment, "")}
    if oid not in allowed:
        raise InvalidIns(
            f"L'INS de type « {INS_OIDS[oid]} » ne convient pas à l'environnement « {environment} ».",
            field=field,
        )


@dataclass(frozen=True)
class Ins:
    value: str  # 15-character matricule
    oid: str

    @property
    def kind(self) -> str:
        return INS_OIDS.get(self.oid, "inconnu")


def check_ins(value: str, oid: str, *, field: str = "patient.ins") -> Ins:
    """Check matricule and OID together."""
    return Ins(check_nir(value, field=field), check_oid(oid, field=field + "_oid"))
