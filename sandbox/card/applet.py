"""The emulated CPS card: an IAS-ECC-like application answering the APDUs of ``ps_agent.card``.

The file layout and data encodings are an emulator convention **[E]** (authentication.md §4.3); the
real CPS3/CPS4 layout is not public and production goes through the ANS Cryptolib (PKCS#11). What
is realistic: the CPS3 contact ATR (T=0, so case-4 commands answer ``61xx`` and need GET RESPONSE),
the IAS-ECC AID, EF.SN.ICC and EF_ACTUA, the PIN rules (4 digits, 3 tries then blocked, 8-digit
PUK via RESET RETRY COUNTER), key references ``20`` (authentication) / ``10`` (signature), and the
MSE SET / PSO HASH / PSO CDS / INTERNAL AUTHENTICATE signing commands with RSA PKCS#1 v1.5.

Layout [E]::

    3F00 (MF)
    ├── D003  EF.SN.ICC   00 00 | 80 25 00 00 01 | serial (5 bytes BCD)
    ├── D010  EF_ACTUA    EC { 81 start BCD YYYYMMDDhhmmss, 82 end }
    └── 0001  DF, AID E8 28 BD 08 0F 80 25 00 00 01 FF 00 10
        ├── 7001  holder   E0 { 80 type, 81 idNat, 82 nom, 83 prénom, 84 civilité, 85 profession,
        │                       86 libellé, 87 spécialité, 88 nb situations, 89 début, 8A fin }  (public)
        ├── D120…D12E situations  EE { 84 raison sociale, 85 Struct_IdNat, 86 SAxx, 87 mode, 88 rôle }
        │                         (PIN needed)
        ├── C020  authentication certificate (DER, public)
        └── C010  signature certificate (DER, public)
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.profiles import CardProfile

CPS3_ATR = bytes.fromhex("3BAC00402A001225006480000310009000")
UNKNOWN_ATR = bytes.fromhex("3B6E00008031806686B0840C016E0183009000")  # a payment-card-like ATR
AID = bytes.fromhex("E828BD080F8025000001FF0010")
ANS_ISSUER = bytes.fromhex("8025000001")
PIN_REF = 0x81
KEY_AUTH = 0x20
KEY_SIGN = 0x10
PIN_TRIES = 3
PUK_TRIES = 10
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY = 0x6982  # security status not satisfied (PIN needed)
SW_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80
SW_NOT_FOUND = 0x6A82
SW_REF_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS = 0x6D00
SW_CLA = 0x6E00


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    if len(value) < 0x100:
        return bytes([tag, 0x81, len(value)]) + value
    return bytes([tag, 0x82]) + len(value).to_bytes(2, "big") + value


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)


def holder_record(profile: CardProfile, not_before: dt.datetime, not_after: dt.datetime) -> bytes:
    fields = [
        (0x80, profile.card_type),
        (0x81, profile.id_nat),
        (0x82, profile.family_name),
        (0x83, profile.given_name),
        (0x84, profile.civility),
        (0x85, profile.profession_code),
        (0x86, profile.profession_label),
        (0x87, profile.specialty_code),
    ]
    body = b"".join(_tlv(tag, value.encode("utf-8")) for tag, value in fields)
    body += _tlv(0x88, bytes([len(profile.situations)]))
    body += _tlv(0x89, not_before.strftime("%Y%m%d").encode())
    body += _tlv(0x8A, not_after.strftime("%Y%m%d").encode())
    return _tlv(0xE0, body)


def situation_record(profile: CardProfile, index: int) -> bytes:
    s = profile.situations[index]
    body = (
        _tlv(0x84, s.structure_name.encode("utf-8"))
        + _tlv(0x85, s.structure_id.encode())
        + _tlv(0x86, s.sector.encode())
        + _tlv(0x87, s.mode.encode())
        + _tlv(0x88, s.role.encode())
    )
    return _tlv(0xEE, body)


@dataclass
class _File:
    data: bytes
    pin_protected: bool = False


@dataclass
class CardKeys:
    auth_key: rsa.RSAPrivateKey
    sign_key: rsa.RSAPrivateKey
    auth_cert_der: bytes
    sign_cert_der: bytes
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass
class CpsApplet:
    """State and APDU processing of one emulated card. Keeps PIN counters across insertions."""

    profile: CardProfile
    keys: CardKeys
    t0: bool = True  # CPS3 announces T=0: answer case-4 commands with 61xx (GET RESPONSE needed)
    garbage: bool = False  # fault injection: answer every APDU with meaningless bytes
    atr: bytes = CPS3_ATR
    pin: bytes = b""
    pin_tries: int = PIN_TRIES
    puk_tries: int = PUK_TRIES
    apdu_count: int = 0
    _files: dict[tuple[int, ...], _File] = field(default_factory=dict)
    _pin_ok: bool = False
    _current: tuple[int, ...] = (0x3F00,)
    _app_selected: bool = False
    _env: dict[str, int] = field(default_factory=dict)
    _hash: bytes | None = None
    _pending: bytes = b""

    def __post_init__(self) -> None:
        self.pin = self.profile.pin.encode()
        if self.profile.pin_blocked:
            self.pin_tries = 0
        serial = self.profile.serial.rjust(10, "0")[-10:]
        actua = _tlv(
            0xEC,
            _tlv(0x81, _bcd(self.keys.not_before.strftime("%Y%m%d%H%M%S")))
            + _tlv(0x82, _bcd(self.keys.not_after.strftime("%Y%m%d%H%M%S"))),
        )
        app = (0x3F00, 0x0001)
        self._files = {
            (0x3F00, 0xD003): _File(b"\x00\x00" + ANS_ISSUER + _bcd(serial)),
            (0x3F00, 0xD010): _File(actua),
            (*app, 0x7001): _File(holder_record(self.profile, self.keys.not_before, self.keys.not_after)),
            (*app, 0xC020): _File(self.keys.auth_cert_der),
            (*app, 0xC010): _File(self.keys.sign_cert_der),
        }
        for i in range(len(self.profile.situations)):
            self._files[(*app, 0xD120 + i)] = _File(situation_record(self.profile, i), pin_protected=True)

    # ------------------------------------------------------------------ power
    def power_on(self) -> None:
        self._pin_ok = False
        self._current = (0x3F00,)
        self._app_selected = False
        self._env.clear()
        self._hash = None
        self._pending = b""

    # ------------------------------------------------------------------ APDUs
    def process(self, apdu: bytes) -> bytes:
        self.apdu_count += 1
        if self.garbage:
            # Meaningless bytes that can never read as a status word of ISO 7816-4 (random ones sometimes
            # did, e.g. 6AE1, and the reader then rightly reported a refusal instead of nonsense).
            return b"\xa5" * (1 + self.apdu_count % 3)
        if len(apdu) < 4:
            return _sw(SW_WRONG_LENGTH)
        cla, ins, p1, p2 = apdu[:4]
        lc_data, le = _parse_body(apdu[4:])
        if lc_data is None:
            return _sw(SW_WRONG_LENGTH)
        if cla & 0xF0 != 0x00:
            return _sw(SW_CLA)
        if ins != 0xC0:
            self._pending = b""
        handler = {
            0xA4: self._select,
            0xB0: self._read_binary,
            0x20: self._verify,
            0x2C: self._reset_retry_counter,
            0x22: self._mse_set,
            0x2A: self._pso,
            0x88: self._internal_authenticate,
            0x84: self._get_challenge,
            0xC0: self._get_response,
        }.get(ins)
        if handler is None:
            return _sw(SW_INS)
        return handler(p1, p2, lc_data, le)

    def _case4(self, data: bytes, le: int | None) -> bytes:
        """Answer a case-4 command: directly (T=1) or with 61xx then GET RESPONSE (T=0)."""
        if self.t0:
            self._pending = data
            return _sw(0x6100 | (len(data) & 0xFF))
        return data + _sw(SW_OK)

    def _get_response(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if not self._pending:
            return _sw(SW_CONDITIONS)
        n = 256 if not le else le
        chunk, self._pending = self._pending[:n], self._pending[n:]
        if self._pending:
            return chunk + _sw(0x6100 | (len(self._pending) & 0xFF))
        return chunk + _sw(SW_OK)

    def _select(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        target: tuple[int, ...] | None = None
        if p1 == 0x04:
            if data != AID:
                return _sw(SW_NOT_FOUND)
            target = (0x3F00, 0x0001)
            self._app_selected = True
        elif p1 in (0x00, 0x02) and len(data) == 2:
            fid = int.from_bytes(data, "big")
            if fid == 0x3F00:
                target = (0x3F00,)
            else:
                base = self._current if self._is_df(self._current) else self._current[:-1]
                target = (*base, fid)
        elif p1 in (0x08, 0x09) and data and len(data) % 2 == 0:
            fids = tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
            base = (
                (0x3F00,)
                if p1 == 0x08
                else (self._current if self._is_df(self._current) else self._current[:-1])
            )
            target = (*base, *fids)
        else:
            return _sw(SW_WRONG_P1P2)
        if target != (0x3F00,) and target not in self._files and not self._is_df(target):
            return _sw(SW_NOT_FOUND)
        self._current = target
        if p2 & 0x0C == 0x0C:  # no response data
            return _sw(SW_OK)
        size = len(self._files[target].data) if target in self._files else 0
        fcp = _tlv(0x62, _tlv(0x80, size.to_bytes(2, "big")) + _tlv(0x83, target[-1].to_bytes(2, "big")))
        return self._case4(fcp, le)

    @staticmethod
    def _is_df(path: tuple[int, ...]) -> bool:
        return path in ((0x3F00,), (0x3F00, 0x0001))

    def _read_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        f = self._files.get(self._current)
        if f is None:
            return _sw(SW_CONDITIONS)  # no EF selected
        if f.pin_protected and not self._pin_ok:
            return _sw(SW_SECURITY)
        offset = ((p1 & 0x7F) << 8) | p2
        if offset > len(f.data):
            return _sw(SW_WRONG_P1P2)
        remaining = len(f.data) - offset
        want = 256 if le == 0 or le is None else le
        if want > remaining:
            if self.t0 and remaining > 0:
                return _sw(0x6C00 | (remaining & 0xFF))  # T=0: "wrong Le, use xx"
            return f.data[offset:] + _sw(0x6282)  # end of file reached before Le bytes
        return f.data[offset : offset + want] + _sw(SW_OK)

    def _verify(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p2 != PIN_REF:
            return _sw(SW_REF_NOT_FOUND)
        if self.pin_tries == 0:
            return _sw(SW_BLOCKED)
        if not data:  # status query
            return _sw(SW_OK) if self._pin_ok else _sw(0x63C0 | self.pin_tries)
        if data.rstrip(b"\xff\x00") == self.pin:
            self.pin_tries = PIN_TRIES
            self._pin_ok = True
            return _sw(SW_OK)
        self._pin_ok = False
        self.pin_tries -= 1
        return _sw(SW_BLOCKED) if self.pin_tries == 0 else _sw(0x63C0 | self.pin_tries)

    def _reset_retry_counter(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p2 != PIN_REF or p1 != 0x00:
            return _sw(SW_WRONG_P1P2)
        if self.puk_tries == 0:
            return _sw(SW_BLOCKED)
        if len(data) < 8 + 4:
            return _sw(SW_WRONG_DATA)
        puk, new_pin = data[:8], data[8:].rstrip(b"\xff\x00")
        if puk != self.profile.puk.encode():
            self.puk_tries -= 1
            return _sw(SW_BLOCKED) if self.puk_tries == 0 else _sw(0x63C0 | self.puk_tries)
        if not (new_pin.isdigit() and len(new_pin) == 4):
            return _sw(SW_WRONG_DATA)
        self.puk_tries = PUK_TRIES
        self.pin = new_pin
        self.pin_tries = PIN_TRIES
        self._pin_ok = False
        return _sw(SW_OK)

    def _mse_set(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p1 != 0x41 or p2 not in (0xB6, 0xA4):
            return _sw(SW_WRONG_P1P2)
        ref = _find_tag(data, 0x84)
        if ref is None or len(ref) != 1:
            return _sw(SW_WRONG_DATA)
        expected = KEY_SIGN if p2 == 0xB6 else KEY_AUTH
        if ref[0] != expected:
            return _sw(SW_REF_NOT_FOUND)
        self._env["dst" if p2 == 0xB6 else "at"] = ref[0]
        self._hash = None
        return _sw(SW_OK)

    def _pso(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if (p1, p2) == (0x90, 0xA0):  # PSO HASH: 90 20 <sha256>
            digest = _find_tag(data, 0x90)
            if digest is None or len(digest) != 32:
                return _sw(SW_WRONG_DATA)
            self._hash = digest
            return _sw(SW_OK)
        if (p1, p2) == (0x9E, 0x9A):  # PSO COMPUTE DIGITAL SIGNATURE (case 2)
            if "dst" not in self._env or self._hash is None:
                return _sw(SW_CONDITIONS)
            if not self._pin_ok:
                return _sw(SW_SECURITY)
            signature = _raw_pkcs1(self.keys.sign_key, SHA256_DIGEST_INFO + self._hash)
            self._hash = None
            if self.t0:
                return self._case4(signature, le)
            return signature + _sw(SW_OK)
        return _sw(SW_WRONG_P1P2)

    def _internal_authenticate(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if "at" not in self._env:
            return _sw(SW_CONDITIONS)
        if not self._pin_ok:
            return _sw(SW_SECURITY)
        if not data or len(data) > self.keys.auth_key.key_size // 8 - 11:
            return _sw(SW_WRONG_DATA)
        return self._case4(_raw_pkcs1(self.keys.auth_key, data), le)

    def _get_challenge(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        return os.urandom(8 if not le else le) + _sw(SW_OK)


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def _parse_body(body: bytes) -> tuple[bytes | None, int | None]:
    """Short APDUs only: returns (data, le); data None when the length bytes are inconsistent."""
    if not body:
        return b"", None
    if len(body) == 1:
        return b"", body[0]
    lc = body[0]
    if lc == 0:
        return None, None
    if len(body) == 1 + lc:
        return body[1:], None
    if len(body) == 2 + lc:
        return body[1 : 1 + lc], body[-1]
    return None, None


def _find_tag(data: bytes, tag: int) -> bytes | None:
    i = 0
    while i + 2 <= len(data):
        t, n = data[i], data[i + 1]
        if t == tag:
            return data[i + 2 : i + 2 + n]
        i += 2 + n
    return None


def _raw_pkcs1(key: rsa.RSAPrivateKey, payload: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over an arbitrary payload (the DigestInfo): EMSA padding + raw RSA."""
    k = key.key_size // 8
    em = b"\x00\x01" + b"\xff" * (k - len(payload) - 3) + b"\x00" + payload
    n = key.private_numbers()
    m = int.from_bytes(em, "big")
    s1, s2 = pow(m, n.dmp1, n.p), pow(m, n.dmq1, n.q)  # CRT: ~4x faster than pow(m, d, N)
    s = s2 + n.q * ((n.iqmp * (s1 - s2)) % n.p)
    return s.to_bytes(k, "big")


def keys_from_pki(pki: object, profile: str) -> CardKeys:
    """Take the profile's key pairs from a ``sandbox.pki.TestPki``."""
    creds = pki.card(profile)  # type: ignore[attr-defined]
    der = serialization.Encoding.DER
    return CardKeys(
        auth_key=creds.auth_key,
        sign_key=creds.sign_key,
        auth_cert_der=creds.auth_cert.public_bytes(der),
        sign_cert_der=creds.sign_cert.public_bytes(der),
        not_before=creds.auth_cert.not_valid_before_utc,
        not_after=creds.auth_cert.not_valid_after_utc,
    )
