"""Reading the carte Vitale through PC/SC (insi.md §6), over the same connection interface as the CPS card.

The real card layout is not public (insi.md §6.1): this reader speaks the project's **emulated** layout
(``docs/vitale.md``; emulator ``sandbox/card/vitale.py``). A genuine card (Vitale 1 ATR, or a Vitale 2
whose project files do not exist) is refused with :class:`VitaleUnsupported`: in production the card is
read through the GIE SESAM-Vitale components (or the Appli carte Vitale, apCV), absent from this machine.

API (used by the CLI and the agent ``Session``)::

    reading = read_vitale(reader=None)            # VitaleReading: card, beneficiaries, read_at, reader
    reader = VitaleReader(clock=...)              # keeps the reading and the chosen beneficiary
    reading = reader.read()
    selection = reader.choose(2)                  # 1-based, as the user counts -> VitaleSelection
    insi.search_with_vitale(reader.current(), confirm_card=reader.confirm_card)

``confirm_card`` re-reads the card right before WS_INS1 and refuses a swapped card (CNDA test 1.03); a
``CardMonitor`` event (removal, another card) passed to :meth:`VitaleReader.on_card_event` drops the
choice at once. ``current()`` refuses a choice older than 20 minutes (CNDA test 1.02).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from ps_agent.card.errors import CardProtocolError, NoCard, NoReader
from ps_agent.identity.errors import IdentityError, InsiInputError, VitaleSelectionExpired
from ps_agent.identity.insi import VITALE_MAX_AGE
from ps_agent.identity.model import VitaleBeneficiary, VitaleCard, VitaleSelection

# ------------------------------------------------------------------------------ layout (docs/vitale.md)
VITALE_AID = bytes.fromhex("D250000002") + b"VITALE"
SFI_CARD, SFI_IDENTITY, SFI_NIR = 1, 2, 3
STATE_VALID, STATE_INVALIDATED = "00", "01"
# [I] Century of a 6-digit card date (YYMMDD, insi.md §6.2 "century resolution [?]"): a year after the
# current two-digit year is in the previous century (a beneficiary is never born in the future).
SIX_DIGIT_PIVOT = "current-year"
MAX_FILE = 4096

SESAM_VITALE_MESSAGE = (
    "La lecture des cartes Vitale réelles passe par les composants SESAM-Vitale (ou l'application carte "
    "Vitale, apCV), absents de ce poste : installez-les et utilisez le logiciel de facturation, ou "
    "recherchez le patient par ses traits d'identité (ps-agent patient rechercher)."
)


def _atr_kind(atr: bytes) -> str:
    """``V2`` for a Vitale 2 ATR (3B 75 13 00 00 4x 09 EA 90 00), ``V1`` for a Vitale 1, else ``""``."""
    if len(atr) == 10 and atr[:5] == bytes.fromhex("3B75130000") and atr[5] & 0xF0 == 0x40:
        if atr[6:] == bytes.fromhex("09EA9000"):
            return "V2"
    if len(atr) == 9 and atr[:4] == bytes.fromhex("3F652500") and atr[5:] == bytes.fromhex("096A9000"):
        return "V1"
    return ""


# ----------------------------------------------------------------------------------------- errors


class VitaleError(IdentityError):
    """Anything the carte Vitale reader refuses (a ``PsAgentError``: ``message_fr`` + ``code``)."""


class NoVitaleCard(VitaleError):
    def __init__(self) -> None:
        super().__init__(
            "Aucune carte Vitale n'est insérée. Insérez la carte Vitale du patient et réessayez.",
            code="vitale_no_card",
        )


class NotAVitaleCard(VitaleError):
    def __init__(self, reader: str) -> None:
        super().__init__(
            f"La carte du lecteur « {reader} » n'est pas une carte Vitale (carte CPS ou autre carte ?).",
            code="vitale_not_vitale",
        )
        self.reader = reader


class VitaleUnsupported(VitaleError):
    """A genuine carte Vitale: its files are only readable through SESAM-Vitale (or apCV)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(SESAM_VITALE_MESSAGE, code="vitale_unsupported")
        self.detail = detail


