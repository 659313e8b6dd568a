"""CPS/CPx card session over a small connection interface (modelled on yubikit's ``PivSession``).

``CpsSession(connection)`` selects the IAS-ECC application and exposes verbs returning typed
records: ``read_holder() -> CardHolder``, ``read_situations() -> list[CardSituation]``,
``pin_status() -> PinStatus``, ``verify_pin``, ``unblock_pin``, ``read_certificate(KeyUse)``,
``sign(KeyUse, data)``. Status words are decoded once here into the typed errors of
``ps_agent.card.errors`` / ``ps_agent.auth.errors``.

The ATRs, AID, EF.SN.ICC, PIN rules and signing commands follow the ANS Cryptolib sources
(authentication.md §2.2); the file identifiers and the encoding of the holder and situation records
are the **emulator convention [E]** (``sandbox/card/applet.py``), since the real layout is not
public. With a real card, production goes through the Cryptolib (``ps_agent.auth.pkcs11``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ps_agent.auth.errors import (
    PUK_LENGTH,
    PinBlocked,
    PinFinalTryError,
    WrongPin,
    check_pin_format,
)
from ps_agent.auth.model import KeyUse
from ps_agent.card.errors import ApduError, CardProtocolError, UnknownCard
from ps_agent.errors import AuthError

if TYPE_CHECKING:
    from cryptography import x509

# --------------------------------------------------------------------------------------- ATR table

# (name, atr, mask, contactless) from the Cryptolib CPS sources (authentication.md §2.2)
_ATRS: tuple[tuple[str, str, str, bool], ...] = (
    ("CPS3", "3BAC00402A001225006480000310009000", "FF00000000FFFFFFFFFFFF000000FFFFFF", False),
    # contactless: bytes 8-9 and 11 (1-based) vary and are masked [I: the spec masks "part of" byte 11]
    ("CPS3", "3B8F80010031B86404B0ECC1739401808290000E", "FFFFFFFFFFFFFF0000FF00FFFFFFFFFFFFFFFFFF", True),
    ("CPS4", "3B9B188001001225006480040100009044", "", False),
    ("CPS4", "3B9B188001001225006480000401009044", "", False),  # CPS4 "RC"
    ("CPS4", "3BDC18FF00001225006480000401009000", "", False),  # CPS4 T=0 only
)


@dataclass(frozen=True)
class AtrMatch:
    generation: str  # "CPS3", "CPS4"
    contactless: bool


def identify_atr(atr: bytes) -> AtrMatch | None:
    """Recognise a CPx card by its answer to reset (masked comparison); None when unknown."""
    for name, ref_hex, mask_hex, contactless in _ATRS:
        ref = bytes.fromhex(ref_hex)
        mask = bytes.fromhex(mask_hex.ljust(len(ref_hex), "F"))
        if len(atr) == len(ref) and all((a & m) == (r & m) for a, r, m in zip(atr, ref, mask, strict=False)):
            return AtrMatch(name, contactless)
    return None


# -------------------------------------------------------------------------------- typed responses


@dataclass(frozen=True)
class CardHolder:
    """Public holder data (readable without PIN)."""

    card_type: str  # CPS, CPF, CPE, CPA
    serial: str  # EF.SN.ICC without the ANS issuer prefix
    id_nat: str  # PSIdNat with its type prefix
    family_name: str
    given_name: str
    civility: str
    profession_code: str  # TRE_G15
    profession_label: str
    specialty_code: str
    situation_count: int
    valid_from: dt.date | None
    valid_to: dt.date | None


@dataclass(frozen=True)
class CardSituation:
    """One activity situation (PIN needed)."""

    index: int
    structure_id: str
    structure_name: str
    sector: str  # TRE_R02 SAxx
    mode: str
    role: str


@dataclass(frozen=True)
class PinStatus:
    tries_left: int
    verified: bool

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    @property
    def final_try(self) -> bool:
        return self.tries_left == 1


class SmartCardConnection(Protocol):
    """What the session needs from a connection (``PcscConnection`` or a test double)."""

    atr: bytes

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]: ...


# ------------------------------------------------------------------------------------ constants [E]

AID = bytes.fromhex("E828BD080F8025000001FF0010")
ANS_ISSUER = bytes.fromhex("8025000001")
EF_SN_ICC = (0x3F00, 0xD003)
EF_HOLDER = 0x7001
EF_SITUATION_FIRST = 0xD120
MAX_SITUATIONS = 15
EF_CERT = {KeyUse.AUTHENTICATION: 0xC020, KeyUse.SIGNATURE: 0xC010}
KEY_REF = {KeyUse.AUTHENTICATION: 0x20, KeyUse.SIGNATURE: 0x10}
PIN_REF = 0x81
PIN_PAD_TO = 8
CHUNK = 0xE7  # READ BINARY chunk (what the Cryptolib uses)
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

SW_OK = 0x9000


class PinRequired(AuthError):
    def __init__(self) -> None:
        super().__init__("Le code porteur doit d'abord être saisi pour cette opération.", code="pin_required")


def parse_tlv(data: bytes) -> list[tuple[int, bytes]]:
    """Flat BER-TLV with one-byte tags; raises ``CardProtocolError`` on malformed input."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise CardProtocolError("truncated TLV")
        tag, n = data[i], data[i + 1]
        i += 2
        if n == 0x81:
            if i >= len(data):
                raise CardProtocolError("truncated TLV length")
            n = data[i]
            i += 1
        elif n == 0x82:
            if i + 2 > len(data):
                raise CardProtocolError("truncated TLV length")
            n = int.from_bytes(data[i : i + 2], "big")
            i += 2
        elif n > 0x82:
            raise CardProtocolError("bad TLV length")
        if i + n > len(data):
            raise CardProtocolError("TLV value overruns the record")
        out.append((tag, data[i : i + n]))
        i += n
    return out


