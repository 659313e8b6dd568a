"""The exception tree of the ``cda`` package (one root, typed leaves, a French message for the user)."""

from __future__ import annotations


class CdaError(Exception):
    """Root of every error raised by ``cda``.

    ``message_fr`` is what a secretary reads; ``field`` names the faulty element or input when known.
    """

    def __init__(self, message_fr: str, *, field: str | None = None) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.field = field
