"""Exception tree of the DMP client (httpx style: one root, families by what the caller can do).

::

    DmpError (ps_agent.errors)
    ├── TransportError        network, TLS, timeouts, HTTP 5xx: may be retried (``retryable`` is True)
    │   └── DmpTimeout
    │       └── DmpDeadlineExceeded  the exchange's overall deadline passed (slow or trickling server)
    ├── DmpRefusal            the DMP answered "no": never retried
    │   ├── SoapFault         soap:Fault (bad VIHF, missing WS-A header...)
    │   ├── Hl7Refusal        HL7v3 acknowledgement AE (TD0.2)
    │   ├── DmpStatusRefusal  DMP-specific output/status other than DMPOk (TD0.3, TD0.4, TD1.6)
    │   └── RegistryRefusal   XDS RegistryResponse Failure / PartialSuccess with its RegistryError list
    ├── ProtocolError         the answer is not valid XML or not the expected message (never a success)
    │   ├── ResponseTooLarge  the answer exceeds the size cap (not retried: the same request gets it again)
    │   └── DocumentMissingError  a requested document is not in a TD3.2 answer
    ├── DocumentIntegrityError retrieved bytes do not match the registry hash/size
    └── InvalidRequest        the caller asked for something impossible, before any exchange

``classify_failure(exc)`` is the ONE place that tells a transient failure (retry the same submission
later) from a final refusal (about the document, the patient or the rights) and from "already
registered" (the uniqueId is an idempotency key).

Every refusal carries ``code`` (verbatim from the DMP, unknown codes kept as they are),
``code_context`` (the DMP's own text) and ``message_fr`` (the sentence for the professional).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from cda.errors import CdaError
from ps_agent.errors import AccessDenied, AuthError, DmpError


class TransportError(DmpError):
    """The request may not have reached the DMP, or its answer was lost. Safe to retry reads;
    deposits are retried only after checking that the first attempt was not registered."""

    retryable = True

    def __init__(self, message_fr: str, *, code: str | None = "TRANSPORT", detail: str = "") -> None:
        super().__init__(message_fr, code=code)
        self.detail = detail


class DmpTimeout(TransportError):
    """No answer in time."""


class DmpDeadlineExceeded(DmpTimeout):
    """The whole exchange (connection, TLS, request, answer) did not end within its overall deadline.

    Retryable, like any timeout: a slow network or an overloaded DMP is transient, and the request may or
    may not have been processed (a deposit is resent only after checking, as after any ``TransportError``).
    """

    def __init__(self, message_fr: str, *, code: str | None = "DEADLINE_EXCEEDED", detail: str = "") -> None:
        super().__init__(message_fr, code=code, detail=detail)


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


class ResponseTooLarge(ProtocolError):
    """The DMP's answer exceeds the configured size cap; the connection was dropped without reading it all.

    Not retryable: the same request gets the same oversized answer (for a search, narrow it). After a
    deposit, the outcome is unknown, as after any ``ProtocolError`` once the request was sent.
    """

    def __init__(self, message_fr: str, *, code: str | None = "RESPONSE_TOO_LARGE", detail: str = "") -> None:
        super().__init__(message_fr, code=code, detail=detail)


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


class InvalidRequest(DmpError):
    """The caller asked for something impossible before any exchange (bad visibility, unknown document,
    a document about another patient)."""

    retryable = False


# --- one classification of failures (deposit queue, retries) -----------------------------------------


class FailureKind(enum.StrEnum):
    TRANSIENT = "transient"  # network, timeout, HTTP 5xx/503, SOAP Receiver, busy registry: send again later
    FINAL = "final"  # a refusal about the document, the patient or the rights: never resent
    ALREADY_REGISTERED = "already_registered"  # the DMP already holds this uniqueId: registered


DUPLICATE_UNIQUE_ID_CODES = frozenset({"XDSDuplicateUniqueIdInRegistry", "XDSDocumentUniqueIdError"})
"""Registry codes that mean "this uniqueId is already registered" (IHE ITI TF-3 4.2.4.1; the sandbox uses
``XDSDocumentUniqueIdError`` with the uniqueId in the location). [I] On a resend of the SAME submission
(same uniqueIds) this means the first attempt committed: registered."""

TRANSIENT_REGISTRY_CODES = frozenset(
    {
        "XDSRegistryBusy",
        "XDSRepositoryBusy",
        "XDSRegistryOutOfResources",
        "XDSRepositoryOutOfResources",
        "XDSRegistryError",
        "XDSRepositoryError",
    }
)
"""[I] Registry codes about the DMP's own state (busy, out of resources, internal error), not about the
document, the patient or the rights: retried later, never reported as a refusal."""


def _last_segment(code: str) -> str:
    return code.replace("/", ":").rsplit(":", 1)[-1]


def _names_any(exc: DmpRefusal, unique_ids: Iterable[str]) -> bool:
    texts = [exc.code_context, *(e.code_context for e in exc.errors), *(e.location for e in exc.errors)]
    ids = [u for u in unique_ids if u]
    return any(u in t for u in ids for t in texts if t)


def classify_failure(exc: BaseException, *, unique_ids: Iterable[str] = ()) -> FailureKind:
    """What a failure of an exchange means for a deposit that may be sent again.

    - ``TransportError`` (reset, timeout, HTTP 5xx/503 without a SOAP answer) and ``ProtocolError`` (an
      unreadable answer: the outcome is unknown) → TRANSIENT; so is a ``SoapFault`` whose code is
      ``Receiver`` (SOAP 1.2: the server's own problem), a registry error in ``TRANSIENT_REGISTRY_CODES``
      and an ended session (``AuthError``: it waits for a new session);
    - a registry refusal with a code of ``DUPLICATE_UNIQUE_ID_CODES`` naming one of ``unique_ids`` (the
      documents and the submission set being sent) → ALREADY_REGISTERED;
    - any other refusal (``Sender`` faults, HL7 AE, DMP statuses, registry errors about the document, the
      patient or the rights), a local policy refusal (``AccessDenied``) and an invalid document
      (``CdaError``, ``InvalidRequest``) → FINAL. Anything else (a defect) → TRANSIENT: never lose it.
    """
    if isinstance(exc, TransportError | ProtocolError | AuthError):
        return FailureKind.TRANSIENT
    if isinstance(exc, SoapFault):
        head = (exc.code or "").split("/", 1)[0]
        return FailureKind.TRANSIENT if _last_segment(head) == "Receiver" else FailureKind.FINAL
    if isinstance(exc, DmpRefusal):
        codes = {_last_segment(exc.code or "")} | {_last_segment(e.code) for e in exc.errors}
        errors = [e for e in exc.errors if e.severity != "Warning"] or list(exc.errors)
        if codes & DUPLICATE_UNIQUE_ID_CODES and _names_any(exc, unique_ids):
            return FailureKind.ALREADY_REGISTERED
        if errors and all(_last_segment(e.code) in TRANSIENT_REGISTRY_CODES for e in errors):
            return FailureKind.TRANSIENT
        if not errors and _last_segment(exc.code or "") in TRANSIENT_REGISTRY_CODES:
            return FailureKind.TRANSIENT
        return FailureKind.FINAL
    if isinstance(exc, AccessDenied | InvalidRequest | DocumentIntegrityError | CdaError):
        return FailureKind.FINAL
    return FailureKind.TRANSIENT
