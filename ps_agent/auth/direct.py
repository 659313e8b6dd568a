"""What the two DIRECTE sessions share (card over PC/SC: ``AuthSession``; Cryptolib/PKCS#11:
``Pkcs11Session``): the ``Credentials`` surface, the idle timer and the close callbacks.

A subclass sets ``_identity``, ``_sign``, ``_auth`` (signers), ``_state`` (a lock), ``_transports``,
``_callbacks``, ``closed_reason``, ``_last_use``, ``idle_timeout_s``; it implements ``_close(reason)``
(release its back-end, then call the callbacks) and ``_tls_chain(ca_file)`` (the intermediates sent in TLS).

Time for the idle rule comes from ``clock`` (seconds, monotonic): ``time.monotonic`` unless the session
was given another one (tests move a fake clock instead of sleeping).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Self

import httpx
from cryptography import x509

from ps_agent.auth.errors import SessionClosed
from ps_agent.auth.model import Activity, AuthMode, KeyUse, ProfessionalIdentity

# [I] A CPE holder without a profession code (structure staff card) acts as a medical secretary.
CPE_NON_PS_ROLE = "SECRETARIAT_MEDICAL"


def card_identity(
    holder: Any | None,
    activity: Activity | None,
    *,
    serial: str,
    subject: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> ProfessionalIdentity:
    """THE identity read from a CPS card, for both routes (PC/SC ``AuthSession`` and PKCS#11
    ``Pkcs11Session``): same fields, same ``card_serial`` (``extra``), same ``non_ps_role`` rule.

    ``holder`` is the card's holder record (``ps_agent.card.cps.CardHolder``); when it is unreadable
    (PKCS#11 token without the data object), the certificate ``subject`` fields (CN = idNat, SN, GN,
    title) are used instead."""
    if holder is not None:
        non_ps_role = CPE_NON_PS_ROLE if holder.card_type == "CPE" and not holder.profession_code else ""
        base = {"card_serial": serial or holder.serial, "civility": getattr(holder, "civility", "")}
        return ProfessionalIdentity(
            id_nat=holder.id_nat,
            family_name=holder.family_name,
            given_name=holder.given_name,
            profession_code=holder.profession_code,
            profession_label=holder.profession_label,
            specialty_code=holder.specialty_code,
            card_type=holder.card_type,
            non_ps_role=non_ps_role,
            activity=activity,
            extra={**base, **(extra or {})},
        )
    sub = subject or {}
    return ProfessionalIdentity(
        id_nat=sub.get("CN", ""),
        family_name=sub.get("SN", ""),
        given_name=sub.get("GN", ""),
        profession_code="",
        profession_label=sub.get("title", ""),
        card_type="CPS",
        activity=activity,
        extra={"card_serial": serial, **(extra or {})},
    )


class KeySigner:
    """What the card and PKCS#11 ``Signer`` implementations share: the key's use, certificate and chain.
    Subclasses implement ``sign`` and ``sign_digest_info``."""

    def __init__(self, use: KeyUse, cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
        self.use = use
        self._cert = cert
        self._chain = chain

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def chain(self) -> list[x509.Certificate]:
        return list(self._chain)

    def sign(self, data: bytes) -> bytes:
        raise NotImplementedError

    def sign_digest_info(self, digest_info: bytes) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:  # never shows key material
        return f"{type(self).__name__}({self.use.value}, {self._cert.subject.rfc4514_string()!r})"


class DirectSessionBase:
    _identity: ProfessionalIdentity
    _sign: KeySigner
    _auth: KeySigner
    _state: threading.Lock | threading.RLock
    _transports: list[httpx.BaseTransport]
    _callbacks: list[Callable[[str], None]]
    closed_reason: str | None
    _last_use: float
    idle_timeout_s: float
    clock: Callable[[], float] = time.monotonic  # injectable (tests); a builtin: not bound as a method

    # ------------------------------------------------------------------------------ Credentials
    @property
    def identity(self) -> ProfessionalIdentity:
        return self._identity

    @property
    def mode(self) -> AuthMode:
        return AuthMode.DIRECTE

    def vihf_signer(self) -> KeySigner:
        """The signature key (non-repudiation): VIHF and XAdES. Using it counts as activity."""
        self.touch()
        return self._sign

    def auth_signer(self) -> KeySigner:
        """The authentication key (TLS client authentication)."""
        self.touch()
        return self._auth

    def tls_transport(self, *, ca_file: str, verify_host: bool = True) -> httpx.BaseTransport:
        """Mutual TLS 1.2 whose client signature is made by the card/token (tlslite-ng route); the
        transport is tied to the session: no request leaves after it closed."""
        from ps_agent.auth.tls import SessionBoundTransport, make_transport

        self.ensure_active()
        transport = make_transport(
            ca_file=ca_file,
            certificate=self._auth.certificate,
            chain=self._tls_chain(ca_file),
            signer=self._auth,
            verify_host=verify_host,
        )
        transport = SessionBoundTransport(transport, self.touch)
        with self._state:
            if self.closed_reason is not None:
                transport.close()
                raise SessionClosed(self.closed_reason)
            self._transports.append(transport)
        return transport

    def _tls_chain(self, ca_file: str) -> list[x509.Certificate]:
        raise NotImplementedError

    # ------------------------------------------------------------------------------ lifecycle
    def ensure_active(self) -> None:
        if self.closed_reason is None and self.clock() - self._last_use > self.idle_timeout_s:
            self._close("idle")
        if self.closed_reason is not None:
            raise SessionClosed(self.closed_reason)

    def touch(self) -> None:
        """Count as activity (resets the idle timer)."""
        self.ensure_active()
        self._last_use = self.clock()

    def on_closed(self, callback: Callable[[str], None]) -> None:
        """``callback(reason)`` once when the session closes (at once if it already has)."""
        with self._state:
            if self.closed_reason is None:
                self._callbacks.append(callback)
                return
        callback(self.closed_reason or "closed")

    @property
    def active(self) -> bool:
        return self.closed_reason is None

    def close(self) -> None:
        self._close("closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close(self, reason: str) -> None:
        raise NotImplementedError
