"""Test identities shared by the emulated cards, the test PKI and the sandbox demo data.

All values are fictitious. PS national ids use the test range ``8997…`` (``8`` + an 11-digit RPPS
whose last digit is a Luhn key); structures use ``1`` + a fictitious FINESS or ``3`` + SIRET.
One place for these facts: the card emulator writes them on the card, the PKI into certificates,
the sandbox uses them to seed patients' médecin traitant, blocked professional and authorisations.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Situation:
    """One activity situation of a card (TRE_R02 sector SAxx, structure id with its type prefix)."""

    structure_id: str  # Struct_IdNat with its prefix (e.g. "3" + SIRET, "1" + FINESS)
    structure_name: str  # raison sociale
    sector: str  # secteur d'activité, TRE_R02 (OID 1.2.250.1.71.4.2.4), e.g. "SA07"
    mode: str = "L"  # mode d'exercice: L libéral, S salarié
    role: str = ""  # e.g. "REGULATEUR" for a centre 15 doctor


@dataclass(frozen=True)
class CardProfile:
    name: str
    card_type: str  # TRE_R87: CPS, CPF, CPE, CPA
    id_nat: str  # PSIdNat with its type prefix ("8" + RPPS; CPE: "3" + FINESS "/" + internal id)
    family_name: str
    given_name: str
    civility: str  # "M", "MME", "DR"
    profession_code: str  # TRE_G15 (10 médecin, 21 pharmacien, 60 infirmier); "" for CPE staff
    profession_label: str
    specialty_code: str  # TRE_R38 SMxx for médecins / G15_21/… for pharmaciens; "" when none
    situations: tuple[Situation, ...]
    pin: str = "1234"
    puk: str = "12345678"
    pin_blocked: bool = False
    expired: bool = False
    serial: str = "0000000001"
    extra: dict[str, str] = field(default_factory=dict)


CABINET = Situation("3" + "80000000100017", "CABINET MEDICAL DU PARC", "SA07", "L")
PHARMACIE = Situation("3" + "80000000200015", "PHARMACIE DE LA GARE", "SA33", "L")
HOPITAL = Situation("1" + "990000018", "CENTRE HOSPITALIER DE TEST", "SA01", "S")
SAMU = Situation("1" + "990000026", "SAMU 99 - CENTRE 15", "SA01", "S", role="REGULATEUR")

PROFILES: dict[str, CardProfile] = {
    "gp": CardProfile(
        "gp",
        "CPS",
        "899700000013",
        "MEDECIN-GENERALISTE",
        "JEAN",
        "DR",
        "10",
        "Médecin",
        "SM26",
        (CABINET,),
        serial="0000000101",
    ),
    "specialist": CardProfile(
        "specialist",
        "CPS",
        "899700000021",
        "CARDIOLOGUE",
        "CLAIRE",
        "DR",
        "10",
        "Médecin",
        "SM04",
        (HOPITAL,),
        serial="0000000102",
    ),
    "pharmacist": CardProfile(
        "pharmacist",
        "CPS",
        "899700000039",
        "PHARMACIEN",
        "PAUL",
        "M",
        "21",
        "Pharmacien",
        "G15_21/SM",
        (PHARMACIE,),
        serial="0000000103",
    ),
    "nurse": CardProfile(
        "nurse",
        "CPS",
        "899700000047",
        "INFIRMIERE",
        "SOPHIE",
        "MME",
        "60",
        "Infirmier",
        "",
        (CABINET,),
        serial="0000000104",
    ),
    "secretary": CardProfile(
        "secretary",
        "CPE",
        "3990000018/SEC00001",
        "SECRETAIRE",
        "MARIE",
        "MME",
        "",
        "Secrétaire médicale",
        "",
        (HOPITAL,),
        serial="0000000105",
    ),
    "regulator": CardProfile(
        "regulator",
        "CPS",
        "899700000054",
        "REGULATEUR",
        "LUC",
        "DR",
        "10",
        "Médecin",
        "SM02",
        (SAMU,),
        serial="0000000106",
    ),
    "blocked": CardProfile(
        "blocked",
        "CPS",
        "899700000062",
        "BLOQUE",
        "ALAIN",
        "DR",
        "10",
        "Médecin",
        "SM26",
        (CABINET,),
        pin_blocked=True,
        serial="0000000107",
    ),
    "expired": CardProfile(
        "expired",
        "CPS",
        "899700000070",
        "EXPIRE",
        "ODILE",
        "DR",
        "10",
        "Médecin",
        "SM26",
        (CABINET,),
        expired=True,
        serial="0000000108",
    ),
}

# The establishment (indirect / AIR mode): ORG AUTH_CLI + ORG SIGN certificates.
ESTABLISHMENT = HOPITAL
ESTABLISHMENT_CN = "CENTRE HOSPITALIER DE TEST - DMP"


def luhn_ok(digits: str) -> bool:
    """Luhn check used by RPPS numbers (11 digits, last one is the key)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
