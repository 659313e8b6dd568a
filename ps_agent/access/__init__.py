"""Access policy of the agent: decides before any DMP call, explains every refusal in French.

Exception tree (``ps_agent.access.errors``): ``AccessDenied`` > ``PolicyDenied`` > one class per rule
family (``IdentityNotQualified``, ``ConsentRequired``, ``EmergencyAccessDenied``...), each with ``rule_id``.
"""

from __future__ import annotations

from ps_agent.access.errors import (
    AccessDenied,
    AuthenticationRequired,
    ConsentRequired,
    DepositNotAllowed,
    EmergencyAccessDenied,
    ForbiddenPurpose,
    HabilitationDenied,
    IdentityNotQualified,
    NoActiveDmp,
    PatientBlockedAccess,
    PolicyDenied,
    RoleNotAllowed,
)
from ps_agent.access.policy import (
    BRIS_DE_GLACE_MIN_REASON,
    AccessMode,
    AccessPolicy,
    Action,
    Decision,
    DmpState,
    PatientRef,
)

__all__ = [
    "BRIS_DE_GLACE_MIN_REASON",
    "AccessDenied",
    "AccessMode",
    "AccessPolicy",
    "Action",
    "AuthenticationRequired",
    "ConsentRequired",
    "Decision",
    "DepositNotAllowed",
    "DmpState",
    "EmergencyAccessDenied",
    "ForbiddenPurpose",
    "HabilitationDenied",
    "IdentityNotQualified",
    "NoActiveDmp",
    "PatientBlockedAccess",
    "PatientRef",
    "PolicyDenied",
    "RoleNotAllowed",
]
