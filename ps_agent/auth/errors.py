"""Authentication errors (family ``ps_agent.errors.AuthError``).

Tree::

    AuthError
    ├── PinError
    │   ├── PinFormatError        the PIN typed is not 4 digits: refused before the card (no try used)
    │   ├── WrongPin              the card refused the PIN; ``tries_left`` says how many remain
    │   ├── PinFinalTryError      one try left: the caller must confirm before presenting a PIN
    │   └── PinBlocked            3 wrong PINs: the card is blocked (code de déblocage needed)
    ├── CertificateError          expired, not yet valid, wrong key usage or untrusted certificate
    ├── Pkcs11Error               PKCS#11 module missing / not a PKCS#11 library / token problems
    ├── Pkcs12Error               PKCS#12 file unreadable or wrong passphrase
    ├── TlsError                  TLS with the DMP failed (server not trusted, handshake refused)
    └── SessionClosed             the session ended (card removed / changed, idle); ``reason`` says why
"""

from __future__ import annotations

from typing import ClassVar

from ps_agent.errors import AuthError

PIN_LENGTH = 4  # CPS "code porteur": 4 digits (authentication.md §2.5). One place for this rule.
PUK_LENGTH = 8  # "code de déblocage": 8 digits, printed on the PIN mailer.


class PinError(AuthError):
    """Anything about the PIN."""


class PinFormatError(PinError):
    def __init__(self, what: str = "code porteur", length: int = PIN_LENGTH) -> None:
        super().__init__(
            f"Le {what} doit comporter exactement {length} chiffres. "
            "Il n'a pas été présenté à la carte (aucun essai n'a été utilisé).",
            code="pin_format",
        )


class WrongPin(PinError):
    """``tries_left`` is None when the token does not tell (PKCS#11 without counter flags)."""

    def __init__(self, tries_left: int | None) -> None:
        self.tries_left = tries_left
        if tries_left is None:
            msg = "Code porteur incorrect. Attention : la carte se bloque après trois codes erronés."
        elif tries_left == 1:
            msg = (
                "Code porteur incorrect. Attention : il ne reste qu'un seul essai "
                "avant le blocage de la carte."
            )
        else:
            msg = f"Code porteur incorrect. Il reste {tries_left} essais avant le blocage de la carte."
        super().__init__(msg, code="pin_wrong")


class PinFinalTryError(PinError):
    def __init__(self) -> None:
        self.tries_left = 1
        super().__init__(
            "Il ne reste qu'un seul essai avant le blocage de la carte. "
            "Confirmez explicitement avant de saisir le code porteur.",
            code="pin_final_try",
        )


class PinBlocked(PinError):
    def __init__(self) -> None:
        super().__init__(
            "La carte est bloquée après trois codes porteur erronés. Débloquez-la avec le code de "
            "déblocage à 8 chiffres reçu avec la carte (ou contactez CPS Info Service).",
            code="pin_blocked",
        )


class CertificateError(AuthError):
    """A certificate cannot be used (dates, key usage, chain)."""


class Pkcs11Error(AuthError):
    """The PKCS#11 module or token cannot be used."""


class Pkcs12Error(AuthError):
    """A PKCS#12 file cannot be opened."""


class TlsError(AuthError):
    """The mutual TLS connection could not be established."""


class SessionClosed(AuthError):
    """The authenticated session ended; ``reason`` is one of removed, changed, idle, closed, reader_gone."""

    MESSAGES: ClassVar[dict[str, str]] = {
        "removed": "La carte a été retirée du lecteur : la session est fermée. Réinsérez la carte "
        "et saisissez le code porteur pour continuer.",
        "changed": "Une autre carte a été insérée : la session précédente est fermée.",
        "idle": "La session a été fermée après une période d'inactivité. "
        "Saisissez à nouveau le code porteur.",
        "reader_gone": "Le lecteur de cartes a été débranché : la session est fermée.",
        "closed": "La session est fermée.",
    }

    def __init__(self, reason: str = "closed") -> None:
        self.reason = reason
        super().__init__(self.MESSAGES.get(reason, self.MESSAGES["closed"]), code=f"session_{reason}")


def check_pin_format(pin: str, *, length: int = PIN_LENGTH, what: str = "code porteur") -> bytes:
    """Return the PIN as ASCII bytes, or raise ``PinFormatError`` (never echoes the PIN)."""
    if not isinstance(pin, str) or len(pin) != length or not pin.isascii() or not pin.isdigit():
        raise PinFormatError(what, length)
    return pin.encode("ascii")
