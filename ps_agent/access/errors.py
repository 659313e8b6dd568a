"""Refusals of the access policy. All derive from ``ps_agent.errors.AccessDenied``.

Each carries ``rule_id`` (the access-rules.md id, also as ``code``), ``log_code`` (the §11 log code,
e.g. ``DENIED_INS``), ``needs_consent`` (the UI may offer to record the patient's consent) and
``decision`` (the full ``Decision``).

- ``AccessDenied`` (root, ``ps_agent.errors``)
  - ``AuthenticationRequired``   AUTH-01, AUTH-03: no named user, or consultation in a mode that forbids it
  - ``RoleNotAllowed``           AUTH-04: non-PS staff asking to consult
  - ``ForbiddenPurpose``         GEN-03: insurance, employment, third-party expertise
  - ``IdentityNotQualified``     ID-01, ID-02: INS unknown or not QUAL
  - ``NoActiveDmp``              PAT-06: no DMP, closed, or opposition
  - ``PatientBlockedAccess``     PAT-01: the patient blocked this professional
  - ``ConsentRequired``          ACC-02/ACC-03: no valid authorisation (offer to record consent)
  - ``EmergencyAccessDenied``    URG-01, URG-02, URG-06: bris de glace / centre 15 conditions
  - ``HabilitationDenied``       HAB-01/HAB-03: the matrix forbids this type for this profession
  - ``DepositNotAllowed``        DEP-02, DEP-03: type not depositable by a PS, régulation mode...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ps_agent.errors import AccessDenied

if TYPE_CHECKING:
    from ps_agent.access.policy import Decision


class PolicyDenied(AccessDenied):
    """Base of the policy's refusals (keeps the decision that led to it)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.message_fr, code=decision.rule_id)
        self.decision = decision
        self.rule_id = decision.rule_id
        self.log_code = decision.log_code
        self.needs_consent = decision.needs_consent


class AuthenticationRequired(PolicyDenied):
    pass


class RoleNotAllowed(PolicyDenied):
    pass


class ForbiddenPurpose(PolicyDenied):
    pass


class IdentityNotQualified(PolicyDenied):
    pass


class NoActiveDmp(PolicyDenied):
    pass


class PatientBlockedAccess(PolicyDenied):
    pass


class ConsentRequired(PolicyDenied):
    pass


class EmergencyAccessDenied(PolicyDenied):
    pass


class HabilitationDenied(PolicyDenied):
    pass


class DepositNotAllowed(PolicyDenied):
    pass


# rule id (exact, then prefix) -> exception class
_BY_RULE: dict[str, type[PolicyDenied]] = {
    "AUTH-01": AuthenticationRequired,
    "AUTH-03": AuthenticationRequired,
    "AUTH-04": RoleNotAllowed,
    "GEN-03": ForbiddenPurpose,
    "ID-01": IdentityNotQualified,
    "ID-02": IdentityNotQualified,
    "PAT-06": NoActiveDmp,
    "PAT-01": PatientBlockedAccess,
    "ACC-02": ConsentRequired,
    "ACC-03": ConsentRequired,
    "URG-01": EmergencyAccessDenied,
    "URG-02": EmergencyAccessDenied,
    "URG-06": EmergencyAccessDenied,
    "HAB-01": HabilitationDenied,
    "HAB-03": HabilitationDenied,
    "DEP-02": DepositNotAllowed,
    "DEP-03": DepositNotAllowed,
}


def error_for(decision: Decision) -> PolicyDenied:
    """The typed exception for a refused decision."""
    cls = _BY_RULE.get(decision.rule_id, PolicyDenied)
    return cls(decision)


__all__ = [
    "AccessDenied",
    "AuthenticationRequired",
    "ConsentRequired",
    "DepositNotAllowed",
    "EmergencyAccessDenied",
    "ForbiddenPurpose",
    "HabilitationDenied",
    "IdentityNotQualified",
    "NoActiveDmp",
    "PatientBlockedAccess",
    "PolicyDenied",
    "RoleNotAllowed",
    "error_for",
]
