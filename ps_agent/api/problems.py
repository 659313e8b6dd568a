"""RFC 9457 problem details (``application/problem+json``) with a French ``detail`` and the fields named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://ps-agent.local/problemes/"


class FieldError(BaseModel):
    field: str
    detail: str


class ProblemModel(BaseModel):
    """The body of an error answer (RFC 9457) plus ``code`` (ours or the DMP's) and ``errors``."""

    type: str
    title: str
    status: int
    detail: str
    code: str = ""
    instance: str | None = None
    errors: list[FieldError] = []
    source: Literal["", "dmp", "politique"] = Field(
        "", description="Qui refuse : « dmp » (le DMP, code du DMP dans code), « politique » (règle d'accès "
        "de l'agent, code de la règle), vide sinon",
    )  # fmt: skip


@dataclass
class Problem(Exception):
    """Raised by a route: becomes a problem+json answer."""

    status: int
    code: str
    detail: str
    title: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    source: Literal["", "dmp", "politique"] = ""

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return ProblemModel(
            type=PROBLEM_BASE + self.code.lower().replace("_", "-"),
            title=self.title or TITLES.get(self.status, "Erreur"),
            status=self.status,
            detail=self.detail,
            code=self.code,
            instance=instance,
            errors=[FieldError(field=f, detail=d) for f, d in self.errors],
            source=self.source,
        ).model_dump()


TITLES = {
    400: "Requête invalide",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Introuvable",
    405: "Méthode non autorisée",
    409: "Conflit",
    413: "Requête trop volumineuse",
    415: "Type de contenu non pris en charge",
    422: "Données invalides",
    500: "Erreur interne",
    502: "Erreur du DMP",
    503: "Service indisponible",
}


def field_problem(status: int, code: str, field_name: str, detail: str) -> Problem:
    return Problem(status, code, detail, errors=[(field_name, detail)])


# responses documented on every route (OpenAPI)
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": ProblemModel, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": TITLES[s]}
    for s in (400, 401, 403, 404, 409, 413, 422, 502, 503)
}