class VitaleUnreadable(VitaleError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "La carte Vitale est illisible (réponse incompréhensible). Retirez-la, réinsérez-la et "
            "réessayez ; si le problème persiste, recherchez le patient par ses traits d'identité.",
            code="vitale_unreadable",
        )
        self.detail = detail


class VitaleCardInvalid(VitaleError):
    """The card expired or is invalidated (opposition): it cannot be used for INSi."""


class VitaleCardChanged(VitaleError):
    """The card in the reader is not the one read when the beneficiary was chosen (CNDA test 1.03)."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"{why} : relisez la carte Vitale et choisissez à nouveau le bénéficiaire.",
            code="vitale_card_changed",
        )


class VitaleNoSelection(VitaleError):
    def __init__(self) -> None:
        super().__init__(
            "Aucun bénéficiaire de carte Vitale n'est choisi : lisez la carte et choisissez le bénéficiaire.",
            code="vitale_no_selection",
        )


# ------------------------------------------------------------------------------------------ parsing


class SmartCardConnection(Protocol):
    """What the reader needs from a connection (``ps_agent.card.pcsc.PcscConnection`` or a double)."""

    atr: bytes

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]: ...


def _tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """BER-TLV with one-byte tags; stops at the zero padding that ends a file."""
    from ps_agent.card.cps import parse_tlv

    end = len(data)
    i = 0
    while i < end:  # find where the padding starts (a 00 tag is never used by the layout)
        if data[i] == 0x00:
            end = i
            break
        if i + 1 >= len(data):
            break
        n = data[i + 1]
        skip = 2
        if n == 0x81 and i + 2 < len(data):
            n, skip = data[i + 2], 3
        elif n == 0x82 and i + 3 < len(data):
            n, skip = int.from_bytes(data[i + 2 : i + 4], "big"), 4
        i += skip + n
    try:
        return parse_tlv(data[:end])
    except CardProtocolError as exc:
        raise VitaleUnreadable(exc.detail) from exc


def _text(fields: dict[int, bytes], tag: int) -> str:
    try:
        return fields.get(tag, b"").decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise VitaleUnreadable(f"tag {tag:02X} is not UTF-8") from exc


def card_date(raw: str, today: date) -> str:
    """A card birth date (``YYYYMMDD`` or ``YYMMDD``, lunar values kept) as ``YYYY-MM-DD``, never parsed
    with a calendar (insi.md §5.2)."""
    if not raw.isdigit() or len(raw) not in (6, 8):
        raise VitaleUnreadable(f"bad date {raw!r}")
    if len(raw) == 6:  # [I] SIX_DIGIT_PIVOT
        yy = int(raw[:2])
        century = 19 if yy > today.year % 100 else 20
        raw = f"{century}{raw}"
    return f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"


@dataclass(frozen=True)
class VitaleReading:
    """What the card said, when, in which reader. ``beneficiaries`` are numbered from 1 for the user."""

    card: VitaleCard
    read_at: datetime
    reader: str
    valid_from: str = ""  # YYYY-MM-DD
    valid_to: str = ""

    @property
    def beneficiaries(self) -> tuple[VitaleBeneficiary, ...]:
        return self.card.beneficiaries

    def beneficiary(self, number: int) -> VitaleBeneficiary:
        count = len(self.card.beneficiaries)
        if not 1 <= number <= count:
            raise InsiInputError(
                f"Le bénéficiaire n° {number} n'existe pas : la carte en comporte {count}, choisissez un "
                f"numéro entre 1 et {count}.",
                code="vitale_beneficiary",
                field="beneficiary",
            )
        return self.card.beneficiaries[number - 1]

    def select(self, number: int, *, sign: Callable[[bytes], bytes] | None = None) -> VitaleSelection:
        """The :class:`VitaleSelection` of beneficiary ``number``; ``sign`` signs its Vitale assertion."""
        return VitaleSelection(self.card, self.beneficiary(number), self.read_at, sign=sign)


class VitaleSession:
    """Reads the emulated layout from one connection (yubikit style, like ``CpsSession``)."""

    def __init__(self, connection: SmartCardConnection, reader: str = "") -> None:
        self.connection = connection
        self.reader = reader
        kind = _atr_kind(connection.atr)
        if not kind:
            raise NotAVitaleCard(reader)
        if kind == "V1":  # memory card read with proprietary class BC commands (insi.md §6.4)
            raise VitaleUnsupported("Vitale 1 ATR")

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        try:
            return self.connection.send_and_receive(apdu)
        except CardProtocolError as exc:
            raise VitaleUnreadable(exc.detail) from exc

    def _select_application(self) -> None:
        _, sw = self._send(bytes([0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]))
        if sw != 0x9000:
            raise VitaleUnreadable(f"SELECT MF: {sw:04X}")
        _, sw = self._send(bytes([0x00, 0xA4, 0x04, 0x00, len(VITALE_AID)]) + VITALE_AID)
        if sw in (0x6A82, 0x6A86, 0x6D00):
            raise VitaleUnsupported(f"SELECT VITALE: {sw:04X}")
        if sw != 0x9000:
            raise VitaleUnreadable(f"SELECT VITALE: {sw:04X}")

    def _read_sfi(self, sfi: int, *, layout_file: bool) -> bytes:
        data, sw = self._send(bytes([0x00, 0xB0, 0x80 | sfi, 0x00, 0x00]))
        if sw in (0x6A82, 0x6982, 0x6985) and layout_file:
            raise VitaleUnsupported(f"READ BINARY SFI {sfi}: {sw:04X}")  # not our layout: a real card
        out = data
        while sw == 0x9000 and len(data) == 256 and len(out) < MAX_FILE:
            data, sw = self._send(bytes([0x00, 0xB0, len(out) >> 8, len(out) & 0xFF, 0x00]))
            out += data
        if sw not in (0x9000, 0x6282) and not (sw == 0x6B00 and out):
            raise VitaleUnreadable(f"READ BINARY SFI {sfi}: {sw:04X}")
        return out

    def read_serial(self) -> str:
        """The serial of the card file (the card's identity, for swap detection)."""
        self._select_application()
        top = _tlvs(self._read_sfi(SFI_CARD, layout_file=True))
        if len(top) != 1 or top[0][0] != 0x66:
            raise VitaleUnsupported("card file template 66 missing")
        return _text(dict(_tlvs(top[0][1])), 0x80)

    def sign(self, data: bytes) -> bytes:
        """The emulated card's sandbox-only signature of ``data`` (PSO CDS, chained blocks of 255 bytes):
        HMAC-SHA256 with its per-card secret, what ``urn:ps-agent:sandbox:vitale-hmac-sha256`` expects."""
        blocks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        out, sw = b"", 0
        for i, block in enumerate(blocks):
            last = i == len(blocks) - 1
            cla = 0x00 if last else 0x10
            apdu = bytes([cla, 0x2A, 0x9E, 0x9A, len(block)]) + block + (b"\x00" if last else b"")
            out, sw = self._send(apdu)
            if sw in (0x6D00, 0x6E00, 0x6A81):
                raise VitaleUnsupported(f"PSO CDS: {sw:04X}")
            if sw != 0x9000:
                raise VitaleUnreadable(f"PSO CDS: {sw:04X}")
        if len(out) != 32:
            raise VitaleUnreadable(f"signature of {len(out)} bytes")
        return out

    def read(self, *, now: datetime) -> tuple[VitaleCard, str, str]:
        """(card, valid_from, valid_to); refuses an expired or invalidated card."""
        self._select_application()
        card_raw = self._read_sfi(SFI_CARD, layout_file=True)
        top = _tlvs(card_raw)
        if len(top) != 1 or top[0][0] != 0x66:
            raise VitaleUnsupported("card file template 66 missing")
        f = dict(_tlvs(top[0][1]))
        for tag in (0x80, 0x85, 0x89, 0x8A):
            if tag not in f:
                raise VitaleUnreadable(f"card file lacks tag {tag:02X}")
        today = now.date()
        valid_from = card_date(_text(f, 0x83), today) if 0x83 in f else ""
        valid_to = card_date(_text(f, 0x84), today) if 0x84 in f else ""
        state = _text(f, 0x85)
        if state == STATE_INVALIDATED:
            raise VitaleCardInvalid(
                "Cette carte Vitale est en opposition (invalidée) : elle ne peut pas servir à la recherche "
                "INSi. Demandez une autre pièce et recherchez le patient par ses traits d'identité.",
                code="vitale_invalidated",
            )
        if state != STATE_VALID:
            raise VitaleUnreadable(f"unknown card state {state!r}")
        if valid_to and valid_to < today.isoformat():
            raise VitaleCardInvalid(
                f"Cette carte Vitale a expiré le {valid_to[8:]}/{valid_to[5:7]}/{valid_to[:4]} : elle "
                "ne peut pas servir à la recherche INSi. Recherchez le patient par ses traits d'identité.",
                code="vitale_card_expired",
            )
        idents = _tlvs(self._read_sfi(SFI_IDENTITY, layout_file=False))
        nirs = _tlvs(self._read_sfi(SFI_NIR, layout_file=True))
        if not idents or any(t != 0x65 for t, _ in idents) or len(nirs) != len(idents):
            raise VitaleUnreadable("identity and NIR files disagree")
        beneficiaries = []
        for (_, ident), (_, nir_t) in zip(idents, nirs, strict=True):
            i = dict(_tlvs(ident))
            n = dict(_tlvs(nir_t))
            nir = _text(n, 0x93)
            if nir and (len(nir) != 15):
                raise VitaleUnreadable("certified NIR is not 15 characters")
            rank_text = _text(i, 0x84) or "1"
            if not rank_text.isdigit():
                raise VitaleUnreadable("bad rank")
            cert = _text(n, 0x94)
            beneficiaries.append(
                VitaleBeneficiary(
                    birth_date=card_date(_text(i, 0x82), today),
                    rank=int(rank_text),
                    usual_name=_text(i, 0x80),
                    first_name=_text(i, 0x81),
                    birth_name=_text(i, 0x83),
                    nir=nir[:13],
                    nir_key=nir[13:],
                    nir_certification_date=card_date(cert, today) if cert else "",
                    holder=_text(i, 0x85) == "1",
                )
            )
        serial = _text(f, 0x80)
        card = VitaleCard(
            serial=serial,
            assure_nir=_text(f, 0x89),
            assure_key=_text(f, 0x8A),
            assure_name=_text(f, 0x8B),
            regime=_text(f, 0x86),
            caisse=_text(f, 0x87),
            centre=_text(f, 0x88),
            card_type=_text(f, 0x81) or "V2",
            nature=_text(f, 0x82) or "T",
            beneficiaries=tuple(beneficiaries),
        )
        return card, valid_from, valid_to


# ------------------------------------------------------------------------------------------ PC/SC

Connect = Callable[[str], SmartCardConnection]


def _pcsc_connect(reader: str) -> SmartCardConnection:
    from ps_agent.card.pcsc import PcscConnection

    return PcscConnection(reader, exclusive=False)  # shared: billing software may hold the card too


def _close(connection: SmartCardConnection) -> None:
    close = getattr(connection, "close", None)
    if callable(close):
        close()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def read_vitale(
    reader: str | None = None,
    *,
    clock: Callable[[], datetime] = _utcnow,
    connect: Connect = _pcsc_connect,
    readers: Callable[[], list[str]] | None = None,
) -> VitaleReading:
    """Read the carte Vitale in ``reader`` (default: the first reader holding a Vitale card)."""
    if readers is None:
        from ps_agent.card.pcsc import list_readers

        readers = list_readers
    names = [reader] if reader else readers()
    if not names:
        raise NoReader()
    other: str | None = None
    for name in names:
        try:
            connection = connect(name)
        except NoCard:
            if reader:
                raise NoVitaleCard() from None
            continue
        try:
            session = VitaleSession(connection, name)
            now = clock()
            card, valid_from, valid_to = session.read(now=now)
            return VitaleReading(card, now, name, valid_from, valid_to)
        except NotAVitaleCard:
            if reader:
                raise
            other = name
        finally:
            _close(connection)
    if other is not None:
        raise NotAVitaleCard(other)
    raise NoVitaleCard()


@dataclass
class VitaleReader:
    """The reading and the chosen beneficiary of one workstation (thread-safe; see the module docstring).

    ``clock`` is injectable (tests: the 20-minute freshness)."""

    reader: str | None = None
    clock: Callable[[], datetime] = _utcnow
    connect: Connect = _pcsc_connect
    readers: Callable[[], list[str]] | None = None
    sign: bool = True  # [I] SIGN_WITH_CARD: the emulated card signs the Vitale assertion (sandbox HMAC)
    reading: VitaleReading | None = None
    selection: VitaleSelection | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def read(self) -> VitaleReading:
        """Read the card; any previous choice is dropped (a new reading needs a new choice)."""
        reading = read_vitale(self.reader, clock=self.clock, connect=self.connect, readers=self.readers)
        with self._lock:
            self.reading, self.selection = reading, None
        return reading

    def choose(self, number: int) -> VitaleSelection:
        """Choose beneficiary ``number`` (from 1) of the current reading."""
        with self._lock:
            if self.reading is None:
                raise VitaleNoSelection()
            reading = self.reading
            signer = self._card_signer(reading.reader, reading.card.serial) if self.sign else None
            self.selection = reading.select(number, sign=signer)
            return self.selection

    def _card_signer(self, reader: str, serial: str) -> Callable[[bytes], bytes]:
        """Sign with the card in ``reader``, refusing another card (it would sign with another key)."""

        def sign(data: bytes) -> bytes:
            try:
                connection = self.connect(reader)
            except (NoCard, NoReader):
                self.invalidate()
                raise VitaleCardChanged("La carte Vitale a été retirée avant la signature") from None
            try:
                session = VitaleSession(connection, reader)
                if session.read_serial() != serial:
                    self.invalidate()
                    raise VitaleCardChanged("Une autre carte Vitale a été insérée avant la signature")
                return session.sign(data)
            finally:
                _close(connection)

        return sign

    def current(self) -> VitaleSelection:
        """The chosen beneficiary, refused once 20 minutes old (read the card again)."""
        with self._lock:
            selection = self.selection
        if selection is None:
            raise VitaleNoSelection()
        if self.clock() - selection.read_at > VITALE_MAX_AGE:
            self.invalidate()
            raise VitaleSelectionExpired(
                "La lecture de la carte Vitale date de plus de 20 minutes : relisez la carte et choisissez "
                "à nouveau le bénéficiaire.",
                code="vitale_expired",
                field="read_at",
            )
        return selection

    def invalidate(self) -> None:
        with self._lock:
            self.reading, self.selection = None, None

    def confirm_card(self, selection: VitaleSelection) -> None:
        """Right before WS_INS1: the card in the reader is still the one read and the beneficiary is still
        on it (CNDA test 1.03); otherwise the choice is dropped and ``VitaleCardChanged`` raised."""
        with self._lock:
            reading = self.reading
        if reading is None or self.selection is None:
            raise VitaleCardChanged(
                "La carte Vitale a été retirée ou changée depuis le choix du bénéficiaire"
            )
        try:
            again = read_vitale(reading.reader, clock=self.clock, connect=self.connect)
        except (NoVitaleCard, NotAVitaleCard, NoCard, NoReader):
            self.invalidate()
            raise VitaleCardChanged("La carte Vitale a été retirée depuis le choix du bénéficiaire") from None
        if again.card.serial != selection.card.serial:
            self.invalidate()
            raise VitaleCardChanged("Une autre carte Vitale a été insérée depuis le choix du bénéficiaire")
        wanted = selection.beneficiary
        if not any(
            (b.nir, b.birth_date, b.rank, b.first_name)
            == (wanted.nir, wanted.birth_date, wanted.rank, wanted.first_name)
            for b in again.card.beneficiaries
        ):
            self.invalidate()
            raise VitaleCardChanged("Le bénéficiaire choisi n'est plus sur la carte Vitale")

    def on_card_event(self, event: object) -> None:
        """``CardMonitor`` subscriber: a removal or an insertion in our reader drops the choice."""
        from ps_agent.card.monitor import CardEvent, CardEventKind

        if not isinstance(event, CardEvent):
            return
        with self._lock:
            reading = self.reading
        if reading is None or event.reader != reading.reader:
            return
        if event.kind in (
            CardEventKind.REMOVED,
            CardEventKind.INSERTED,
            CardEventKind.UNKNOWN_CARD,
            CardEventKind.READER_GONE,
            CardEventKind.SERVICE_GONE,
        ):
            self.invalidate()
