"""Errors of the audit trail. All derive from ``ps_agent.errors.AuditError``.

- ``AuditError``               (root, from ``ps_agent.errors``)
  - ``AuditEventError``        an event is malformed (unknown outcome, empty action...): a programming error
  - ``AuditWriteError``        the journal could not be written (disk, lock, permissions)
  - ``AuditIntegrityError``    ``verify`` found a broken chain (raised by ``check()``)
"""

from __future__ import annotations

from ps_agent.errors import AuditError


class AuditEventError(AuditError):
    """The event handed to the journal is malformed."""


class AuditWriteError(AuditError):
    """The journal could not durably record the event: the action must not go on."""


class AuditIntegrityError(AuditError):
    """The journal does not verify (edited, deleted, inserted or reordered records)."""

    def __init__(self, message_fr: str, *, first_bad_seq: int | None = None) -> None:
        super().__init__(message_fr, code="AUDIT_INTEGRITY")
        self.first_bad_seq = first_bad_seq


__all__ = ["AuditError", "AuditEventError", "AuditIntegrityError", "AuditWriteError"]
