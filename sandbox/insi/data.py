"""The INSi sandbox's identity store and carte Vitale registry (insi.md §7.5).

- ``QUALIFICATION_PERSONS``: the test persons of the qualification service and of the CNDA canned files,
  exactly as insi.md §7.5 lists them (OID ``.8`` unless stated; HERMANN's keys fail mod-97 on purpose).
- ``DEMO_PERSONS``: the DMP sandbox's demo patients (same INS and OID ``1.2.250.1.213.1.4.10`` as
  :mod:`sandbox.demo`), so a demo patient found by INSi can then be opened in the DMP.
- ``EXTRA_PERSONS``: fictitious persons the Vitale registry needs (a family, twins, a lunar birth date) —
  [I] invented here, INS-NIR TEST OID, valid keys.
- ``VITALE_CARDS``: the card registry (serial, V2, nature ``T``, assuré, AMO codes, beneficiaries with
  rank). The emulated Vitale cards (issue 10 item 3) are meant to carry exactly these data.

``InsiStore.default()`` holds all of them; ``InsiStore.from_json(path)`` loads another set (same shape as
``InsiStore.to_json()``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox.demo import DEMO_PATIENTS
from sandbox.errors import SandboxError

OID_NIR = "1.2.250.1.213.1.4.8"
OID_NIA = "1.2.250.1.213.1.4.9"
OID_TEST = "1.2.250.1.213.1.4.10"


def nir_key(matricule: str) -> str:
    """Key of a 13-character NIR: 97 - (N mod 97), Corsica 2A/2B read as 19/18."""
    body = matricule[:5] + matricule[5:7].replace("2A", "19").replace("2B", "18") + matricule[7:]
    return f"{97 - int(body) % 97:02d}"


def vitale_card_secret(serial: str) -> bytes:
    """[I] Per-card secret of the sandbox-only Vitale signature (``urn:ps-agent:sandbox:vitale-hmac-sha256``),
    derived from the serial so the emulated card and the sandbox agree without sharing a file (test only)."""
    return hashlib.sha256(b"ps-agent-sandbox-vitale:" + serial.encode()).digest()


class StoreError(SandboxError):
    """The identity store file is unreadable or inconsistent."""


@dataclass(frozen=True)
class Ins:
    matricule: str  # 13
    key: str  # 2 ("" allowed)
    oid: str = OID_NIR
    date_start: str = ""
    date_end: str = ""


@dataclass(frozen=True)
class Person:
    birth_name: str
    first_names: str  # ListePrenom ("" when the person has none)
    sex: str
    birth_date: str  # YYYY-MM-DD (lunar values allowed)
    birth_place: str  # COG ("" when unknown)
    ins: Ins
    history: tuple[Ins, ...] = ()
    tiq_prenom: str = ""  # TIQ/Prenom when the answer carries it (CNDA TEST_2.05)
    note: str = ""


@dataclass(frozen=True)
class Beneficiary:
    ins: str  # matricule (13) of the person in the store: the INS returned is that person's
    birth_date: str
    rank: int = 1
    certified_nir: bool = True  # the card carries the beneficiary's certified NIR
    holder: bool = False


@dataclass(frozen=True)
class VitaleCardRecord:
    serial: str  # 12 digits
    assure: str  # matricule (13) of the assuré (ouvrant droit), a person of the store
    regime: str = "01"
    caisse: str = "631"
    centre: str = "9881"
    card_type: str = "V2"
    nature: str = "T"
    beneficiaries: tuple[Beneficiary, ...] = ()
    note: str = ""


def _p(name: str, firsts: str, sex: str, date: str, cog: str, ins: str, key: str, **kw: Any) -> Person:
    oid = kw.pop("oid", OID_NIR)
    return Person(name, firsts, sex, date, cog, Ins(ins, key, oid), **kw)


QUALIFICATION_PERSONS: tuple[Person, ...] = (
    _p("ADRUN", "ZOE", "F", "1975-12-31", "63220", "2751263220749", "74", note="live [C:S3]"),
    _p("ADRTROIS", "DOMINIQUE", "F", "1997-02-26", "2A020", "297022A020778", "78", note="live [C:S3]"),
    _p("ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020", "160012B020777", "13", note="live [C:S3,S4]"),
    _p(
        "ECETINSI",
        "PIERRE-ALAIN MURIEL FLORIANT",
        "M",
        "2009-07-14",
        "63220",
        "1090763220834",
        "89",
        history=(Ins("2090763220834", "39", OID_NIR, "2019-03-01", "2019-02-28"),),
        note="live + CNDA TEST_2.04 [C:S3]",
    ),
    _p("TCHITCHI", "CATARINA BELLA", "F", "1936-06-21", "63220", "2360663220836", "56", note="OLA -> 01"),
    _p("DE VINCI", "LEONARDO PIERO", "M", "2014-02-01", "63220", "1140263220833", "56", note="no COG -> 02"),
    # [I] the second DE VINCI LEONARDO that makes the search without COG ambiguous (insi.md §7.5)
    _p(
        "DE VINCI",
        "LEONARDO",
        "M",
        "2014-02-01",
        "75056",
        "1140275056123",
        nir_key("1140275056123"),
        oid=OID_TEST,
    ),
    _p(
        "D'ARTAGNAN DE L'HERAULT",
        "PIERRE-ALAIN GUNTHER",
        "M",
        "2001-06-17",
        "63220",
        "1010663220754",
        "60",
        note="live [C:S4]",
    ),
    _p("NESSI", "MICHELANGELO ANTHONY", "M", "2010-08-07", "63220", "1100863220830", "60"),
    _p("NESSI", "NATHALIE", "F", "1977-07-14", "63220", "2770763220829", "10", note="CNDA TEST_3.05 cas 3"),
    _p(
        "CORSE",
        "ANTHONY",
        "M",
        "1980-03-02",
        "2B020",
        "180032B020401",
        "23",
        history=(Ins("180032B020401", "23"),),
        note="CNDA TEST_2.08 cas 1",
    ),
    _p(
        "HERMANN",
        "GATIEN",
        "M",
        "1981-03-24",
        "63220",
        "1810363220456",
        "60",
        history=(Ins("1810363220456", "60"), Ins("2810363220456", "10")),
        note="CNDA TEST_2.08 cas 2: keys fail mod-97 on purpose",
    ),
    _p(
        "PROVISOIRE",
        "MATRICULE",
        "M",
        "2009-07-01",
        "63220",
        "1090763220888",
        "35",
        oid=OID_NIA,
        tiq_prenom="MATRICULE",
        note="CNDA TEST_2.05 (NIA)",
    ),
)
# HOUILLES (M, 1993-01-27, no first name) is in the CNDA data set without an INS: any search -> CR 01.
ABSENT_PERSONS = (("HOUILLES", "M", "1993-01-27"),)


def _demo_person(d: Any) -> Person:
    date = f"{d.birth_date[:4]}-{d.birth_date[4:6]}-{d.birth_date[6:]}"
    return Person(
        d.family_name, d.given_names, d.sex, date, d.birth_place, Ins(d.ins[:13], d.ins[13:], d.oid)
    )


DEMO_PERSONS: tuple[Person, ...] = tuple(_demo_person(d) for d in DEMO_PATIENTS)


def _x(name: str, firsts: str, sex: str, date: str, cog: str, matricule: str) -> Person:
    return Person(
        name, firsts, sex, date, cog, Ins(matricule, nir_key(matricule), OID_TEST), note="[I] sandbox"
    )


EXTRA_PERSONS: tuple[Person, ...] = (
    _x("DEMO-MINEUR", "SOPHIE ANNE", "F", "1984-02-11", "69123", "2840269123456"),  # mother of DEMO_MINOR
    _x("GEMEAU", "CLAIRE", "F", "1985-09-12", "63220", "2850963220321"),
    _x("GEMEAU", "LEA", "F", "2018-05-04", "63220", "2180563220901"),  # twins: rank 1 and 2
    _x("GEMEAU", "LOU", "F", "2018-05-04", "63220", "2180563220902"),
    # [I] adopted child born abroad (Morocco) whose day and month of birth are unknown: lunar date
    _x("GEMEAU", "NOE", "M", "2019-00-00", "99350", "1192099350041"),
    _x("BENALI", "AHMED", "M", "1962-00-00", "99352", "1622099352123"),  # lunar birth date, born abroad
)

VITALE_CARDS: tuple[VitaleCardRecord, ...] = (
    VitaleCardRecord(
        "000000000101",
        "2751263220749",
        beneficiaries=(Beneficiary("2751263220749", "1975-12-31", holder=True),),
        note="single beneficiary: ADRUN ZOE",
    ),
    VitaleCardRecord(
        "000000000102",
        "2770763220829",
        beneficiaries=(
            Beneficiary("2770763220829", "1977-07-14", holder=True),
            Beneficiary("1100863220830", "2010-08-07", certified_nir=False),
        ),
        note="family card: NESSI NATHALIE and her son (no certified NIR on the card)",
    ),
    VitaleCardRecord(
        "000000000103",
        "2850963220321",
        beneficiaries=(
            Beneficiary("2850963220321", "1985-09-12", holder=True),
            Beneficiary("2180563220901", "2018-05-04", rank=1, certified_nir=False),
            Beneficiary("2180563220902", "2018-05-04", rank=2, certified_nir=False),
            Beneficiary("1192099350041", "2019-00-00", rank=1, certified_nir=False),
        ),
        note="twins of the same sex: rank 1 and 2; a child with a lunar birth date (born abroad)",
    ),
    VitaleCardRecord(
        "000000000104",
        "1622099352123",
        regime="01",
        caisse="751",
        centre="0001",
        beneficiaries=(Beneficiary("1622099352123", "1962-00-00", certified_nir=False, holder=True),),
        note="lunar birth date, no certified NIR",
    ),
    VitaleCardRecord(
        "000000000105",
        DEMO_PATIENTS[0].ins[:13],
        caisse="751",
        centre="0001",
        beneficiaries=(Beneficiary(DEMO_PATIENTS[0].ins[:13], "1979-03-21", holder=True),),
        note="DMP demo adult",
    ),
    VitaleCardRecord(
        "000000000106",
        "2840269123456",
        caisse="691",
        centre="0001",
        beneficiaries=(
            Beneficiary("2840269123456", "1984-02-11", holder=True),
            Beneficiary(DEMO_PATIENTS[1].ins[:13], "2014-06-10", certified_nir=False),
        ),
        note="DMP demo minor on his mother's card",
    ),
)


@dataclass
class InsiStore:
    persons: list[Person] = field(default_factory=list)
    cards: list[VitaleCardRecord] = field(default_factory=list)

    @classmethod
    def default(cls) -> InsiStore:
        return cls(list(QUALIFICATION_PERSONS + DEMO_PERSONS + EXTRA_PERSONS), list(VITALE_CARDS))

    def person(self, matricule: str) -> Person | None:
        return next((p for p in self.persons if p.ins.matricule == matricule), None)

    def card(self, serial: str) -> VitaleCardRecord | None:
        return next((c for c in self.cards if c.serial == serial), None)

    def to_json(self) -> str:
        return json.dumps(
            {"persons": [asdict(p) for p in self.persons], "cards": [asdict(c) for c in self.cards]}
        )

    @classmethod
    def from_json(cls, path: Path) -> InsiStore:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            persons = [
                Person(
                    **{
                        **p,
                        "ins": Ins(**p["ins"]),
                        "history": tuple(Ins(**h) for h in p.get("history", ())),
                    }
                )
                for p in data["persons"]
            ]
            cards = [
                VitaleCardRecord(
                    **{**c, "beneficiaries": tuple(Beneficiary(**b) for b in c["beneficiaries"])}
                )
                for c in data.get("cards", [])
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"Jeu d'identités INSi illisible ({path}) : {exc}.") from None
        return cls(persons, cards)
