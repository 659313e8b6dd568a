"""Audit trail of the agent: hash-chained SQLite journal with signed checkpoints, exports, syslog forwarding
to a remote collector (``ps_agent.audit.collector``), frame log.

Exception tree (``ps_agent.audit.errors``): ``AuditError`` > ``AuditEventError`` (malformed event),
``AuditWriteError`` (could not record: the action must stop), ``AuditIntegrityError`` (chain broken).
"""

from __future__ import annotations

from ps_agent.audit.checkpoint import Checkpoint
from ps_agent.audit.errors import AuditError, AuditEventError, AuditIntegrityError, AuditWriteError
from ps_agent.audit.framelog import FrameLog
from ps_agent.audit.journal import AuditEvent, AuditJournal, AuditRecord, RemoteHead, VerifyResult

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditEventError",
    "AuditIntegrityError",
    "AuditJournal",
    "AuditRecord",
    "AuditWriteError",
    "Checkpoint",
    "FrameLog",
    "RemoteHead",
    "VerifyResult",
]
