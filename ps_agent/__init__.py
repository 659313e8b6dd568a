"""ps-agent core: card, authentication, DMP client, access policy, audit. No Qt, never imports sandbox.

Public API (what the UI, the local API, the hot folder and the CLI use)::

    from ps_agent import AgentConfig, Context, PatientRef, Services
    with Services(AgentConfig.default("sandbox", ca_file=...)) as services:   # journal, queue, policy
        session = services.open_session(credentials)      # or services.open_card_session(reader, pin)
        patient = session.patient(PatientRef(ins, oid))   # DMP status + access mode of one patient
        patient.dmp_status(ctx=Context()).value           # Result: value + exchange facts

    with Agent(credentials, config) as agent:             # the thin facade: services + one session
        agent.dmp_status(PatientRef(ins, oid))

Imports are lazy so that ``import ps_agent`` stays cheap (the CLI starts fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy ``__getattr__`` below returns, visible to type checkers (one name each)
    from ps_agent.access.policy import AccessMode as AccessMode
    from ps_agent.access.policy import AccessPolicy as AccessPolicy
    from ps_agent.access.policy import PatientRef as PatientRef
    from ps_agent.agent import Agent as Agent
    from ps_agent.audit.journal import AuditJournal as AuditJournal
    from ps_agent.config import AgentConfig as AgentConfig
    from ps_agent.context import Cancelled as Cancelled
    from ps_agent.context import CancelToken as CancelToken
    from ps_agent.context import Context as Context
    from ps_agent.dmp.client import DepositResult as DepositResult
    from ps_agent.dmp.client import ExchangeInfo as ExchangeInfo
    from ps_agent.dmp.ebrim import FindFilters as FindFilters
    from ps_agent.dmp.environment import ENVIRONMENTS as ENVIRONMENTS
    from ps_agent.dmp.environment import Environment as Environment
    from ps_agent.dmp.errors import DmpRefusal as DmpRefusal
    from ps_agent.dmp.errors import InvalidRequest as InvalidRequest
    from ps_agent.dmp.errors import ProtocolError as ProtocolError
    from ps_agent.dmp.errors import TransportError as TransportError
    from ps_agent.dmp.hl7 import DmpStatus as DmpStatus
    from ps_agent.dmp.model import DocumentEntry as DocumentEntry
    from ps_agent.dmp.model import Status as Status
    from ps_agent.dmp.model import Visibility as Visibility
    from ps_agent.errors import AccessDenied as AccessDenied
    from ps_agent.errors import DmpError as DmpError
    from ps_agent.errors import PsAgentError as PsAgentError
    from ps_agent.events import Events as Events
    from ps_agent.outbox import DepositQueue as DepositQueue
    from ps_agent.outbox import EntryState as EntryState
    from ps_agent.outbox import QueuedDeposit as QueuedDeposit
    from ps_agent.services import Services as Services
    from ps_agent.session import AuditPending as AuditPending
    from ps_agent.session import DepositDeferred as DepositDeferred
    from ps_agent.session import DepositOutcome as DepositOutcome
    from ps_agent.session import DocumentList as DocumentList
    from ps_agent.session import EmergencyAccess as EmergencyAccess
    from ps_agent.session import PatientHandle as PatientHandle
    from ps_agent.session import Result as Result
    from ps_agent.session import Session as Session

_EXPORTS = {
    "Agent": "ps_agent.agent",
    "Services": "ps_agent.services",
    "Session": "ps_agent.session",
    "PatientHandle": "ps_agent.session",
    "Result": "ps_agent.session",
    "DocumentList": "ps_agent.session",
    "EmergencyAccess": "ps_agent.session",
    "DepositOutcome": "ps_agent.session",
    "DepositDeferred": "ps_agent.session",
    "AuditPending": "ps_agent.session",
    "Context": "ps_agent.context",
    "CancelToken": "ps_agent.context",
    "Cancelled": "ps_agent.context",
    "Events": "ps_agent.events",
    "DepositQueue": "ps_agent.outbox",
    "QueuedDeposit": "ps_agent.outbox",
    "EntryState": "ps_agent.outbox",
    "InvalidRequest": "ps_agent.dmp.errors",
    "AgentConfig": "ps_agent.config",
    "Environment": "ps_agent.dmp.environment",
    "ENVIRONMENTS": "ps_agent.dmp.environment",
    "ExchangeInfo": "ps_agent.dmp.client",
    "PatientRef": "ps_agent.access.policy",
    "AccessMode": "ps_agent.access.policy",
    "AccessPolicy": "ps_agent.access.policy",
    "Visibility": "ps_agent.dmp.model",
    "DocumentEntry": "ps_agent.dmp.model",
    "Status": "ps_agent.dmp.model",
    "FindFilters": "ps_agent.dmp.ebrim",
    "DmpStatus": "ps_agent.dmp.hl7",
    "DepositResult": "ps_agent.dmp.client",
    "AuditJournal": "ps_agent.audit.journal",
    "PsAgentError": "ps_agent.errors",
    "AccessDenied": "ps_agent.errors",
    "DmpError": "ps_agent.errors",
    "TransportError": "ps_agent.dmp.errors",
    "DmpRefusal": "ps_agent.dmp.errors",
    "ProtocolError": "ps_agent.dmp.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ps_agent' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
