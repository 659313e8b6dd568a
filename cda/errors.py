"""The exception tree of the ``cda`` package (one root, typed leaves, a French message for the user).

::

    CdaError                      root; ``message_fr`` for the user, ``field`` names the faulty element/input
    ├── UnreadableInput           the input cannot be read at all (exit code 2 at the CLI)
    │   ├── XmlSecurityError      DOCTYPE / entity declarations refused
    │   ├── XmlSyntaxError        not well-formed XML, or not a CDA ClinicalDocument
    │   └── InputFileError        a file given to a builder is empty, too large, unreadable
    │       └── InvalidPdfError   a "PDF" that is not a PDF (header, or pypdf cannot open it)
    ├── TypeCodeError             document type code problems
    │   ├── UnknownTypeCode       not in JDV_J07 / the project's type table
    │   └── TypeNotAcceptedByDmp  a CI-SIS type code the DMP does not accept (not in JDV_J66)
    ├── InvalidInput              a builder input (patient, author, vaccination…) is wrong
    │   ├── MissingTrait          a mandatory INS identity trait is missing
    │   ├── InvalidDate           unparsable date, or a birth date in the future
    │   ├── InvalidIns            NIR/NIA length, key (mod 97) or OID problem
    │   └── InvalidRpps           idNat_PS not "8" + 11 digits
    ├── DocumentNotDepositable    a readable CDA breaks blocking built-in rules (``findings`` lists them)
    └── OfficialArtefactsError    the official XSD/schematron folder is missing or unusable
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cda.validate import Finding


class CdaError(Exception):
    """Root of every error raised by ``cda``.

    ``message_fr`` is what a secretary reads; ``field`` names the faulty element or input when known.
    """

    exit_code = 1

    def __init__(self, message_fr: str, *, field: str | None = None) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.field = field


class UnreadableInput(CdaError):
    exit_code = 2


class XmlSecurityError(UnreadableInput):
    pass


class XmlSyntaxError(UnreadableInput):
    pass


class InputFileError(UnreadableInput):
    pass


class InvalidPdfError(InputFileError):
    pass


class TypeCodeError(CdaError):
    pass


class UnknownTypeCode(TypeCodeError):
    pass


class TypeNotAcceptedByDmp(TypeCodeError):
    pass


class InvalidInput(CdaError):
    pass


class MissingTrait(InvalidInput):
    pass


class InvalidDate(InvalidInput):
    pass


class InvalidIns(InvalidInput):
    pass


class InvalidRpps(InvalidInput):
    pass


class DocumentNotDepositable(CdaError):
    """Raised by ``cda.validate.check_deposit_ready``; ``findings`` holds every blocking finding."""

    def __init__(
        self, message_fr: str, *, field: str | None = None, findings: list[Finding] | None = None
    ) -> None:
        super().__init__(message_fr, field=field)
        self.findings = list(findings or [])


class OfficialArtefactsError(CdaError):
    exit_code = 2
