"""``AuthSession``: the DIRECTE session of a professional whose CPS/CPx card is in the reader.

Opened by PIN (``AuthSession.open``), it reads the holder and the chosen activity situation from
the card, checks the certificates (dates, key usage, and the chain when a CA bundle is given), then
watches the reader in a thread: the session closes within 1 s when the card is removed, when
another card replaces it, when the reader is unplugged, and after ``idle_timeout_s`` without use.
On close every signer refuses to work and every TLS transport it gave out is closed: nothing
carries over to the next card. Work queued elsewhere (the outbox) is not lost: it waits for a new
session. The PIN is checked for format before anything touches the card, presented once, never
stored, logged or retried.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from cryptography import x509
from smartcard import scard

from ps_agent.auth.certs import build_chain, check_key_usage, check_validity, load_bundle, verify_chain
from ps_agent.auth.direct import DirectSessionBase, KeySigner, card_identity
from ps_agent.auth.errors import SessionClosed, check_pin_format
from ps_agent.auth.model import Activity, KeyUse, ProfessionalIdentity
from ps_agent.card.cps import CardHolder, CardSituation, CpsSession, PinRequired
from ps_agent.card.errors import (
    ApduError,
    CardRemoved,
    NoCard,
    NoReader,
    ReaderGone,
    UnknownCard,
    UnsupportedCardLayout,
)
from ps_agent.card.pcsc import PcscConnection, _is, establish_context, list_readers, release_context
from ps_agent.errors import AuthError, CardError

log = logging.getLogger(__name__)

# [I] No DMP rule fixes the idle time of a card session; 30 minutes matches what practice software
# commonly uses for a locked workstation. Configurable per session.
DEFAULT_IDLE_TIMEOUT_S = 30 * 60.0
# Exclusive while identifying the card and presenting the PIN, then shared (each card operation in a
# PC/SC transaction) so the Cryptolib / SESAM-Vitale software can still use the card (auth.md §2.3).
SHARE_AFTER_LOGIN = True
WATCH_PERIOD_S = 0.2  # reader polling period of the watch thread (removal seen well within 1 s)

if TYPE_CHECKING:
    from ps_agent.auth.pkcs11 import Pkcs11Session

T = TypeVar("T")


class CardSigner(KeySigner):
    """``Signer`` over one key of the card, valid only while its session is open."""

    def __init__(
        self, session: AuthSession, use: KeyUse, cert: x509.Certificate, chain: list[x509.Certificate]
    ) -> None:
        super().__init__(use, cert, chain)
        self._session = session

    def sign(self, data: bytes) -> bytes:
        return self._session._card_op(lambda cps: cps.sign(self.use, data))

    def sign_digest_info(self, digest_info: bytes) -> bytes:
        return self._session._card_op(lambda cps: cps.sign_digest_info(self.use, digest_info))


class AuthSession(DirectSessionBase):
    """DIRECTE credentials backed by the card (implements ``ps_agent.auth.model.Credentials``)."""

    def __init__(
        self,
        connection: PcscConnection,
        cps: CpsSession,
        holder: CardHolder,
        situations: list[CardSituation],
        identity: ProfessionalIdentity,
        auth_cert: x509.Certificate,
        sign_cert: x509.Certificate,
        chain: list[x509.Certificate],
        idle_timeout_s: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if clock is not None:
            self.clock = clock
        self._conn = connection
        self._cps = cps
        self.holder = holder
        self.situations = situations
        self._identity = identity
        self._auth = CardSigner(self, KeyUse.AUTHENTICATION, auth_cert, chain)
        self._sign = CardSigner(self, KeyUse.SIGNATURE, sign_cert, chain)
        self.idle_timeout_s = idle_timeout_s
        self.reader = connection.reader
        self.closed_reason: str | None = None
        self.closed_at: float | None = None
        self._last_use = self.clock()
        self._state = threading.Lock()
        self._op = threading.Lock()
        self._callbacks: list[Callable[[str], None]] = []
        self._transports: list[httpx.BaseTransport] = []
        self._stop = threading.Event()
        self._watch_ctx = 0
        self._watcher = threading.Thread(target=self._watch, name=f"auth-session-{self.reader}", daemon=True)

    # ------------------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        reader: str | None,
        pin: str,
        *,
        situation_index: int = 0,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        confirm_final_try: bool = False,
        ca_file: str | Path | None = None,
        exclusive: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> AuthSession:
        """Open a session with the card in ``reader`` (None: the first reader holding a CPx card).

        ``ca_file`` (PEM bundle of the IGC-Santé roots and intermediates) enables chain verification
        and provides the chain sent in TLS. Raises ``PinFormatError`` before touching the card,
        ``CertificateError`` for an expired card before presenting the PIN, ``WrongPin`` (with
        ``tries_left``), ``PinFinalTryError``, ``PinBlocked``, and the ``CardError`` family.
        ``clock`` (monotonic seconds, default ``time.monotonic``) times the idle rule.
        """
        check_pin_format(pin)
        if idle_timeout_s <= 0:
            raise ValueError("idle_timeout_s must be positive")
        conn = _connect(reader, exclusive)
        try:
            cps = CpsSession(conn)
            try:
                holder = cps.read_holder()
            except ApduError as exc:  # real card: our emulator's file layout [E] is not on it
                raise UnsupportedCardLayout(f"{exc.what}: {exc.sw:04X}") from exc
            check_situation(situation_index, holder.situation_count)  # before the PIN is presented
            auth_cert = cps.read_certificate(KeyUse.AUTHENTICATION)
            sign_cert = cps.read_certificate(KeyUse.SIGNATURE)
            for cert, use in ((auth_cert, KeyUse.AUTHENTICATION), (sign_cert, KeyUse.SIGNATURE)):
                check_validity(cert, use)
                check_key_usage(cert, use)
            chain: list[x509.Certificate] = []
            if ca_file is not None:
                bundle = load_bundle(ca_file)
                chain = verify_chain(auth_cert, bundle)
                verify_chain(sign_cert, bundle)
            cps.verify_pin(pin, confirm_final_try=confirm_final_try)
            situations = cps.read_situations(holder.situation_count)
            if not situations:
                raise AuthError("La carte ne comporte aucune situation d'exercice.", code="no_situation")
            check_situation(situation_index, len(situations))
            if SHARE_AFTER_LOGIN:
                conn.share()
        except BaseException:
            conn.close()
            raise
        situation = situations[situation_index]
        identity = identity_from_card(holder, situation)
        # the card DN (same subject on both certificates): VIHF Issuer in DIRECTE mode
        identity.extra["subject_dn"] = sign_cert.subject.rfc4514_string()
        session = cls(
            conn, cps, holder, situations, identity, auth_cert, sign_cert, chain, idle_timeout_s, clock
        )
        session._watcher.start()
        log.info("card session opened for %s (%s)", identity.id_nat, conn.reader)
        return session

    @staticmethod
    def open_pkcs11(pin: str, **kwargs: Any) -> Pkcs11Session:
        """The same session over a PKCS#11 module (ANS Cryptolib CPS): returns a
        ``ps_agent.auth.pkcs11.Pkcs11Session`` (same ``Credentials`` and lifecycle API). Keyword
        arguments: ``module``, ``token_label``, ``situation_index``, ``idle_timeout_s``,
        ``confirm_final_try``, ``ca_file``."""
        from ps_agent.auth.pkcs11 import Pkcs11Session

        return Pkcs11Session.open(pin, **kwargs)

    def _tls_chain(self, ca_file: str) -> list[x509.Certificate]:
        chain = self._auth.chain or build_chain(self._auth.certificate, load_bundle(ca_file))
        return chain[:-1] if chain else []

    def _close(self, reason: str) -> None:
        with self._state:
            if self.closed_reason is not None:
                return
            self.closed_reason = reason
            self.closed_at = self.clock()
            callbacks, self._callbacks = self._callbacks, []
            transports, self._transports = self._transports, []
        self._stop.set()
        ctx = self._watch_ctx
        if ctx and threading.current_thread() is not self._watcher:
            with contextlib.suppress(Exception):
                scard.SCardCancel(ctx)
        for transport in transports:
            with contextlib.suppress(Exception):
                transport.close()
        self._conn.close()
        log.info("card session closed (%s)", reason)
        for callback in callbacks:
            try:
                callback(reason)
            except Exception:
                log.exception("on_closed callback failed")

    def _card_op(self, op: Callable[[CpsSession], T]) -> T:
        self.ensure_active()
        with self._op:
            self.ensure_active()
            try:
                with self._conn.transaction():
                    result = op(self._cps)
            except CardRemoved as exc:
                self._close("closed" if exc.reset else "removed")
                raise
            except ReaderGone:
                self._close("reader_gone")
                raise
            except PinRequired as exc:  # security state lost (card reset by another program)
                self._close("closed")
                raise SessionClosed("closed") from exc
            self._last_use = self.clock()
            return result

    def _watch(self) -> None:
        """Poll the reader state; close on removal, change, reader loss or idle time."""
        try:
            ctx = establish_context()
        except CardError:
            self._close("reader_gone")
            return
        self._watch_ctx = ctx
        try:
            hr, states = scard.SCardGetStatusChange(ctx, 0, [(self.reader, scard.SCARD_STATE_UNAWARE)])
            if hr != scard.SCARD_S_SUCCESS:
                self._close("reader_gone")
                return
            known = states[0][1] & ~scard.SCARD_STATE_CHANGED
            while not self._stop.is_set():
                if self.clock() - self._last_use > self.idle_timeout_s:
                    self._close("idle")
                    return
                hr, states = scard.SCardGetStatusChange(
                    ctx, int(WATCH_PERIOD_S * 1000), [(self.reader, known)]
                )
                if self._stop.is_set() or _is(hr, "SCARD_E_CANCELLED"):
                    return
                if _is(hr, "SCARD_E_TIMEOUT"):
                    continue
                if hr != scard.SCARD_S_SUCCESS:
                    self._close("reader_gone")
                    return
                flags = states[0][1]
                if flags & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                    self._close("reader_gone")
                    return
                if flags & scard.SCARD_STATE_EMPTY:
                    self._close("removed")
                    return
                if (flags >> 16) != (known >> 16) and flags & scard.SCARD_STATE_PRESENT:
                    self._close("changed")  # removed and another (or the same) card inserted
                    return
                known = flags & ~scard.SCARD_STATE_CHANGED
        finally:
            self._watch_ctx = 0
            release_context(ctx)

    def __repr__(self) -> str:
        state = "open" if self.closed_reason is None else f"closed:{self.closed_reason}"
        return f"AuthSession({self._identity.id_nat!r}, {self.reader!r}, {state})"


def situation_index(number: int) -> int:
    """The 0-based ``situation_index`` of the situation the user numbers from 1.

    Every user-facing surface (``ps-agent card login --situation N``, ``ps-agent dmp ... --situation
    N``, the UI) counts the card's activity situations from 1, as a French professional does; the
    APIs (``AuthSession.open``, ``Pkcs11Session.open``) take the 0-based index. Raises ``AuthError``
    (code ``bad_situation``) for a number below 1.
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise AuthError(
            f"Numéro de situation d'exercice invalide ({number!r}) : les situations sont numérotées "
            "à partir de 1.",
            code="bad_situation",
        )
    return number - 1


