"""CI-SIS CDA R2 engine: build, parse, validate and classify documents. Pure library: no Qt, no network.

Entry points: ``cda.parse(data)``, ``cda.metadata.derive(doc, data)``, ``cda.classify``, ``cda.valuesets``,
``cda.habilitations``, ``cda.ins``, ``cda.build``, ``cda.vaccinations``, ``cda.validate``.

``parse`` and ``CdaDocument`` are imported on first use (PEP 562): importing one light submodule
(``cda.errors``, ``cda.ins``, ``cda.valuesets``) then does not import the parser, the model and lxml — what
the desktop window's start-up and the core's error modules need (``benchmarks/bench_ui.py``).
"""

from typing import TYPE_CHECKING, Any

from cda.errors import CdaError

if TYPE_CHECKING:
    from cda.model import CdaDocument
    from cda.parser import parse

__all__ = ["CdaDocument", "CdaError", "parse"]


def __getattr__(name: str) -> Any:
    if name == "parse":
        from cda.parser import parse

        return parse
    if name == "CdaDocument":
        from cda.model import CdaDocument

        return CdaDocument
    raise AttributeError(f"module 'cda' has no attribute {name!r}")
