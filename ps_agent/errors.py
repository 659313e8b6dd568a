"""Root of the ``ps_agent`` exception tree (httpx style: one root, families below it).

Every subpackage (card, auth, dmp, access, audit, outbox) derives its errors from the family here,
so a caller can catch ``PsAgentError`` for "anything the agent refused", or one family precisely.
Each error carries ``message_fr``: the sentence shown to the professional, in French.
"""

from __future__ import annotations


class PsAgentError(Exception):
    """Anything the agent raises on purpose. ``message_fr`` is for the user, ``code`` for machines."""

    def __init__(self, message_fr: str, *, code: str | None = None) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.code = code


class ConfigurationError(PsAgentError):
    """A setting, a path or a file the agent was pointed at is wrong."""


class CardError(PsAgentError):
    """Smart-card and reader problems (PC/SC). Defined in detail in ``ps_agent.card.errors``."""


class AuthError(PsAgentError):
    """Authentication problems (PIN, certificates, PKCS#11, establishment credentials)."""


class DmpError(PsAgentError):
    """Problems talking to the DMP. Detailed in ``ps_agent.dmp.errors``."""


class AccessDenied(PsAgentError):
    """The access policy refused the action before anything left the machine (carries ``rule_id``)."""


class AuditError(PsAgentError):
    """The audit journal could not be written or does not verify."""
