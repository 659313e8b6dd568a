"""Smart-card and reader errors (family ``ps_agent.errors.CardError``).

Tree::

    CardError
    ├── PcscUnavailable    the PC/SC service (pcscd / Windows smart-card service) is not running
    ├── NoReader           no reader connected, or the named reader does not exist
    ├── ReaderGone         the reader was unplugged during an operation
    ├── NoCard             the reader holds no card
    ├── CardRemoved        the card was removed (or reset by another program) during an operation
    ├── UnknownCard        the card is not a CPx card (answer to reset not recognised)
    ├── CardBusy           another program holds the card exclusively
    ├── CardProtocolError  the card answered something meaningless (garbage, truncated, wrong format)
    │   └── UnsupportedCardLayout  a real CPx card whose files the direct APDU route cannot read
    └── ApduError          the card refused a command with an unexpected status word (``sw``)

PIN problems are authentication errors: see ``ps_agent.auth.errors``.
"""

from __future__ import annotations

from ps_agent.errors import CardError


class PcscUnavailable(CardError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "Le service de cartes à puce (PC/SC) n'est pas démarré : lancez « pcscd » "
            "(Linux) ou le service « Carte à puce » (Windows), puis réessayez.",
            code="pcsc_unavailable",
        )
        self.detail = detail


class NoReader(CardError):
    def __init__(self, reader: str | None = None) -> None:
        if reader:
            msg = f"Le lecteur de cartes « {reader} » est introuvable. Vérifiez qu'il est branché."
        else:
            msg = "Aucun lecteur de cartes n'est branché. Branchez le lecteur et réessayez."
        super().__init__(msg, code="no_reader")
        self.reader = reader


class ReaderGone(CardError):
    def __init__(self, reader: str) -> None:
        super().__init__(
            f"Le lecteur de cartes « {reader} » a été débranché pendant l'opération.", code="reader_gone"
        )
        self.reader = reader


class NoCard(CardError):
    def __init__(self, reader: str | None = None) -> None:
        where = f" dans le lecteur « {reader} »" if reader else ""
        super().__init__(f"Aucune carte n'est insérée{where}. Insérez votre carte CPS.", code="no_card")
        self.reader = reader


class CardRemoved(CardError):
    def __init__(self, reader: str = "", *, reset: bool = False) -> None:
        if reset:
            msg = "La carte a été réinitialisée par un autre programme pendant l'opération : recommencez."
        else:
            msg = "La carte a été retirée pendant l'opération. Réinsérez-la et recommencez."
        super().__init__(msg, code="card_reset" if reset else "card_removed")
        self.reader = reader
        self.reset = reset


class UnknownCard(CardError):
    def __init__(self, atr: bytes = b"") -> None:
        super().__init__(
            "La carte insérée n'est pas une carte de professionnel de santé (CPS, CPE…) reconnue.",
            code="unknown_card",
        )
        self.atr = atr


class CardBusy(CardError):
    def __init__(self, reader: str) -> None:
        super().__init__(
            f"La carte du lecteur « {reader} » est utilisée en exclusivité par un autre programme "
            "(logiciel de facturation SESAM-Vitale, Cryptolib CPS, navigateur…). Fermez ce programme "
            "ou attendez la fin de son opération, puis réessayez.",
            code="card_busy",
        )
        self.reader = reader


class CardProtocolError(CardError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "La carte a renvoyé une réponse incompréhensible. Retirez-la, réinsérez-la et réessayez ; "
            "si le problème persiste, la carte ou le lecteur est peut-être défectueux.",
            code="card_protocol",
        )
        self.detail = detail


class UnsupportedCardLayout(CardProtocolError):
    """A genuine CPx card (ATR and application recognised) whose files the direct route cannot read."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.message_fr = (
            "Cette carte CPS ne peut pas être lue directement par l'agent : configurez la Cryptolib CPS "
            "(module PKCS#11) pour l'utiliser (voir « ps-agent card login --pkcs11 »)."
        )
        self.args = (self.message_fr,)
        self.code = "card_layout"


class ApduError(CardError):
    def __init__(self, sw: int, what: str) -> None:
        super().__init__(f"La carte a refusé l'opération « {what} » (code {sw:04X}).", code="apdu_error")
        self.sw = sw
        self.what = what
