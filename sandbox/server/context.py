"""The seam between the sandbox server layer (HTTP, TLS, SOAP, MTOM, VIHF) and the domain layer (dmp).

The server layer parses and authenticates a request, then hands the domain layer a :class:`SoapRequest`
whose :class:`Caller` is already verified (TLS client certificate + VIHF). The domain layer answers with a
:class:`SoapResponse` or raises :class:`SoapFault` for SOAP-level refusals (registry errors go inside the
``RegistryResponse`` / ``AdhocQueryResponse``, HL7v3 refusals as ``AE`` acknowledgements).

Exception tree (server layer): ``sandbox.errors.SandboxError``
    └── :class:`SoapFault` — a refusal answered as a SOAP 1.2 fault (French reason text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from lxml import etree

from sandbox.errors import SandboxError

MODE_DIRECTE = "DIRECTE"
MODE_INDIRECTE = "INDIRECTE"
MODE_INDIRECTE_RENFORCEE = "INDIRECTE_RENFORCEE"
MODES = (MODE_DIRECTE, MODE_INDIRECTE, MODE_INDIRECTE_RENFORCEE)

PURPOSE_NORMAL = "normal"
PURPOSE_BRIS_DE_GLACE = "bris_de_glace"
PURPOSE_CENTRE_15 = "centre_15"
PURPOSES = (PURPOSE_NORMAL, PURPOSE_BRIS_DE_GLACE, PURPOSE_CENTRE_15)


@dataclass(frozen=True)
class Caller:
    """Who is calling, built by the server layer from the TLS client certificate and the verified VIHF."""

    id_nat: str  # Identifiant national of the user (PS idNat, or the local user's id in INDIRECTE)
    family_name: str
    given_name: str
    profession_code: str  # TRE_G15 code ("10" médecin, "21" pharmacien, "60" infirmier) or "" for non-PS
    non_ps_role: str  # TRE_A00 role for non-PS users (e.g. "SECRETARIAT_MEDICAL"), "" for PS
    specialty_code: str  # TRE_R38 / G15_21 specialty code, "" when none
    structure_id: str  # Identifiant_Structure (with its type prefix)
    sector: str  # Secteur_Activite (TRE_R02, e.g. "SA07")
    mode: str  # DIRECTE | INDIRECTE | INDIRECTE_RENFORCEE
    purpose: str  # normal | bris_de_glace | centre_15
    reason: str | None  # Mode_Acces_Raison when given (mandatory for bris_de_glace)
    patient_ins: str | None  # from resource-id CX (INS without the OID)
    patient_oid: str | None  # assigning authority OID of the resource-id
    confidentiality: str | None  # e.g. INVISIBLE_REPRESENTANTS_LEGAUX
    is_regulator: bool  # regulation role (centre 15)
    tls_subject: str  # RFC 4514 subject of the TLS client certificate
    vihf_signed: bool  # the VIHF carried a valid XML-DSig signature
    lps_name: str  # LPS_Nom
    lps_version: str  # LPS_Version
    role_code: str = ""  # raw Role code from the VIHF (profession code or non-PS role)
    author_id_nat: str | None = None  # author professional of an INDIRECTE_RENFORCEE deposit, if any


@dataclass
class SoapRequest:
    """A parsed, authenticated SOAP request handed to the domain layer."""

    service: str  # patients | habilitations | patientsSpecific | repository | registry
    action: str  # wsa:Action
    message_id: str  # wsa:MessageID
    # First child element of soap:Body. Every xdsb:Document in it holds one <xop:Include href="cid:ID"/> whose
    # ID is a key of ``attachments``: MTOM parts are checked to exist, inline base64 content is decoded and
    # turned into such a reference by the server, so the domain layer sees one shape.
    body: etree._Element
    attachments: dict[str, bytes]  # MTOM parts by Content-ID (without <>, URL-decoded)
    caller: Caller
    received_at: datetime


@dataclass
class SoapResponse:
    """The domain layer's answer; the server wraps it in a SOAP 1.2 envelope with WS-Addressing headers."""

    action: str  # e.g. "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
    body: etree._Element
    # cid -> (bytes, mime type): when non-empty the server answers as MTOM/XOP multipart. The body refers to
    # each part with <xop:Include href="cid:..."/> placed by the domain layer.
    attachments: dict[str, tuple[bytes, str]] = field(default_factory=dict)


class SoapFault(SandboxError):
    """A refusal answered as a SOAP 1.2 fault.

    ``code`` is the SOAP 1.2 fault code local name (``Sender`` or ``Receiver``); ``subcode`` an optional
    qualified subcode as text (e.g. ``"wsa:MessageAddressingHeaderRequired"`` or ``"DMPVIHF"``); ``reason_fr``
    the French reason text shown to the user; ``detail`` optional plain text put in ``soap:Detail``.
    Subcode prefixes ``wsa``, ``wsse`` and ``sandbox`` (``urn:ps-agent:sandbox:fault``) are declared in the
    fault; a subcode with another or no prefix is emitted in the ``sandbox`` namespace.
    """

    def __init__(
        self,
        reason_fr: str,
        *,
        code: str = "Sender",
        subcode: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(reason_fr)
        self.reason_fr = reason_fr
        self.code = code
        self.subcode = subcode
        self.detail = detail


class Service(Protocol):
    """What the server layer needs from the domain layer (``sandbox.dmp.service.DmpService``)."""

    def handle(self, req: SoapRequest) -> SoapResponse: ...

    def trace_refusal(self, caller: Caller | None, service: str, action: str, reason: str) -> None: ...
