"""The emulated carte Vitale: OUR OWN documented APDU layout (the real one is not public, insi.md §6.1).

It follows the shape of the reverse-engineered Vitale 2 reading (insi.md §6.4: select the MF, select the
``VITALE`` application, READ BINARY by short file identifier, BER-TLV templates ``65`` per beneficiary)
and adds project-defined files for what the real card does not expose over plain APDUs (serial, AMO
codes, validity, rank, porteur, certification date) — insi.md §6.5 back-end (2). Layout **[E]**::

    ATR 3B 75 13 00 00 45 09 EA 90 00            (Vitale 2 ATR of insi.md §6.4/§6.5; nature forced to T)
    SELECT MF      00 A4 00 00 02 3F 00          -> 90 00
    SELECT VITALE  00 A4 04 00 0B D2 50 00 00 02 56 49 54 41 4C 45   -> 90 00
    READ BINARY    00 B0 8s oo Le  (s = SFI, oo = offset); later chunks 00 B0 hh ll Le on the current EF
                   (T=0 rule of the CPS emulator: a too-long Le answers 6Cxx with the bytes left)

    SFI 1  card file   66 { 80 serial (12 ASCII digits), 81 type "V2", 82 nature "R"|"D"|"T",
                            83 valid from YYYYMMDD, 84 valid to YYYYMMDD,
                            85 state "00" valid | "01" invalidated (opposition),
                            86 régime (2), 87 caisse (3), 88 centre (4),
                            89 assuré NIR (13), 8A assuré key (2), 8B assuré name (UTF-8) }
    SFI 2  identity    one 65 per beneficiary { 80 nom usuel, 81 prénom usuel, 82 date de naissance
                            ASCII YYYYMMDD (lunar values kept, e.g. 19620000), 83 nom de naissance (optional),
                            84 rang de naissance (ASCII digits), 85 porteur "1"|"0" } then 00 padding
    SFI 3  NIR         one 65 per beneficiary, same order { 93 certified NIR 15 ASCII (13 + key) or empty,
                            94 certification date YYYYMMDD (optional) } then 00 padding

    PSO CDS        x0 2A 9E 9A Lc data [00]  (CLA 10 = more blocks follow; chained blocks are concatenated):
                   the sandbox-only signature of the Vitale assertion, HMAC-SHA256 with the per-card secret
                   ``sandbox.insi.data.vitale_card_secret(serial)`` over the data (the exc-c14n SignedInfo)
                   -> 32 bytes (T=0: 61 20 then GET RESPONSE). Never the SESAM-Vitale algorithms.

Texts are UTF-8; the card's names are *usual* names, never INS traits (insi.md §6.2). Cards come from the
INSi sandbox's card registry (:data:`sandbox.insi.data.VITALE_CARDS`) so that WS_INS1 finds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.errors import SandboxError

VITALE2_ATR = bytes.fromhex("3B751300004509EA9000")
REAL_VITALE2_ATR = bytes.fromhex("3B751300004409EA9000")  # what a genuine Vitale 2 answers (insi.md §6.4)
VITALE_AID = bytes.fromhex("D250000002") + b"VITALE"
SFI_CARD, SFI_IDENTITY, SFI_NIR = 1, 2, 3
STATE_VALID, STATE_INVALIDATED = "00", "01"
PADDING = 16  # zero bytes after the templates, as the real identity file has

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"
SW_WRONG_P1P2 = b"\x6b\x00"
SW_CONDITIONS = b"\x69\x85"
SW_INS = b"\x6d\x00"
SW_CLA = b"\x6e\x00"
SW_LENGTH = b"\x67\x00"


class VitaleProfileError(SandboxError):
    """Unknown Vitale profile or inconsistent profile data."""


@dataclass(frozen=True)
class VitaleBeneficiaryData:
    usual_name: str
    first_name: str
    birth_date: str  # YYYYMMDD, lunar allowed
    rank: int = 1
    holder: bool = False
    birth_name: str = ""
    nir: str = ""  # 15 characters (13 + key) when the card carries a certified NIR
    certification_date: str = ""  # YYYYMMDD


@dataclass(frozen=True)
class VitaleCardData:
    serial: str  # 12 digits
    assure_nir: str  # 13
    assure_key: str
    assure_name: str
    regime: str
    caisse: str
    centre: str
    beneficiaries: tuple[VitaleBeneficiaryData, ...]
    card_type: str = "V2"
    nature: str = "T"
    valid_from: str = "20200101"
    valid_to: str = "20391231"
    state: str = STATE_VALID
    label: str = ""


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    if len(value) < 0x100:
        return bytes([tag, 0x81, len(value)]) + value
    return bytes([tag, 0x82]) + len(value).to_bytes(2, "big") + value


def card_file(card: VitaleCardData) -> bytes:
    fields = (
        (0x80, card.serial),
        (0x81, card.card_type),
        (0x82, card.nature),
        (0x83, card.valid_from),
        (0x84, card.valid_to),
        (0x85, card.state),
        (0x86, card.regime),
        (0x87, card.caisse),
        (0x88, card.centre),
        (0x89, card.assure_nir),
        (0x8A, card.assure_key),
        (0x8B, card.assure_name),
    )
    return _tlv(0x66, b"".join(_tlv(t, v.encode("utf-8")) for t, v in fields))


def identity_file(card: VitaleCardData) -> bytes:
    out = b""
    for b in card.beneficiaries:
        body = _tlv(0x80, b.usual_name.encode()) + _tlv(0x81, b.first_name.encode())
        body += _tlv(0x82, b.birth_date.encode("ascii"))
        if b.birth_name:
            body += _tlv(0x83, b.birth_name.encode())
        body += _tlv(0x84, str(b.rank).encode("ascii")) + _tlv(0x85, b"1" if b.holder else b"0")
        out += _tlv(0x65, body)
    return out + bytes(PADDING)


def nir_file(card: VitaleCardData) -> bytes:
    out = b""
    for b in card.beneficiaries:
        body = _tlv(0x93, b.nir.encode("ascii"))
        if b.certification_date:
            body += _tlv(0x94, b.certification_date.encode("ascii"))
        out += _tlv(0x65, body)
    return out + bytes(PADDING)


# ------------------------------------------------------------------------------------- profiles


def card_from_registry(serial: str, **changes: object) -> VitaleCardData:
    """The emulated card of the INSi sandbox registry card ``serial`` (names from the identity store)."""
    from dataclasses import replace

    from sandbox.insi.data import VITALE_CARDS, InsiStore

    store = InsiStore.default()
    record = next((c for c in VITALE_CARDS if c.serial == serial), None)
    if record is None:
        raise VitaleProfileError(f"Carte Vitale {serial} absente du registre du bac à sable INSi.")
    assure = store.person(record.assure)
    if assure is None:
        raise VitaleProfileError(f"Assuré {record.assure} absent du bac à sable INSi.")
    bens = []
    for b in record.beneficiaries:
        person = store.person(b.ins)
        if person is None:
            raise VitaleProfileError(f"Bénéficiaire {b.ins} absent du bac à sable INSi.")
        bens.append(
            VitaleBeneficiaryData(
                usual_name=person.birth_name,
                first_name=person.first_names.split(" ")[0] if person.first_names else "",
                birth_date=b.birth_date.replace("-", ""),
                rank=b.rank,
                holder=b.holder,
                birth_name=person.birth_name if b.holder else "",
                nir=(person.ins.matricule + person.ins.key) if b.certified_nir else "",
                certification_date="20150101" if b.certified_nir else "",
            )
        )
    card = VitaleCardData(
        serial=record.serial,
        assure_nir=assure.ins.matricule,
        assure_key=assure.ins.key,
        assure_name=assure.birth_name,
        regime=record.regime,
        caisse=record.caisse,
        centre=record.centre,
        beneficiaries=tuple(bens),
        card_type=record.card_type,
        nature=record.nature,
        label=record.note,
    )
    return replace(card, **changes) if changes else card  # type: ignore[arg-type]


# name -> (registry serial, changes, description). Built lazily: the INSi data import the demo data.
_PROFILE_SOURCES: dict[str, tuple[str, dict[str, object], str]] = {
    "vitale-adulte": ("000000000105", {}, "adulte seul (patient de démonstration du DMP)"),
    "vitale-famille": (
        "000000000103",
        {},
        "parent + jumelles (rangs 1 et 2) + enfant né à l'étranger, date lunaire 2019-00-00",
    ),
    "vitale-expiree": (
        "000000000101",
        {"valid_to": "20231231", "state": STATE_INVALIDATED},
        "carte expirée et mise en opposition (ADRUN ZOE)",
    ),
    "vitale-zoe": ("000000000101", {}, "ADRUN ZOE, personne de test de l'INSi de qualification"),
    "vitale-nessi": ("000000000102", {}, "mère + fils sans NIR certifié sur la carte"),
    "vitale-lunaire": ("000000000104", {}, "date de naissance lunaire (1962-00-00), né à l'étranger"),
    "vitale-demo-mineur": ("000000000106", {}, "mère + enfant (patient mineur de démonstration du DMP)"),
}
REAL_LAYOUT_PROFILE = "vitale-reelle"
VITALE_PROFILE_HELP: dict[str, str] = {
    **{name: what for name, (_s, _c, what) in _PROFILE_SOURCES.items()},
    REAL_LAYOUT_PROFILE: "carte Vitale « réelle » (ATR Vitale 2 réel, fichiers non lisibles par l'agent)",
}
VITALE_PROFILES = frozenset(VITALE_PROFILE_HELP)


def vitale_profile(name: str) -> VitaleCardData:
    if name == REAL_LAYOUT_PROFILE:
        return card_from_registry("000000000101")
    try:
        serial, changes, _what = _PROFILE_SOURCES[name]
    except KeyError:
        raise VitaleProfileError(
            f"Profil de carte Vitale inconnu : {name!r} (profils : {', '.join(sorted(VITALE_PROFILES))})"
        ) from None
    return card_from_registry(serial, **changes)


# --------------------------------------------------------------------------------------- applet


@dataclass
class VitaleApplet:
    """State and APDU processing of one emulated carte Vitale (see the module docstring)."""

    data: VitaleCardData
    t0: bool = True
    garbage: bool = False
    real_layout: bool = False  # answer like a genuine Vitale 2: our card/NIR files do not exist
    atr: bytes = VITALE2_ATR
    apdu_count: int = 0
    _files: dict[int, bytes] = field(default_factory=dict)
    _app: bool = False
    _current: int = 0
    _chained: bytes = b""
    _pending: bytes = b""
    signatures: int = 0

    def __post_init__(self) -> None:
        if self.real_layout:
            self.atr = REAL_VITALE2_ATR
            # the identity file of insi.md §6.4 only (80 nom, 81 prénom, 82 date); nothing else readable
            ident = b""
            for b in self.data.beneficiaries:
                ident += _tlv(
                    0x65,
                    _tlv(0x80, b.usual_name.encode())
                    + _tlv(0x81, b.first_name.encode())
                    + _tlv(0x82, b.birth_date.encode()),
                )
            self._files = {SFI_IDENTITY: ident + bytes(PADDING)}
        else:
            self._files = {
                SFI_CARD: card_file(self.data),
                SFI_IDENTITY: identity_file(self.data),
                SFI_NIR: nir_file(self.data),
            }

    def power_on(self) -> None:
        self._app = False
        self._current = 0
        self._chained = b""
        self._pending = b""

    def process(self, apdu: bytes) -> bytes:
        self.apdu_count += 1
        if self.garbage:
            return bytes([0x5A] * (1 + self.apdu_count % 3))
        if len(apdu) < 4:
            return SW_LENGTH
        cla, ins, p1, p2 = apdu[:4]
        if cla not in (0x00, 0x10) or (cla == 0x10 and ins != 0x2A):
            return SW_CLA
        body = apdu[4:]
        if ins != 0xC0:
            self._pending = b""
        if ins == 0x2A and (p1, p2) == (0x9E, 0x9A) and not self.real_layout:
            return self._sign(cla, body)
        if ins == 0xC0:
            chunk, self._pending = self._pending, b""
            return chunk + SW_OK if chunk else SW_CONDITIONS
        if ins == 0xA4:
            return self._select(p1, body)
        if ins == 0xB0:
            le = body[0] if len(body) == 1 else 0
            return self._read(p1, p2, le)
        return SW_INS

    def _sign(self, cla: int, body: bytes) -> bytes:
        import hashlib
        import hmac

        from sandbox.insi.data import vitale_card_secret

        if not self._app:
            return SW_CONDITIONS
        if not body or len(body) < 1 + body[0]:
            return SW_LENGTH
        self._chained += body[1 : 1 + body[0]]
        if cla == 0x10:
            return SW_OK
        message, self._chained = self._chained, b""
        mac = hmac.new(vitale_card_secret(self.data.serial), message, hashlib.sha256).digest()
        self.signatures += 1
        if self.t0:
            self._pending = mac
            return bytes([0x61, len(mac)])
        return mac + SW_OK

    def _select(self, p1: int, body: bytes) -> bytes:
        data = body[1 : 1 + body[0]] if body else b""
        if p1 == 0x00 and data == b"\x3f\x00":
            self._app, self._current = False, 0
            return SW_OK
        if p1 == 0x04 and data == VITALE_AID:
            self._app, self._current = True, 0
            return SW_OK
        return SW_NOT_FOUND

    def _read(self, p1: int, p2: int, le: int) -> bytes:
        if p1 & 0x80:
            sfi = p1 & 0x1F
            if sfi == SFI_IDENTITY and self.real_layout and not self._app:
                pass  # the real card's identity file is read from the MF (insi.md §6.4)
            elif not self._app:
                return SW_CONDITIONS
            if sfi not in self._files:
                return SW_NOT_FOUND
            self._current, offset = sfi, p2
        else:
            if not self._current:
                return SW_CONDITIONS
            offset = (p1 << 8) | p2
        content = self._files[self._current]
        if offset > len(content):
            return SW_WRONG_P1P2
        remaining = len(content) - offset
        want = 256 if le == 0 else le
        if want > remaining:
            if self.t0 and remaining > 0:
                return bytes([0x6C, remaining & 0xFF])
            return content[offset:] + b"\x62\x82"
        return content[offset : offset + want] + SW_OK


def make_vitale_card(profile: str, *, t0: bool = True, garbage: bool = False) -> VitaleApplet:
    """The emulated card of a ``vitale-…`` profile."""
    data = vitale_profile(profile)
    return VitaleApplet(data, t0=t0, garbage=garbage, real_layout=profile == REAL_LAYOUT_PROFILE)
