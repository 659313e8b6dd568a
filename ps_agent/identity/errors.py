"""Exception tree of the INSi client (httpx style: one root, families by what the caller can do).

::

    IdentityError (ps_agent.errors.PsAgentError)
    ├── InsiInputError             bad input before anything is sent (traits, Vitale data): ``field`` names it
    │   └── VitaleSelectionExpired the Vitale data were read more than 20 minutes ago: read the card again
    ├── InsiConfigurationError     wrong environment, certificate name, missing CNDA number, test card in
    │                              production… (fix the settings, never retried)
    ├── InsiTransportError         network, TLS, timeout, HTTP error without a SOAP fault (``retryable``)
    │   └── InsiTimeout
    ├── InsiFault                  the service answered a SOAP 1.2 fault (``siram:Erreur``)
    │   ├── InsiUnavailable        Receiver faults (siram_40 / insi_102…): retry later (``retryable``)
    │   ├── InsiSoftwareNotAuthorised   siram_100 / desir_550: unknown CNDA authorisation number (IDAM)
    │   ├── InsiAccessDenied       DESIR_560: the certificate is not INSI-MANU / INSI-AUTO
    │   └── InsiRequestRefused     any other Sender fault (the service's own text is kept)
    └── InsiProtocolError          the answer is not XML, not SOAP, or not a RESULTAT (never a success)

Every error carries ``message_fr`` (the sentence for the professional) and ``code`` (for callers). A fault
also keeps the service's verbatim ``subcode``, ``detail_code``, ``reason`` (Reason/Text), ``detail``
(siram:Erreur text), ``severity`` and the echoed ``message_id``.
"""

from __future__ import annotations

from ps_agent.errors import PsAgentError


class IdentityError(PsAgentError):
    """Anything the patient-identity layer (INSi, Vitale data, identity checks) refuses."""

    retryable = False


class InsiInputError(IdentityError):
    """The data given for a search cannot be sent (forbidden character, bad date, bad NIR…)."""

    def __init__(self, message_fr: str, *, code: str = "insi_input", field: str = "") -> None:
        super().__init__(message_fr, code=code)
        self.field = field


class VitaleSelectionExpired(InsiInputError):
    """CNDA test INSi 1.02: Vitale data (and their assertion) are not reused after 20 minutes."""


class InsiConfigurationError(IdentityError):
    """The INSi settings are wrong (environment, certificate, CNDA number, card nature vs environment)."""


class InsiTransportError(IdentityError):
    """The request may not have reached INSi, or its answer was lost (network, TLS, HTTP error)."""

    retryable = True

    def __init__(self, message_fr: str, *, code: str = "insi_transport", detail: str = "") -> None:
        super().__init__(message_fr, code=code)
        self.detail = detail


class InsiTimeout(InsiTransportError):
    """INSi did not answer in time."""


class InsiFault(IdentityError):
    """A SOAP 1.2 fault from INSi. ``code`` is the precise detail code (``siram:Erreur/@code``) when
    there is one, else the subcode."""

    def __init__(
        self,
        message_fr: str,
        *,
        code: str,
        fault_code: str = "",
        subcode: str = "",
        detail_code: str = "",
        reason: str = "",
        detail: str = "",
        severity: str = "",
        message_id: str = "",
        http_status: int = 0,
    ) -> None:
        super().__init__(message_fr, code=code)
        self.fault_code = fault_code  # "Sender" | "Receiver"
        self.subcode = subcode  # e.g. "siram_40"
        self.detail_code = detail_code  # e.g. "insi_102"
        self.reason = reason  # Reason/Text, verbatim
        self.detail = detail  # siram:Erreur text, verbatim
        self.severity = severity  # "fatal", "erreur"…
        self.message_id = message_id  # echo of wsa:MessageID
        self.http_status = http_status


class InsiUnavailable(InsiFault):
    """Receiver fault (service-side failure): retry later, with a bounded back-off."""

    retryable = True


class InsiSoftwareNotAuthorised(InsiFault):
    """siram_100 / desir_550: the CNDA authorisation number (IDAM) is unknown."""


class InsiAccessDenied(InsiFault):
    """DESIR_560: the establishment certificate does not give access to INSi."""


class InsiRequestRefused(InsiFault):
    """Any other Sender fault."""


class InsiProtocolError(IdentityError):
    """The answer is not what the contract says (not XML, not SOAP 1.2, no RESULTAT, bad CR…)."""

    def __init__(self, message_fr: str, *, code: str = "insi_protocol", detail: str = "") -> None:
        super().__init__(message_fr, code=code)
        self.detail = detail
