"""PKCS#11 back-end (PyKCS11): the ANS Cryptolib CPS in production, SoftHSM2 in tests.

``Pkcs11Token.open(module, token_label=...)`` loads the module (path configurable, auto-detected in
the Cryptolib's standard install locations by ``find_cryptolib``), finds the token, reads the public
objects (certificates, ``CPS_INFO_PS``) and, after ``login(pin)``, the private ones (keys,
``CPS_ACTIVITY_xx_PS``). ``signer(KeyUse)`` gives a ``Signer`` whose key never leaves the token:
authentication key = ``CKA_ID`` ending ``0x20``, signature key = ``CKA_ID`` ending ``0x10``
(authentication.md §2.3).

``Pkcs11Session`` is the DIRECTE ``Credentials`` over a token: same lifecycle as the card
``AuthSession`` (closes when the token disappears, after the idle time, or on ``close``).

PIN rules: format checked before ``C_Login``; the token flags ``CKF_USER_PIN_LOCKED`` /
``CKF_USER_PIN_FINAL_TRY`` are checked before presenting it (final try needs confirmation); one
``C_Login`` per call, never retried.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import PyKCS11
from cryptography import x509

from ps_agent.auth.certs import check_key_usage, check_validity, load_bundle, subject_fields, verify_chain
from ps_agent.auth.direct import DirectSessionBase, KeySigner, card_identity
from ps_agent.auth.errors import (
    PinBlocked,
    PinFinalTryError,
    Pkcs11Error,
    WrongPin,
    check_pin_format,
)
from ps_agent.auth.model import Activity, KeyUse, ProfessionalIdentity
from ps_agent.card.errors import CardProtocolError
from ps_agent.errors import AuthError

log = logging.getLogger(__name__)

MODULE_ENV = "PS_AGENT_PKCS11_MODULE"  # explicit module path (wins over auto-detection)

# Standard install locations of the ANS Cryptolib CPS (authentication.md §2.3) [S][3P].
CRYPTOLIB_CANDIDATES: dict[str, tuple[str, ...]] = {
    "linux": (
        "/usr/local/galss/libcps3_pkcs11_lux.so",
        "/usr/local/lib/libcps3_pkcs11_lux.so",
        "/usr/lib/libcps3_pkcs11_lux.so",
        "/usr/lib64/libcps3_pkcs11_lux.so",
        "/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so",
    ),
    "darwin": ("/usr/local/lib/libcps3_pkcs11_osx.dylib", "/Library/cps/libcps3_pkcs11_osx.dylib"),
    "win32": (
        r"C:\Windows\System32\cps3_pkcs11_w64.dll",
        r"C:\Windows\SysWOW64\cps3_pkcs11_w32.dll",
        r"C:\Windows\System32\cps3_pkcs11_w32.dll",
    ),
}

KEY_ID_SUFFIX = {KeyUse.AUTHENTICATION: 0x20, KeyUse.SIGNATURE: 0x10}
INFO_LABEL = "CPS_INFO_PS"
ACTIVITY_LABEL = "CPS_ACTIVITY_{:02d}_PS"


def find_cryptolib(platform: str | None = None) -> Path | None:
    """``$PS_AGENT_PKCS11_MODULE`` if set, else the first existing standard Cryptolib path."""
    env = os.environ.get(MODULE_ENV)
    if env:
        return Path(env)
    plat = platform or ("linux" if sys.platform.startswith("linux") else sys.platform)
    for candidate in CRYPTOLIB_CANDIDATES.get(plat, ()):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def load_module(path: str | Path) -> PyKCS11.PyKCS11Lib:
    p = Path(path)
    if not p.is_file():
        raise Pkcs11Error(
            f"Le module PKCS#11 « {p} » est introuvable. Installez la Cryptolib CPS ou indiquez son "
            f"chemin (variable {MODULE_ENV} ou réglage « module PKCS#11 »).",
            code="pkcs11_missing",
        )
    lib = PyKCS11.PyKCS11Lib()
    try:
        lib.load(str(p))
    except PyKCS11.PyKCS11Error as exc:
        raise Pkcs11Error(
            f"Le fichier « {p} » n'est pas une bibliothèque PKCS#11 utilisable ({exc}).",
            code="pkcs11_not_a_module",
        ) from exc
    return lib


def _ckr(exc: PyKCS11.PyKCS11Error) -> int:
    return int(getattr(exc, "value", 0))


class Pkcs11Signer(KeySigner):
    """``Signer`` over a private key object of a logged-in token (C_Sign serialised)."""

    def __init__(
        self,
        token: Pkcs11Token,
        use: KeyUse,
        key: object,
        cert: x509.Certificate,
        chain: list[x509.Certificate],
    ) -> None:
        super().__init__(use, cert, chain)
        self._token = token
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._token._sign(self._key, data, PyKCS11.CKM_SHA256_RSA_PKCS)

    def sign_digest_info(self, digest_info: bytes) -> bytes:
        return self._token._sign(self._key, digest_info, PyKCS11.CKM_RSA_PKCS)


class Pkcs11Token:
    """One token of a PKCS#11 module (public phase at open, private phase after ``login``)."""

    def __init__(self, lib: PyKCS11.PyKCS11Lib, slot: int, module_path: Path) -> None:
        self._lib = lib
        self.slot = slot
        self.module_path = module_path
        self._lock = threading.Lock()
        try:
            self._session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        except PyKCS11.PyKCS11Error:
            self._session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION)
        info = lib.getTokenInfo(slot)
        self.label = info.label.strip()
        self.serial = info.serialNumber.strip()
        self.logged_in = False
        self.chain: list[x509.Certificate] = []

    @classmethod
    def open(cls, module: str | Path | None = None, *, token_label: str | None = None) -> Pkcs11Token:
        path = Path(module) if module else find_cryptolib()
        if path is None:
            raise Pkcs11Error(
                "La Cryptolib CPS n'a pas été trouvée dans ses emplacements habituels : installez-la "
                f"ou indiquez le chemin du module PKCS#11 (variable {MODULE_ENV}).",
                code="pkcs11_not_found",
            )
        lib = load_module(path)
        try:
            slots = lib.getSlotList(tokenPresent=True)
        except PyKCS11.PyKCS11Error as exc:
            raise Pkcs11Error(f"Le module PKCS#11 ne répond pas ({exc}).", code="pkcs11_error") from exc
        for slot in slots:
            label = lib.getTokenInfo(slot).label.strip()
            if token_label is None or label == token_label:
                return cls(lib, slot, path)
        if token_label:
            raise Pkcs11Error(f"Aucune carte « {token_label} » n'est présente.", code="pkcs11_no_token")
        raise Pkcs11Error(
            "Aucune carte n'est présente dans les lecteurs du module PKCS#11.", code="pkcs11_no_token"
        )

    # ------------------------------------------------------------------------------ public phase
    def token_present(self) -> bool:
        try:
            return bool(self._lib.getSlotInfo(self.slot).flags & PyKCS11.CKF_TOKEN_PRESENT)
        except PyKCS11.PyKCS11Error:
            return False

    def pin_flags(self) -> int:
        return int(self._lib.getTokenInfo(self.slot).flags)

    def _find(self, **attrs: object) -> list[object]:
        template = [(getattr(PyKCS11, k), v) for k, v in attrs.items()]
        with self._lock:
            return list(self._session.findObjects(template))

    def _id_of(self, obj: object) -> bytes:
        (value,) = self._session.getAttributeValue(obj, [PyKCS11.CKA_ID])
        return bytes(value or b"")

    def certificate(self, use: KeyUse) -> x509.Certificate:
        for obj in self._find(CKA_CLASS=PyKCS11.CKO_CERTIFICATE):
            if self._id_of(obj)[-1:] == bytes([KEY_ID_SUFFIX[use]]):
                (der,) = self._session.getAttributeValue(obj, [PyKCS11.CKA_VALUE])
                return x509.load_der_x509_certificate(bytes(der))
        raise Pkcs11Error(
            f"Le certificat {'de signature' if use is KeyUse.SIGNATURE else 'd’authentification'} est "
            "absent de la carte.",
            code="pkcs11_no_cert",
        )

    def data_object(self, label: str) -> bytes | None:
        for obj in self._find(CKA_CLASS=PyKCS11.CKO_DATA, CKA_LABEL=label):
            (value,) = self._session.getAttributeValue(obj, [PyKCS11.CKA_VALUE])
            return bytes(value or b"")
        return None

    # ------------------------------------------------------------------------------ login phase
    def login(self, pin: str, *, confirm_final_try: bool = False) -> None:
        encoded = check_pin_format(pin)
        flags = self.pin_flags()
        if flags & PyKCS11.CKF_USER_PIN_LOCKED:
            raise PinBlocked()
        if flags & PyKCS11.CKF_USER_PIN_FINAL_TRY and not confirm_final_try:
            raise PinFinalTryError()
        try:
            with self._lock:
                self._session.login(encoded.decode("ascii"))
        except PyKCS11.PyKCS11Error as exc:
            code = _ckr(exc)
            if code == PyKCS11.CKR_PIN_INCORRECT:
                after = self.pin_flags()
                if after & PyKCS11.CKF_USER_PIN_LOCKED:
                    raise PinBlocked() from None
                if after & PyKCS11.CKF_USER_PIN_FINAL_TRY:
                    raise WrongPin(1) from None
                if after & PyKCS11.CKF_USER_PIN_COUNT_LOW:
                    raise WrongPin(2) from None
                raise WrongPin(None) from None
            if code == PyKCS11.CKR_PIN_LOCKED:
                raise PinBlocked() from None
            if code in (PyKCS11.CKR_PIN_LEN_RANGE, PyKCS11.CKR_PIN_INVALID):
                from ps_agent.auth.errors import PinFormatError

                raise PinFormatError() from None
            if code == PyKCS11.CKR_USER_ALREADY_LOGGED_IN:
                self.logged_in = True
                return
            if code in (
                PyKCS11.CKR_TOKEN_NOT_PRESENT,
                PyKCS11.CKR_DEVICE_REMOVED,
                PyKCS11.CKR_SESSION_HANDLE_INVALID,
            ):
                raise Pkcs11Error("La carte a été retirée.", code="pkcs11_token_removed") from None
            raise Pkcs11Error(f"Connexion à la carte refusée ({exc}).", code="pkcs11_login") from None
        finally:
            del encoded
        self.logged_in = True

    def signer(self, use: KeyUse) -> Pkcs11Signer:
        if not self.logged_in:
            raise Pkcs11Error("Le code porteur doit d'abord être saisi.", code="pkcs11_not_logged_in")
        cert = self.certificate(use)
        for key in self._find(CKA_CLASS=PyKCS11.CKO_PRIVATE_KEY):
            if self._id_of(key)[-1:] == bytes([KEY_ID_SUFFIX[use]]):
                return Pkcs11Signer(self, use, key, cert, self.chain)
        raise Pkcs11Error("La clé privée correspondante est absente de la carte.", code="pkcs11_no_key")

    def _sign(self, key: object, data: bytes, mechanism: int) -> bytes:
        try:
            with self._lock:
                return bytes(self._session.sign(key, data, PyKCS11.Mechanism(mechanism, None)))
        except PyKCS11.PyKCS11Error as exc:
            code = _ckr(exc)
            if code in (
                PyKCS11.CKR_TOKEN_NOT_PRESENT,
                PyKCS11.CKR_DEVICE_REMOVED,
                PyKCS11.CKR_SESSION_HANDLE_INVALID,
                PyKCS11.CKR_SESSION_CLOSED,
            ):
                raise Pkcs11Error(
                    "La carte a été retirée pendant la signature.", code="pkcs11_token_removed"
                ) from None
            if code == PyKCS11.CKR_USER_NOT_LOGGED_IN:
                raise Pkcs11Error(
                    "Le code porteur doit d'abord être saisi.", code="pkcs11_not_logged_in"
                ) from None
            raise Pkcs11Error(f"La signature par la carte a échoué ({exc}).", code="pkcs11_sign") from None

    def close(self) -> None:
        with self._lock:
            if self.logged_in:
                with contextlib.suppress(PyKCS11.PyKCS11Error):
                    self._session.logout()
                self.logged_in = False
            with contextlib.suppress(PyKCS11.PyKCS11Error):
                self._session.closeSession()

    def __repr__(self) -> str:
        return f"Pkcs11Token(label={self.label!r}, module={str(self.module_path)!r})"