def _text(fields: dict[int, bytes], tag: int) -> str:
    try:
        return fields.get(tag, b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardProtocolError(f"tag {tag:02X} is not UTF-8") from exc


def _date(value: bytes) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value.decode("ascii"), "%Y%m%d").date()
    except (UnicodeDecodeError, ValueError) as exc:
        raise CardProtocolError("bad date on the card") from exc


def parse_holder_record(record: bytes, serial: str = "") -> CardHolder:
    """Holder record ``E0{80 type, 81 idNat, 82 nom, 83 prénom, …}`` [E] (also our CPS_INFO_PS)."""
    top = parse_tlv(record)
    if len(top) != 1 or top[0][0] != 0xE0:
        raise CardProtocolError("holder record template E0 expected")
    fields = dict(parse_tlv(top[0][1]))
    for required in (0x80, 0x81, 0x82):
        if required not in fields:
            raise CardProtocolError(f"holder record lacks tag {required:02X}")
    count = fields.get(0x88, b"\x00")
    return CardHolder(
        card_type=_text(fields, 0x80),
        serial=serial,
        id_nat=_text(fields, 0x81),
        family_name=_text(fields, 0x82),
        given_name=_text(fields, 0x83),
        civility=_text(fields, 0x84),
        profession_code=_text(fields, 0x85),
        profession_label=_text(fields, 0x86),
        specialty_code=_text(fields, 0x87),
        situation_count=min(count[0] if count else 0, MAX_SITUATIONS),
        valid_from=_date(fields.get(0x89, b"")),
        valid_to=_date(fields.get(0x8A, b"")),
    )


def parse_situation_record(record: bytes, index: int) -> CardSituation:
    """Situation ``EE{84 raison sociale, 85 Struct_IdNat, 86 SAxx, 87 mode, 88 rôle}`` [E]."""
    top = parse_tlv(record)
    if len(top) != 1 or top[0][0] != 0xEE:
        raise CardProtocolError("situation template EE expected")
    f = dict(parse_tlv(top[0][1]))
    return CardSituation(
        index=index,
        structure_id=_text(f, 0x85),
        structure_name=_text(f, 0x84),
        sector=_text(f, 0x86),
        mode=_text(f, 0x87),
        role=_text(f, 0x88),
    )


