"""CI-SIS CDA R2 engine: build, parse, validate and classify documents. Pure library: no Qt, no network.

Entry points: ``cda.parse(data)``, ``cda.metadata.derive(doc, data)``, ``cda.classify``, ``cda.valuesets``,
``cda.habilitations``, ``cda.ins``, ``cda.build``, ``cda.vaccinations``, ``cda.validate``.
"""

from cda.errors import CdaError
from cda.model import CdaDocument
from cda.parser import parse

__all__ = ["CdaDocument", "CdaError", "parse"]