def check_situation(index: int, count: int) -> None:
    """Refuse a 0-based ``index`` outside the ``count`` situations of the card (message counts from 1)."""
    if count < 1:
        raise AuthError("La carte ne comporte aucune situation d'exercice.", code="no_situation")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        number = index + 1 if isinstance(index, int) else index
        raise AuthError(
            f"La situation d'exercice n° {number} n'existe pas : la carte en comporte {count}, "
            f"choisissez un numéro entre 1 et {count}.",
            code="bad_situation",
        )


_check_situation = check_situation  # former private name


def identity_from_card(holder: CardHolder, situation: CardSituation) -> ProfessionalIdentity:
    """The identity of the card's holder under one situation (``direct.card_identity``, shared with
    the PKCS#11 route)."""
    return card_identity(
        holder,
        Activity(situation.structure_id, situation.structure_name, situation.sector, situation.role),
        serial=holder.serial,
        extra={"situation_mode": situation.mode},
    )


def _connect(reader: str | None, exclusive: bool) -> PcscConnection:
    readers = list_readers()
    if not readers:
        raise NoReader()
    if reader is not None:
        if reader not in readers:
            raise NoReader(reader)
        return PcscConnection(reader, exclusive=exclusive)
    unknown: UnknownCard | None = None
    for name in readers:
        try:
            conn = PcscConnection(name, exclusive=exclusive)
        except NoCard:
            continue
        from ps_agent.card.cps import identify_atr

        if identify_atr(conn.atr) is None:
            unknown = UnknownCard(conn.atr)
            conn.close()
            continue
        return conn
    if unknown is not None:
        raise unknown
    raise NoCard()


def wait_for_card(reader: str, timeout_s: float) -> bool:
    """Block until a card is present in ``reader`` (e.g. pending work waiting for re-insertion)."""
    ctx = establish_context()
    try:
        deadline = time.monotonic() + timeout_s
        state: Any = scard.SCARD_STATE_UNAWARE
        while time.monotonic() < deadline:
            left = max(0.0, deadline - time.monotonic())
            hr, states = scard.SCardGetStatusChange(ctx, int(min(left, 0.5) * 1000), [(reader, state)])
            if hr == scard.SCARD_S_SUCCESS:
                if states[0][1] & scard.SCARD_STATE_PRESENT:
                    return True
                state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            elif not _is(hr, "SCARD_E_TIMEOUT"):
                return False
        return False
    finally:
        release_context(ctx)
