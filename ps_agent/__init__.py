"""ps-agent core: card, authentication, DMP client, access policy, audit. No Qt, never imports sandbox.

Public API (what the UI, the local API, the hot folder and the CLI use)::

    from ps_agent import Agent, AgentConfig, PatientRef, Visibility
    with Agent(credentials, AgentConfig.default("sandbox", ca_file=...)) as agent:
        agent.dmp_status(PatientRef(ins, oid))

Imports are lazy so that ``import ps_agent`` stays cheap (the CLI starts fast).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Agent": "ps_agent.agent",
    "DocumentList": "ps_agent.agent",
    "EmergencyAccess": "ps_agent.agent",
    "InvalidRequest": "ps_agent.agent",
    "AgentConfig": "ps_agent.config",
    "Environment": "ps_agent.config",
    "ENVIRONMENTS": "ps_agent.config",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ps_agent' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
