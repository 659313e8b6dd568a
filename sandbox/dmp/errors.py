"""Error codes the sandbox DMP answers with, in one table.

IHE codes (XDS*) are used where IHE defines one. DMP functional refusals have no public code
(dmp-protocol.md §9 open point 3): the sandbox uses the ``DMP*`` names below, carried in
``RegistryError@errorCode`` (XDS transactions), ``output/status`` (TD0.3/0.4/1.6) and
``acknowledgementDetail/code`` (HL7v3). The French sentence always travels in ``codeContext`` /
``context`` / ``text``; clients should show it and map on the code.
"""

from __future__ import annotations

# IHE XDS.b codes
REGISTRY_ERROR = "XDSRegistryError"
REPOSITORY_ERROR = "XDSRepositoryError"
METADATA = "XDSRegistryMetadataError"
REPOSITORY_METADATA = "XDSRepositoryMetadataError"
MISSING_DOCUMENT = "XDSMissingDocument"
MISSING_METADATA = "XDSMissingDocumentMetadata"
UNIQUE_ID = "XDSDocumentUniqueIdError"
PATIENT_MISMATCH = "XDSPatientIdDoesNotMatch"
UNKNOWN_PATIENT = "XDSUnknownPatientId"
TOO_MANY = "XDSTooManyResults"
METADATA_UPDATE = "XDSMetadataUpdateError"
METADATA_VERSION = "XDSMetadataVersionError"
STORED_QUERY_PARAM = "XDSStoredQueryParamNumber"
UNKNOWN_STORED_QUERY = "XDSUnknownStoredQuery"
SIGNATURE = (
    "XDSRegistryMetadataError"  # [I] no IHE code for a bad XAdES: a metadata error naming the signature
)

# DMP functional refusals [I] (names chosen here; no public list)
DMP_NOT_FOUND = "XDSUnknownPatientId"  # no DMP for this INS (also TD0.3 status DMPNotFound)
DMP_CLOSED = "DMPClosed"
DMP_OPPOSED = "DMPOpposed"
NOT_AUTHORISED = "DMPAccessNotAuthorized"
BLOCKED = "DMPAccessBlocked"
EMERGENCY_REFUSED = "DMPEmergencyAccessRefused"
ACCESS_DENIED = "DMPAccessDenied"
HABILITATION = "DMPHabilitationRefused"

# TD0.3 / TD0.4 / TD1.6 output/status values
STATUS_OK = "DMPOk"
STATUS_NOT_FOUND = "DMPNotFound"
STATUS_CLOSED = "DMPClosed"
STATUS_INVALID = "DMPInvalidData"

SEVERITY_ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