class Pkcs11Session(DirectSessionBase):
    """DIRECTE ``Credentials`` over a PKCS#11 token (Cryptolib CPS). Same lifecycle as ``AuthSession``."""

    def __init__(self, token: Pkcs11Token, identity: ProfessionalIdentity, idle_timeout_s: float) -> None:
        self.token = token
        self._identity = identity
        self._auth = token.signer(KeyUse.AUTHENTICATION)
        self._sign = token.signer(KeyUse.SIGNATURE)
        self.idle_timeout_s = idle_timeout_s
        self.closed_reason: str | None = None
        self._last_use = time.monotonic()
        self._callbacks: list[Callable[[str], None]] = []
        self._transports: list[httpx.BaseTransport] = []
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="pkcs11-session", daemon=True)

    @classmethod
    def open(
        cls,
        pin: str,
        *,
        module: str | Path | None = None,
        token_label: str | None = None,
        situation_index: int = 0,
        idle_timeout_s: float = 30 * 60.0,
        confirm_final_try: bool = False,
        ca_file: str | Path | None = None,
    ) -> Pkcs11Session:
        check_pin_format(pin)
        if isinstance(situation_index, bool) or not isinstance(situation_index, int) or situation_index < 0:
            from ps_agent.auth.session import situation_index as to_index

            to_index(situation_index + 1 if isinstance(situation_index, int) else situation_index)
        token = Pkcs11Token.open(module, token_label=token_label)
        try:
            auth_cert = token.certificate(KeyUse.AUTHENTICATION)
            sign_cert = token.certificate(KeyUse.SIGNATURE)
            for cert, use in ((auth_cert, KeyUse.AUTHENTICATION), (sign_cert, KeyUse.SIGNATURE)):
                check_validity(cert, use)
                check_key_usage(cert, use)
            if ca_file is not None:
                token.chain = verify_chain(auth_cert, load_bundle(ca_file))
                verify_chain(sign_cert, load_bundle(ca_file))
            token.login(pin, confirm_final_try=confirm_final_try)
            identity = identity_from_token(token, auth_cert, situation_index)
            identity.extra["subject_dn"] = sign_cert.subject.rfc4514_string()
            session = cls(token, identity, idle_timeout_s)
        except BaseException:
            token.close()
            raise
        session._watcher.start()
        return session

    def _tls_chain(self, ca_file: str) -> list[x509.Certificate]:
        return [c for c in self._auth.chain if c.issuer != c.subject]

    def _close(self, reason: str) -> None:
        with self._state:
            if self.closed_reason is not None:
                return
            self.closed_reason = reason
            callbacks, self._callbacks = self._callbacks, []
            transports, self._transports = self._transports, []
        self._stop.set()
        for t in transports:
            with contextlib.suppress(Exception):
                t.close()
        self.token.close()
        for cb in callbacks:
            try:
                cb(reason)
            except Exception:
                log.exception("on_closed callback failed")

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            if time.monotonic() - self._last_use > self.idle_timeout_s:
                self._close("idle")
                return
            if not self.token.token_present():
                self._close("removed")
                return


