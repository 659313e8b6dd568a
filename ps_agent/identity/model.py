"""Domain objects of the INSi téléservice (insi.md §3.4, §5): what a search sends and what it returns.

All dates stay strings ``YYYY-MM-DD``: INSi dates are "lunar" (``DateLunaire``: day or month may be ``00``
or out of calendar range for people whose exact birth date is unknown), so they are never parsed with a
calendar (insi.md §5.2).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger(__name__)

OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_NIR_TEST = "1.2.250.1.213.1.4.10"
OID_INS_NIR_DEMO = "1.2.250.1.213.1.4.11"
INS_OIDS = frozenset({OID_INS_NIR, OID_INS_NIA, OID_INS_NIR_TEST, OID_INS_NIR_DEMO})
TEST_OIDS = frozenset({OID_INS_NIR_TEST, OID_INS_NIR_DEMO})


def nir_key(matricule: str) -> int:
    """Key of a 13-character NIR/NIA: ``97 - (N mod 97)``, Corsica ``2A``→19, ``2B``→18 (insi.md §5.1)."""
    body = matricule[:5] + matricule[5:7].replace("2A", "19").replace("2B", "18") + matricule[7:]
    return 97 - int(body) % 97


def key_is_valid(matricule: str, key: str) -> bool:
    try:
        return len(key) == 2 and nir_key(matricule) == int(key)
    except ValueError:
        return False


class Sex(enum.StrEnum):
    """INS sex: ``M`` or ``F`` only (INSi never returns an unknown sex, insi.md §5.2)."""

    MALE = "M"
    FEMALE = "F"


class Operation(enum.StrEnum):
    """The INSi operations (insi.md §1.1)."""

    WS_INS1 = "rechercherInsAvecCarteVitale"
    WS_INS2 = "rechercherInsAvecTraitsIdentite"
    WS_INS3 = "verification"  # interim: implemented with WS_INS2 + comparison (insi.md §3.3)


class CodeCR(enum.StrEnum):
    """``CR/CodeCR`` of a ``RESULTAT`` (insi.md §4.1)."""

    FOUND = "00"  # exactly one identity
    NOT_FOUND = "01"  # no identity matches (the person may still exist)
    AMBIGUOUS = "02"  # several identities match (traits search only)


@dataclass(frozen=True)
class TraitsQuery:
    """The traits of a WS_INS2 search, as the user typed them (normalised only when the request is built).

    ``first_names`` is the whole list of birth first names in order; the search strategy sends them one
    at a time, then all together (insi.md §3.1). ``birth_date`` is ``YYYY-MM-DD`` (lunar dates allowed).
    ``birth_place`` is the 5-character COG of the birth place, or ``None``.
    """

    birth_name: str
    first_names: tuple[str, ...]
    sex: Sex | str
    birth_date: str
    birth_place: str | None = None


@dataclass(frozen=True)
class InsNumber:
    """One INS matricule with its OID (``INSACTIF`` or an ``INSHISTO`` entry), exactly as returned."""

    matricule: str  # 13 characters (NIR or NIA; Corsica 2A/2B kept)
    key: str  # 2 digits ("" when the service sent none)
    oid: str
    type_matricule: str = ""
    date_start: str = ""  # DateDeb, as returned (may be after DateFin in test data)
    date_end: str = ""  # DateFin

    @property
    def value(self) -> str:
        """Matricule + key (15 characters), as written in DMP messages."""
        return self.matricule + self.key

    @property
    def cx(self) -> str:
        """HL7 CX form used by the DMP (``{matricule+key}^^^&{OID}&ISO^NH``)."""
        return f"{self.value}^^^&{self.oid}&ISO^NH"

    @property
    def key_valid(self) -> bool:
        """False for keys that fail mod-97 (CNDA TEST_2.08 cas 2 does that on purpose): kept, not fixed."""
        return key_is_valid(self.matricule, self.key)

    @property
    def is_nia(self) -> bool:
        return self.oid == OID_INS_NIA

    @property
    def is_test(self) -> bool:
        return self.oid in TEST_OIDS


@dataclass(frozen=True)
class InsTraits:
    """The strict INS traits of ``TIQ``, stored exactly as returned (insi.md §3.4, INS-R04)."""

    birth_name: str
    first_names: str  # ListePrenom: all birth first names, space separated, in order
    sex: str
    birth_date: str
    birth_place: str  # COG ("" when absent)
    first_name: str = ""  # TIQ/Prenom when the service sent it (some CNDA files)

    @property
    def first_given_name(self) -> str:
        """The first given name to store: ``Prenom`` when present, else the first word of the list."""
        if self.first_name:
            return self.first_name
        return self.first_names.split(" ")[0] if self.first_names else ""


@dataclass(frozen=True)
class InsiIdentity:
    """``INDIVIDU`` of a CR 00 answer: the active INS, its history and the strict traits."""

    ins: InsNumber
    traits: InsTraits
    history: tuple[InsNumber, ...] = ()


@dataclass(frozen=True)
class InsiResult:
    """One INSi answer (a business answer: faults are exceptions)."""

    operation: Operation
    code: CodeCR
    label: str  # LibelleCR, verbatim (no accents)
    identity: InsiIdentity | None
    message_id: str  # wsa:MessageID of the request
    received_at: datetime
    raw: bytes = field(default=b"", repr=False)  # the answer envelope, for the identity record

    @property
    def found(self) -> bool:
        return self.code is CodeCR.FOUND

    @property
    def message_fr(self) -> str:
        return CR_MESSAGES[self.code]


CR_MESSAGES: dict[CodeCR, str] = {
    CodeCR.FOUND: "Une identité INS a été trouvée : comparez-la à la pièce d'identité avant de l'accepter.",
    CodeCR.NOT_FOUND: (
        "Aucune identité INS trouvée. Vérifiez les traits sur la pièce d'identité et recommencez ; "
        "une personne absente des bases nationales garde une identité locale (pas de partage DMP)."
    ),
    CodeCR.AMBIGUOUS: (
        "Plusieurs identités correspondent : ajoutez les autres prénoms de la pièce d'identité "
        "ou le lieu de naissance."
    ),
}


@dataclass(frozen=True)
class TraitsSearch:
    """Outcome of the traits search strategy (insi.md §3.1): the final answer and every call made."""

    result: InsiResult
    attempts: tuple[tuple[str, InsiResult], ...]  # (Prenom sent, answer) in call order

    @property
    def found(self) -> bool:
        return self.result.found


# ------------------------------------------------------------------------------------------ Vitale


@dataclass(frozen=True)
class VitaleBeneficiary:
    """One beneficiary of a carte Vitale as read from the card (usual names, NOT INS traits)."""

    birth_date: str  # YYYY-MM-DD, lunar values kept (a 6-digit card date must be resolved by the reader)
    rank: int = 1  # rang gémellaire (rang de naissance): 1 unless twins of the same sex
    usual_name: str = ""
    first_name: str = ""
    birth_name: str = ""  # nom de naissance when the card has one
    nir: str = ""  # certified individual NIR (13) when the card has one
    nir_key: str = ""
    nir_certification_date: str = ""  # YYYY-MM-DD
    holder: bool = False  # "porteur" flag (the person the card belongs to)


@dataclass(frozen=True)
class VitaleCard:
    """The card-level data WS_INS1 needs (insi.md §6.5); the reader comes later (issue 10 item 3)."""

    serial: str  # logical serial number, 12 digits once normalised
    assure_nir: str  # NIR of the assuré (ouvrant droit), 13
    assure_key: str
    assure_name: str = ""  # nom de naissance (else usual name) of the assuré
    regime: str = ""  # grand régime, 2 digits
    caisse: str = ""  # organisme, 3 digits
    centre: str = ""  # code centre, 4 digits
    card_type: str = "V2"  # V2 | V1IGEA | V1SCOT
    nature: str = "T"  # R real, D demo, T test
    beneficiaries: tuple[VitaleBeneficiary, ...] = ()


@dataclass(frozen=True)
class VitaleSelection:
    """The beneficiary chosen by the user on a card read at ``read_at`` (the Vitale assertion's instant).

    ``sign``: when the card can sign the Vitale assertion, a function that receives the exclusive-c14n
    ``SignedInfo`` bytes and returns the signature value (the emulated card: the sandbox-only
    ``urn:ps-agent:sandbox:vitale-hmac-sha256``); ``None`` sends the assertion unsigned.
    """

    card: VitaleCard
    beneficiary: VitaleBeneficiary
    read_at: datetime
    sign: Callable[[bytes], bytes] | None = field(default=None, compare=False, repr=False)


# -------------------------------------------------------------------------------- verification


class VerificationStatus(enum.StrEnum):
    """Outcome of the interim WS_INS3 (insi.md §3.3, fallback (2)) — [I] until the real contract."""

    VALID = "valide"  # same active INS (matricule + key + OID) and the same five traits
    MATRICULE_CHANGED = "matricule_modifie"  # the stored INS is now in INSHISTO of another active INS
    TRAITS_DIFFER = "traits_differents"  # same INS, other traits: identity-vigilance alert
    INS_DIFFERS = "ins_different"  # the traits now lead to another INS, the stored one is not in history
    NOT_FOUND = "non_trouve"  # CR 01
    AMBIGUOUS = "ambigu"  # CR 02


@dataclass(frozen=True)
class Verification:
    status: VerificationStatus
    result: InsiResult  # the WS_INS2 answer the decision was made on
    differences: tuple[str, ...] = ()  # names of the traits that differ
    interim: bool = True  # always True: not the CNDA-tested WS_INS3 operation

    @property
    def valid(self) -> bool:
        return self.status is VerificationStatus.VALID

    @property
    def message_fr(self) -> str:
        return VERIFICATION_MESSAGES[self.status]


VERIFICATION_MESSAGES: dict[VerificationStatus, str] = {
    VerificationStatus.VALID: "L'INS est toujours valide pour ces traits.",
    VerificationStatus.MATRICULE_CHANGED: (
        "Le matricule INS de ce patient a changé : l'identité doit être mise à jour avec le nouvel INS."
    ),
    VerificationStatus.TRAITS_DIFFER: (
        "Les traits INS renvoyés diffèrent des traits enregistrés : alerte d'identitovigilance."
    ),
    VerificationStatus.INS_DIFFERS: (
        "Ces traits correspondent à un autre INS que celui enregistré : alerte d'identitovigilance."
    ),
    VerificationStatus.NOT_FOUND: "Aucune identité INS ne correspond aux traits enregistrés.",
    VerificationStatus.AMBIGUOUS: "Plusieurs identités INS correspondent aux traits enregistrés.",
}