class CpsSession:
    """A session with the CPS application of one inserted card."""

    def __init__(self, connection: SmartCardConnection) -> None:
        self.connection = connection
        self.atr_match = identify_atr(connection.atr)
        if self.atr_match is None:
            raise UnknownCard(connection.atr)
        self._select_application()

    # -------------------------------------------------------------------------------- plumbing
    def _send(self, apdu: bytes, what: str) -> tuple[bytes, int]:
        return self.connection.send_and_receive(apdu)

    def _expect_ok(self, apdu: bytes, what: str) -> bytes:
        data, sw = self._send(apdu, what)
        if sw == SW_OK:
            return data
        if sw == 0x6982:
            raise PinRequired()
        if sw == 0x6983:
            raise PinBlocked()
        if sw in (0x6D00, 0x6E00) or (sw >> 8) not in (0x62, 0x63, 0x64, 0x65, 0x67, 0x69, 0x6A, 0x6B, 0x6C):
            raise CardProtocolError(f"{what}: unexpected status {sw:04X}")
        raise ApduError(sw, what)

    def _select_application(self) -> None:
        _data, sw = self._send(
            bytes([0x00, 0xA4, 0x04, 0x0C, len(AID)]) + AID, "sélection de l'application CPS"
        )
        if sw in (0x6A82, 0x6D00, 0x6E00, 0x6A86):
            raise UnknownCard(self.connection.atr)
        if sw != SW_OK:
            raise CardProtocolError(f"SELECT AID: status {sw:04X}")

    def _select_file(self, path: tuple[int, ...], *, from_mf: bool = False) -> int:
        """Select an EF (path from the MF, or FID in the application); return its size (FCP tag 80)."""
        raw = b"".join(fid.to_bytes(2, "big") for fid in path)
        p1 = 0x08 if from_mf else 0x02
        fcp = self._expect_ok(bytes([0x00, 0xA4, p1, 0x04, len(raw)]) + raw + b"\x00", "sélection de fichier")
        try:
            (tag, body), *_ = parse_tlv(fcp)
            if tag != 0x62:
                raise CardProtocolError("FCP template expected")
            fields = dict(parse_tlv(body))
            size = int.from_bytes(fields[0x80], "big")
        except (ValueError, KeyError) as exc:
            raise CardProtocolError("unreadable FCP") from exc
        return size

    def _read_ef(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            n = min(CHUNK, size - len(out))
            offset = len(out)
            chunk = self._expect_ok(
                bytes([0x00, 0xB0, (offset >> 8) & 0x7F, offset & 0xFF, n]), "lecture de fichier"
            )
            if not chunk:
                raise CardProtocolError("empty READ BINARY")
            out += chunk
        return out[:size]

    def _read(self, path: tuple[int, ...], *, from_mf: bool = False) -> bytes:
        size = self._select_file(path, from_mf=from_mf)
        data = self._read_ef(size)
        if from_mf:  # back into the application for the next application-relative selection
            self._select_application()
        return data

    # -------------------------------------------------------------------------------- verbs
    def read_serial(self) -> str:
        data = self._read(EF_SN_ICC[1:], from_mf=True)
        if len(data) != 12 or data[2:7] != ANS_ISSUER:
            raise CardProtocolError("EF.SN.ICC is not an ANS card serial")
        return data[7:].hex().upper().lstrip("0") or "0"

    def read_holder(self) -> CardHolder:
        serial = self.read_serial()
        return parse_holder_record(self._read((EF_HOLDER,)), serial)

    def read_situations(self, count: int) -> list[CardSituation]:
        """The activity situations (PIN must have been verified)."""
        out = []
        for i in range(min(count, MAX_SITUATIONS)):
            out.append(parse_situation_record(self._read((EF_SITUATION_FIRST + i,)), i))
        return out

    def pin_status(self) -> PinStatus:
        """Tries left without consuming one (VERIFY with no data)."""
        _, sw = self._send(bytes([0x00, 0x20, 0x00, PIN_REF]), "état du code porteur")
        if sw == SW_OK:
            return PinStatus(tries_left=3, verified=True)
        if sw == 0x6983:
            return PinStatus(tries_left=0, verified=False)
        if sw & 0xFFF0 == 0x63C0:
            return PinStatus(tries_left=sw & 0x0F, verified=False)
        raise CardProtocolError(f"PIN status: unexpected status {sw:04X}")

    def verify_pin(self, pin: str, *, confirm_final_try: bool = False) -> None:
        """Present the PIN once. Never retried. Refuses a badly formatted PIN before the card sees it.

        With one try left, refuses unless ``confirm_final_try`` (the user confirmed explicitly).
        """
        encoded = check_pin_format(pin)
        status = self.pin_status()
        if status.blocked:
            raise PinBlocked()
        if status.final_try and not confirm_final_try:
            raise PinFinalTryError()
        padded = encoded.ljust(PIN_PAD_TO, b"\xff")
        _, sw = self._send(bytes([0x00, 0x20, 0x00, PIN_REF, len(padded)]) + padded, "vérification du code")
        del padded, encoded
        if sw == SW_OK:
            return
        if sw == 0x6983:
            raise PinBlocked()
        if sw & 0xFFF0 == 0x63C0:
            left = sw & 0x0F
            raise PinBlocked() if left == 0 else WrongPin(left)
        raise CardProtocolError(f"VERIFY: unexpected status {sw:04X}")

    def unblock_pin(self, puk: str, new_pin: str) -> None:
        """RESET RETRY COUNTER with the 8-digit code de déblocage and a new 4-digit PIN."""
        puk_b = check_pin_format(puk, length=PUK_LENGTH, what="code de déblocage")
        pin_b = check_pin_format(new_pin)
        data = puk_b + pin_b.ljust(PIN_PAD_TO, b"\xff")
        _, sw = self._send(bytes([0x00, 0x2C, 0x00, PIN_REF, len(data)]) + data, "déblocage")
        del data, puk_b, pin_b
        if sw == SW_OK:
            return
        if sw & 0xFFF0 == 0x63C0:
            left = sw & 0x0F
            raise AuthError(
                f"Code de déblocage incorrect. Il reste {left} essai(s) avant le blocage définitif.",
                code="puk_wrong",
            )
        if sw == 0x6983:
            raise AuthError(
                "Le code de déblocage est bloqué : la carte doit être remplacée (contactez l'ANS).",
                code="puk_blocked",
            )
        raise CardProtocolError(f"RESET RETRY COUNTER: unexpected status {sw:04X}")

    def read_certificate(self, use: KeyUse) -> x509.Certificate:
        der = self._read((EF_CERT[use],))
        try:
            from cryptography import x509  # only where a certificate is parsed (start-up time)

            return x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise CardProtocolError("the certificate on the card is not valid DER") from exc

    def sign(self, use: KeyUse, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 / SHA-256 over ``data`` (hashed on the host)."""
        return self.sign_digest_info(use, SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest())

    def sign_digest_info(self, use: KeyUse, digest_info: bytes) -> bytes:
        """Sign a DER DigestInfo: signature key via PSO HASH + PSO CDS (SHA-256 only), authentication
        key via INTERNAL AUTHENTICATE (any DigestInfo: what TLS needs)."""
        if use is KeyUse.SIGNATURE:
            if not (digest_info.startswith(SHA256_DIGEST_INFO_PREFIX) and len(digest_info) == 51):
                raise ValueError("the signature key signs SHA-256 DigestInfo only")
            self._expect_ok(bytes([0x00, 0x22, 0x41, 0xB6, 0x03, 0x84, 0x01, KEY_REF[use]]), "MSE SET")
            digest = digest_info[len(SHA256_DIGEST_INFO_PREFIX) :]
            self._expect_ok(bytes([0x00, 0x2A, 0x90, 0xA0, 0x22, 0x90, 0x20]) + digest, "PSO HASH")
            sig = self._expect_ok(bytes([0x00, 0x2A, 0x9E, 0x9A, 0x00]), "signature")
        else:
            self._expect_ok(bytes([0x00, 0x22, 0x41, 0xA4, 0x03, 0x84, 0x01, KEY_REF[use]]), "MSE SET")
            sig = self._expect_ok(
                bytes([0x00, 0x88, 0x00, 0x00, len(digest_info)]) + digest_info + b"\x00",
                "authentification",
            )
        if len(sig) not in (128, 256, 384, 512):
            raise CardProtocolError(f"signature of unexpected length {len(sig)}")
        return sig
