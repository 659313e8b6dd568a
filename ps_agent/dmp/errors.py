"""Exception tree of the DMP client (httpx style: one root, families by what the caller can do).

::

    DmpError (ps_agent.errors)
    ├── TransportError        network, TLS, timeouts, HTTP 5xx: may be retried (``retryable`` is True)
    │   └── DmpTimeout
    ├── DmpRefusal            the DMP answered "no": never retried
    │   ├── SoapFault         soap:Fault (bad VIHF, missing WS-A header...)
    │   ├── Hl7Refusal        HL7v3 acknowledgement AE (TD0.2)
    │   ├── DmpStatusRefusal  DMP-specific output/status other than DMPOk (TD0.3, TD0.4, TD1.6)
    │   └── RegistryRefusal   XDS RegistryResponse Failure / PartialSuccess with its RegistryError list
    ├── ProtocolError         the answer is not valid XML or not the expected message (never a success)
    │   └── DocumentMissingError  a requested document is not in a TD3.2 answer
    └── DocumentIntegrityError retrieved bytes do not match the registry hash/size

Every refusal carries ``code`` (verbatim from the DMP, unknown codes kept as they are),
``code_context`` (the DMP's own text) and ``message_fr`` (the sentence for the professional).
"""

from __future__ import annotations

from dataclasses import dataclass

from ps_agent.errors import DmpError


class TransportError(DmpError):
    """The request may not have reached the DMP, or its answer was lost. Safe to retry reads;
    deposits are retried only after checking that the first attempt was not registered."""

    retryable = True

    def __init__(self, message_fr: str, *, code: str | None = "TRANSPORT", detail: str = "") -> None:
        super().__init__(message_fr, code=code)
        self.detail = detail


class DmpTimeout(TransportError):
    """No answer in time."""


@dataclass(frozen=True)
class RegistryErrorItem:
    """One ``rs:RegistryError`` of an XDS response (or the single error of other layers)."""

    code: str
    code_context: str = ""
    severity: str = "Error"  # "Error" or "Warning" (suffix of the ebRS severity URN)
    location: str = ""


class DmpRefusal(DmpError):
    """The DMP refused. Never retried automatically."""

    retryable = False

    def __init__(
        self,
        message_fr: str,
        *,
        code: str | None = None,
        code_context: str = "",
        errors: tuple[RegistryErrorItem, ...] = (),
    ) -> None:
        super().__init__(message_fr, code=code)
        self.code_context = code_context
        self.errors = errors


class SoapFault(DmpRefusal):
    """``soap:Fault`` (``code`` = Value[/Subcode Value], ``code_context`` = Reason/Text)."""


class Hl7Refusal(DmpRefusal):
    """HL7v3 ``acknowledgement typeCode="AE"``."""


class DmpStatusRefusal(DmpRefusal):
    """DMP-specific ``output/status`` other than ``DMPOk``."""


class RegistryRefusal(DmpRefusal):
    """XDS ``RegistryResponse`` with status Failure or PartialSuccess."""


class ProtocolError(DmpError):
    """The DMP's answer is not valid XML, not SOAP, or not the message expected for the request."""

    retryable = False

    def __init__(self, message_fr: str, *, code: str | None = "PROTOCOL", detail: str = "") -> None:
        super().__init__(message_fr, code=code)
        self.detail = detail


class DocumentIntegrityError(DmpError):
    """A retrieved document does not match the hash or size announced by the registry."""

    retryable = False


class DocumentMissingError(ProtocolError):
    """A document asked for in a TD3.2 (ITI-43) request is not in the answer; ``unique_ids`` names
    every missing one (``code`` DOCUMENT_MISSING, the DMP's RegistryErrors, if any, in ``errors``)."""

    def __init__(
        self,
        message_fr: str,
        *,
        unique_ids: tuple[str, ...],
        errors: tuple[RegistryErrorItem, ...] = (),
    ) -> None:
        super().__init__(message_fr, code="DOCUMENT_MISSING", detail=", ".join(unique_ids))
        self.unique_ids = unique_ids
        self.errors = errors


# French messages for the codes we know. Keys are matched against the verbatim code; unknown codes
# fall back to a generic sentence that quotes the DMP's own text (codeContext), never hidden.
KNOWN_MESSAGES: dict[str, str] = {
    # IHE XDS.b (ITI TF-3 4.2.4.1)
    "XDSRegistryError": "Le registre du DMP a rencontré une erreur.",
    "XDSRepositoryError": "L'entrepôt de documents du DMP a rencontré une erreur.",
    "XDSRegistryMetadataError": "Les métadonnées du document ont été refusées par le DMP.",
    "XDSRepositoryMetadataError": "Les métadonnées du document ont été refusées par le DMP.",
    "XDSMissingDocument": "Le document demandé n'existe pas dans le DMP.",
    "XDSMissingDocumentMetadata": "Les métadonnées d'un document envoyé sont manquantes.",
    "XDSDocumentUniqueIdError": "Le DMP refuse cet identifiant de document (inconnu ou déjà utilisé).",
    "XDSDuplicateUniqueIdInRegistry": "Un document portant cet identifiant existe déjà dans le DMP.",
    "XDSPatientIdDoesNotMatch": "L'identifiant du patient du document ne correspond pas à celui de l'envoi.",
    "XDSUnknownPatientId": "Ce patient n'a pas de DMP actif.",
    "XDSTooManyResults": "La recherche renvoie trop de documents : précisez les critères.",
    "XDSMetadataUpdateError": "La modification du document a été refusée par le DMP.",
    "XDSMetadataVersionError": "Le document a été modifié entre-temps ; rechargez la liste et recommencez.",
    "XDSUnknownRepositoryId": "L'entrepôt de documents demandé est inconnu du DMP.",
    "XDSStoredQueryParamNumber": "La recherche envoyée au DMP est incomplète.",
    "XDSRegistryBusy": "Le DMP est momentanément surchargé ; réessayez plus tard.",
    "XDSRepositoryBusy": "Le DMP est momentanément surchargé ; réessayez plus tard.",
    "XDSRegistryOutOfResources": "Le DMP est momentanément surchargé ; réessayez plus tard.",
    # DMP statuses (TD0.3 / TD0.4 / TD1.6)
    "DMPClosed": "Ce patient n'a pas de DMP actif (opposition ou clôture). Aucun document ne sera envoyé.",
    "DMPNotFound": "Ce patient n'a pas de DMP actif.",
    "DMPPatientAccessAlreadyExists": "L'accès du patient à son DMP existe déjà.",
    "DMPPatientAccessOTPAlreadyExists": "L'accès du patient à son DMP existe déjà.",
    # SOAP 1.2 fault codes
    "env:Sender": "Le DMP a refusé la requête.",
    "env:Receiver": "Le DMP n'a pas pu traiter la requête.",
}


def french_message(code: str, code_context: str = "") -> str:
    """The sentence shown to the professional for a DMP code (unknown codes: the DMP's own text)."""
    known = KNOWN_MESSAGES.get(code) or KNOWN_MESSAGES.get(code.rsplit(":", 1)[-1])
    if known:
        return f"{known} ({code_context})" if code_context and code_context not in known else known
    if code_context:
        return f"Le DMP a refusé l'opération : {code_context} (code {code})."
    return f"Le DMP a refusé l'opération (code {code})."
