"""Audit trail of the agent: hash-chained SQLite journal, exports, syslog forwarding, frame log.

Exception tree (``ps_agent.audit.errors``): ``AuditError`` > ``AuditEventError`` (malformed event),
``AuditWriteError`` (could not record: the action must stop), ``AuditIntegrityError`` (chain broken).
"""

from __future__ import annotations

from ps_agent.audit.errors import AuditError, AuditEventError, AuditIntegrityError, AuditWriteError
from ps_agent.audit.framelog import FrameLog
from ps_agent.audit.journal import AuditEvent, AuditJournal, AuditRecord, VerifyResult

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditEventError",
    "AuditIntegrityError",
    "AuditJournal",
    "AuditRecord",
    "AuditWriteError",
    "FrameLog",
    "VerifyResult",
]
