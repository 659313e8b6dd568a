"""A client of the running agent's local API, for the command line (``ps-agent deposit --batch``): finds
the agent (token file + port), submits deposits and follows them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ps_agent.api.security import token_path
from ps_agent.api.settings import DEFAULT_PORT
from ps_agent.errors import PsAgentError

FINAL = frozenset({"registered", "refused", "handed_back"})


@dataclass
class LocalAgent:
    url: str
    token: str

    def _client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def status(self) -> dict[str, Any]:
        with self._client() as c:
            return _ok(c.get("/v1/status"))

    def deposit(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._client() as c:
            return _ok(c.post("/v1/deposits", json=body))

    def item(self, entry_id: str) -> dict[str, Any]:
        with self._client() as c:
            return _ok(c.get(f"/v1/queue/{entry_id}"))


class ApiProblem(PsAgentError):
    """A problem+json answer of the local API."""

    def __init__(self, problem: dict[str, Any]) -> None:
        fields = ", ".join(str(e.get("field")) for e in problem.get("errors", []) if e.get("field"))
        detail = str(problem.get("detail") or problem.get("title") or "Erreur de l'API locale.")
        super().__init__(
            detail + (f" (champ : {fields})" if fields else ""), code=str(problem.get("code", ""))
        )
        self.problem = problem


def _ok(r: httpx.Response) -> dict[str, Any]:
    if r.status_code >= 400:
        try:
            raise ApiProblem(r.json())
        except ValueError:
            raise PsAgentError(f"L'agent a répondu {r.status_code}.", code="API_ERROR") from None
    data: dict[str, Any] = r.json()
    return data


def find_running_agent(
    config: Path | None = None, port: int = DEFAULT_PORT, timeout: float = 1.0
) -> LocalAgent | None:
    """The agent listening on 127.0.0.1:port with this install's token, or None when none answers."""
    try:
        token = token_path(config).read_text(encoding="ascii").strip()
    except OSError:
        return None
    agent = LocalAgent(f"http://127.0.0.1:{port}", token)
    try:
        with agent._client(timeout) as c:
            r = c.get("/v1/status")
    except httpx.HTTPError:
        return None
    return agent if r.status_code == 200 else None


class AgentTokenRefused(PsAgentError):
    """An agent answers on the port but refuses this install's token (401)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"L'agent refuse le jeton lu dans {path}.", code="TOKEN_REFUSED")
        self.path = path


def locate_agent(
    config: Path | None = None, port: int = DEFAULT_PORT, timeout: float = 1.0
) -> LocalAgent | None:
    """Like ``find_running_agent``, but an agent that answers and refuses the token raises
    ``AgentTokenRefused`` instead of passing for "no agent" (the command line then says so)."""
    path = token_path(config)
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not token:
        return None
    agent = LocalAgent(f"http://127.0.0.1:{port}", token)
    try:
        with agent._client(timeout) as c:
            r = c.get("/v1/status")
    except httpx.HTTPError:
        return None
    if r.status_code == 401:
        raise AgentTokenRefused(path)
    return agent if r.status_code == 200 else None


def body_from_files(document: Path, sidecar: Path) -> dict[str, Any]:
    """A ``POST /v1/deposits`` body from a hot-folder pair (PDF or CDA + JSON sidecar)."""
    meta = json.loads(sidecar.read_text(encoding="utf-8-sig"))
    if not isinstance(meta, dict):
        raise PsAgentError(f"{sidecar.name} : un objet JSON est attendu.", code="SIDECAR_INVALID")
    data = base64.b64encode(document.read_bytes()).decode()
    body: dict[str, Any] = {"patient": meta.get("patient", {})}
    if document.suffix.lower() == ".xml":
        body["cda_base64"] = data
    else:
        body.update(pdf_base64=data, type_code=meta.get("type_code", ""), title=meta.get("title", ""),
                    author=meta.get("author"))  # fmt: skip
    body["visibility"] = {k: str(meta.get(k, "N")).upper() in ("Y", "O", "OUI", "TRUE")
                          for k in ("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX")}  # fmt: skip
    if meta.get("replaces"):
        body["replaces"] = meta["replaces"]
    return body