def identity_from_token(
    token: Pkcs11Token, auth_cert: x509.Certificate, situation_index: int
) -> ProfessionalIdentity:
    """Identity from ``CPS_INFO_PS`` / ``CPS_ACTIVITY_xx_PS`` [E: our encoding, same as the emulated
    card's records], falling back to the certificate subject (CN = idNat, SN, GN, title)."""
    from ps_agent.card.cps import parse_holder_record, parse_situation_record

    subject = subject_fields(auth_cert.subject)
    info = token.data_object(INFO_LABEL)
    holder = None
    if info:
        try:
            holder = parse_holder_record(info, token.serial)
        except CardProtocolError:
            log.warning("CPS_INFO_PS not in the expected format: identity taken from the certificate")
    activity = None
    extra: dict[str, str] = {}
    raw = token.data_object(ACTIVITY_LABEL.format(situation_index + 1))
    if not raw and situation_index > 0:
        raise AuthError(
            f"La situation d'exercice n° {situation_index + 1} n'existe pas sur la carte : "
            "choisissez un numéro plus petit (la première est la n° 1).",
            code="bad_situation",
        )
    if raw:
        try:
            s = parse_situation_record(raw, situation_index)
            activity = Activity(s.structure_id, s.structure_name, s.sector, s.role)
            extra["situation_mode"] = s.mode
        except CardProtocolError:
            log.warning("%s not in the expected format", ACTIVITY_LABEL.format(situation_index + 1))
    return card_identity(holder, activity, serial=token.serial, subject=subject, extra=extra)
