"""The local HTTP API (FastAPI): routes, the token/Origin/size guard and the problem+json answers.

``create_app(backend, token, allowed_origins)`` returns the ASGI application; ``ps_agent.api.server``
runs it with uvicorn on the loopback interface only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path as PathLib
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ps_agent.access.policy import PatientRef
from ps_agent.api import models as m
from ps_agent.api.backend import (
    EMERGENCY_CONFIRMATION_REQUESTED,
    OPEN_PATIENT_REQUESTED,
    ApiBackend,
    EmergencyRequest,
    OpenPatientRequest,
    to_problem,
)
from ps_agent.api.problems import PROBLEM_MEDIA_TYPE, PROBLEM_RESPONSES, Problem, field_problem
from ps_agent.api.security import origin_allowed, token_matches
from ps_agent.api.settings import DEFAULT_BACKGROUND, MAX_BODY_BYTES, UNIQUE_ID_MAX, UNIQUE_ID_PATTERN
from ps_agent.context import Context
from ps_agent.dmp.environment import ins_oid_for
from ps_agent.dmp.model import Visibility
from ps_agent.errors import ConfigurationError
from ps_agent.events import QUEUE_CHANGED
from ps_agent.outbox import FINAL_STATES, EntryNotFound, EntryState, OutboxError, QueuedDeposit

# 1.1: document and queue actions, fuller list entries; 1.2: POST /v1/queue/{id}/resume (additive)
API_VERSION = "1.2.0"
PUBLIC_PATHS = frozenset({"/openapi.json"})
# [I] Resuming one entry deposited by another professional than the session's: 403 (the session may not
# send it in that person's name), not 409 (nothing about the entry's state would change the answer).
OTHER_PROFESSIONAL_CODE = "QUEUE_OTHER_PROFESSIONAL"
SSE_KEEPALIVE_S = 15.0
PROBLEM_REF = "#/components/schemas/ProblemModel"


Ins = Annotated[str, Path(min_length=15, max_length=15, description="Matricule INS")]
Oid = Annotated[str, Query(max_length=64)]
InsStatus = Annotated[Literal["QUAL", "VALI", "RECUP", "PROV"], Query()]
Contexte = Annotated[Literal["interactif", "arriere-plan"], Query()]
Finalite = Annotated[str, Query(max_length=100, description="Finalité si ce ne sont pas des soins")]
QueueId = Annotated[str, Path(min_length=1, max_length=128)]
UniqueId = Annotated[str, Path(min_length=1, max_length=128)]
Rubrique = Annotated[str | None, Query(max_length=100)]


def _problem_response(p: Problem, instance: str | None = None) -> JSONResponse:
    return JSONResponse(
        p.body(instance), status_code=p.status, media_type=PROBLEM_MEDIA_TYPE, headers=p.headers
    )


class Guard:
    """Pure ASGI middleware: Origin first (403), then the bearer token (401), then the body size (413)."""

    def __init__(self, app: ASGIApp, token: str, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.token = token
        self.allowed = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem: Problem | None = None
        if not origin_allowed(headers.get("origin"), self.allowed):
            problem = Problem(
                403, "ORIGIN_REFUSED",
                f"Origine « {headers.get('origin')} » non autorisée : ajoutez-la à la liste des origines "
                "autorisées de l'agent.", errors=[("Origin", "origine non autorisée")],
            )  # fmt: skip
        elif scope["path"] not in PUBLIC_PATHS and not token_matches(
            headers.get("authorization"), self.token
        ):
            problem = Problem(
                401, "TOKEN_REQUIRED",
                "Jeton d'accès absent ou invalide : envoyez l'en-tête « Authorization: Bearer <jeton> » "
                "(fichier api-token du dossier de configuration de l'agent).",
                errors=[("Authorization", "jeton absent ou invalide")],
                headers={"WWW-Authenticate": 'Bearer realm="ps-agent"'},
            )  # fmt: skip
        else:
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                length = 0
            if length > MAX_BODY_BYTES:
                problem = Problem(
                    413, "TOO_LARGE", f"Requête trop volumineuse (plus de {MAX_BODY_BYTES // 2**20} Mio)."
                )
        if problem is not None:
            await _problem_response(problem, scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _loc_name(loc: tuple[Any, ...]) -> str:
    parts = [str(x) for x in loc if x not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


FIELD_MESSAGES_FR = {
    "missing": "champ obligatoire manquant",
    "extra_forbidden": "champ inconnu",
    "string_pattern_mismatch": "format invalide",
    "string_too_long": "texte trop long",
    "string_too_short": "texte vide ou trop court",
    "literal_error": "valeur non autorisée",
    "string_type": "un texte est attendu",
    "bool_type": "un booléen est attendu",
    "bool_parsing": "un booléen est attendu",
    "int_type": "un entier est attendu",
    "int_parsing": "un entier est attendu",
    "model_type": "un objet JSON est attendu",
    "dict_type": "un objet JSON est attendu",
    "greater_than_equal": "valeur trop petite",
    "less_than_equal": "valeur trop grande",
}


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            detail = f"Le corps de la requête n'est pas un JSON valide ({ctx.get('error', 'syntaxe')})."
            return Problem(400, "JSON_INVALID", detail, errors=[("body", detail)])
        name = _loc_name(tuple(err.get("loc", ())))
        errors.append((name, FIELD_MESSAGES_FR.get(str(err.get("type")), "valeur invalide")))
    names = ", ".join(f for f, _ in errors)
    return Problem(422, "INVALID_FIELDS", f"Données invalides : {names}.", errors=errors)


def nir_key_ok(ins: str) -> bool:
    body = ins[:13].upper().replace("2A", "19").replace("2B", "18")
    if not body.isdigit() or not ins[13:].isdigit():
        return False
    return 97 - int(body) % 97 == int(ins[13:])


def _check_ins(ins: str, field: str = "ins") -> None:
    if len(ins) != 15 or not nir_key_ok(ins):
        raise field_problem(
            422,
            "INVALID_INS",
            field,
            f"Matricule INS invalide ({field}) : 15 caractères dont la clé attendus.",
        )


_DOC_TYPES: dict[str, tuple[str, str, str]] = {}  # uniqueId → (type code, label, rubric); ids are immutable
_DOC_TYPES_MAX = 10_000


def _type_of(uid: str, data: bytes) -> tuple[str, str, str]:
    """The type code, its French label and its DMP rubric, read from the CDA's ``code`` (cached by
    uniqueId: a uniqueId names one content)."""
    got = _DOC_TYPES.get(uid)
    if got is not None:
        return got
    code = ""
    try:
        from cda.xml import safe_parse

        el = safe_parse(data).find("{urn:hl7-org:v3}code")
        code = "" if el is None else str(el.get("code") or "")
    except Exception:  # a queued document is a checked CDA; never fail a listing on it
        return ("", "", "")
    label, rubric = "", ""
    with contextlib.suppress(Exception):  # a code outside the table: shown raw
        from cda.classify import classify_type

        c = classify_type(code)
        label, rubric = c.type_label, c.dmp_rubric
    if len(_DOC_TYPES) >= _DOC_TYPES_MAX:
        _DOC_TYPES.clear()
    _DOC_TYPES[uid] = (code, label, rubric)
    return _DOC_TYPES[uid]


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else ""


def _queue_out(e: QueuedDeposit) -> m.QueueItemOut:
    docs = []
    for n, uid in enumerate(e.document_uids):
        data = e.documents[n] if n < len(e.documents) else b""
        code, label, rubric = _type_of(uid, data) if data else ("", "", "")
        docs.append(m.QueueDocumentOut(
            unique_id=uid, title=e.titles[n] if n < len(e.titles) else "", type_code=code, type=label,
            rubric=rubric, replaces=e.replaces[n] if n < len(e.replaces) else "",
        ))  # fmt: skip
    vis = (*tuple(e.visibility), False, False, False)
    return m.QueueItemOut(
        id=e.id, state=e.state.value, state_label=e.state.label_fr, reason=e.reason_fr,
        reason_code=e.reason_code, document_unique_ids=list(e.document_uids), titles=list(e.titles),
        attempts=e.attempts, next_try=e.next_try, next_try_at=_iso(e.next_try), created=e.created,
        updated=e.updated, events_url=f"/v1/queue/{e.id}/events", patient_ins=e.patient_ins,
        patient_ins_oid=e.patient_oid, patient_ins_status=e.ins_status, documents=docs,
        MASQUE_PS=bool(vis[0]), INVISIBLE_PATIENT=bool(vis[1]), INVISIBLE_REP_LEGAUX=bool(vis[2]),
        deposited_by=e.actor_id_nat, on_behalf_of=e.on_behalf_of,
    )  # fmt: skip


StatusCode = Literal["approved", "deprecated", "archived", "deleted", ""]
_STATUS_CODES: dict[str, StatusCode] = {
    "approved": "approved", "deprecated": "deprecated", "archived": "archived", "deleted": "deleted"
}  # fmt: skip


def _status_code(status: str) -> StatusCode:
    """The availability status URN as a short code (``approved``, ``archived``…), "" if unknown."""
    return _STATUS_CODES.get(status.rsplit(":", 1)[-1].lower(), "")


def _document_out(e: Any, rubric: str) -> m.DocumentOut:
    """One registry entry of a patient's DMP, with what a practice software needs to act on it."""
    type_label, class_label = e.type_code.display, e.class_code.display
    with contextlib.suppress(Exception):  # a type outside the table: the registry's own labels
        from cda.classify import classify_type

        c = classify_type(e.type_code.code)
        type_label, class_label = type_label or c.type_label, class_label or c.class_label
    return m.DocumentOut(
        unique_id=e.unique_id, title=e.title, type_code=e.type_code.code, type=type_label,
        rubric=rubric, creation_time=e.creation_time.isoformat(), status=e.status_label_fr,
        authors=[f"{a.given_name} {a.family_name}".strip() for a in e.authors],
        MASQUE_PS=e.visibility.masked_to_professionals, INVISIBLE_PATIENT=e.visibility.invisible_to_patient,
        INVISIBLE_REP_LEGAUX=e.visibility.invisible_to_legal_representatives,
        entry_uuid=e.entry_uuid, class_code=e.class_code.code, class_label=class_label,
        format_code=e.format_code.code, status_code=_status_code(e.status), version=e.version,
        mime_type=e.mime_type,
        service_start=e.service_start.isoformat() if e.service_start else "",
        service_stop=e.service_stop.isoformat() if e.service_stop else "",
        author_details=[
            m.DocumentAuthorOut(
                id_nat=a.id_nat, family_name=a.family_name, given_name=a.given_name,
                institution_id=a.institution_id, institution_name=a.institution_name,
                specialty_code=a.specialty.code if a.specialty else "",
                specialty=a.specialty.display if a.specialty else "",
            )
            for a in e.authors
        ],
        size=e.size,
    )  # fmt: skip


# DMP refusal codes that mean "you may not do this to this document" (not the author…) [I]: answered 403.
DMP_FORBIDDEN_CODES = frozenset({"DMPAccessDenied", "DMPAccessNotAuthorized", "DMPAccessBlocked"})

_UID_RE = re.compile(UNIQUE_ID_PATTERN)


def _check_uid(uid: str, field: str = "unique_id") -> None:
    if len(uid) > UNIQUE_ID_MAX or not _UID_RE.fullmatch(uid):
        raise field_problem(
            422, "INVALID_UNIQUE_ID", field,
            f"Identifiant de document invalide « {uid[:80]} » : un uniqueId est un OID (par exemple "
            "2.25.1234…), éventuellement suivi de ^extension (voir la liste des documents).",
        )  # fmt: skip


def _document_problem(p: Problem) -> Problem:
    """A problem about the document of a TD3.3 action: names ``unique_id`` (unknown document: 404; the DMP
    forbids it, e.g. not the author: 403); a visibility the DMP cannot combine names ``MASQUE_PS``."""
    if p.errors:
        return p
    if p.code == "NOT_FOUND":
        return Problem(404, p.code, p.detail, errors=[("unique_id", p.detail)], source=p.source)
    if p.code == "PAT-03":
        return Problem(422, p.code, p.detail, errors=[("MASQUE_PS", p.detail)], source=p.source)
    if p.source == "dmp" and p.code in DMP_FORBIDDEN_CODES:
        return Problem(403, p.code, p.detail, errors=[("unique_id", p.detail)], source="dmp")
    if p.status in (409, 422):
        return Problem(p.status, p.code, p.detail, errors=[("unique_id", p.detail)], source=p.source)
    return p


def _checked_folder(raw: str) -> PathLib:
    """The hand-back folder: an absolute path (the agent does not know the caller's current folder), not
    an existing file."""
    if "\x00" in raw or not raw.strip():
        raise field_problem(422, "INVALID_FOLDER", "folder", "Chemin de dossier invalide.")
    folder = PathLib(raw)
    if not folder.is_absolute():
        raise field_problem(
            422, "FOLDER_NOT_ABSOLUTE", "folder",
            f"Le dossier « {raw[:200]} » n'est pas un chemin absolu : l'agent ne connaît pas le dossier "
            "courant de l'appelant ; donnez le chemin complet (par exemple /home/… ou C:\\Users\\…).",
        )  # fmt: skip
    try:
        is_file = folder.exists() and not folder.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a component that is a file…
        raise field_problem(
            422, "INVALID_FOLDER", "folder", f"Chemin de dossier inutilisable ({type(exc).__name__})."
        ) from exc
    if is_file:
        raise field_problem(
            422, "FOLDER_IS_FILE", "folder", f"« {raw[:200]} » existe et n'est pas un dossier."
        )
    return folder


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise field_problem(
            422, "INVALID_BASE64", field, f"Le champ {field} n'est pas du base64 valide."
        ) from None


def _vaccination_json(imm: Any) -> dict[str, Any]:
    """One vaccination of ``cda.vaccinations`` as JSON (its fields, plus ``vaccine`` and ``date``)."""
    import dataclasses

    d: dict[str, Any] = dataclasses.asdict(imm) if dataclasses.is_dataclass(imm) else dict(vars(imm))  # type: ignore[arg-type]
    vaccine = d.get("vaccine_label") or d.get("label") or d.get("display") or ""
    if not vaccine:
        code = d.get("vaccine_code") or d.get("code")
        vaccine = code.get("display_name", "") if isinstance(code, dict) else str(code or "")
    d.setdefault("vaccine", vaccine)
    d.setdefault("date", str(d.get("date") or d.get("effective_time") or ""))
    return d


def extract_pdf(cda_bytes: bytes) -> bytes | None:
    """The PDF of a level-1 CDA (nonXMLBody, B64), else None."""
    from cda.xml import safe_parse

    root = safe_parse(cda_bytes)
    text = root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody/{urn:hl7-org:v3}text")
    if text is None or text.get("mediaType") != "application/pdf":
        return None
    return base64.b64decode("".join(text.itertext()))


def create_app(
    backend: ApiBackend,
    token: str,
    allowed_origins: tuple[str, ...] = (),
    *,
    identity_lookup: Callable[[m.IdentityIn], m.IdentityOut] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="ps-agent — API locale",
        version=API_VERSION,
        description="API locale de l'agent DMP (127.0.0.1 uniquement, jeton porteur).",
        docs_url=None,
        redoc_url=None,
        responses=PROBLEM_RESPONSES,
    )
    app.add_middleware(Guard, token=token, allowed_origins=allowed_origins)
    if allowed_origins:  # browser-based practice software: CORS for the listed origins only (outermost)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(allowed_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location"],
            max_age=600,
        )

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return _problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem_response(_validation_problem(exc), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Routing answers (unknown address, method not allowed) as problems in French too."""
        if exc.status_code == 404:
            p = Problem(404, "UNKNOWN_ROUTE", f"Adresse inconnue de l'API locale : {request.url.path} "
                        "(voir /openapi.json).")  # fmt: skip
        elif exc.status_code == 405:
            p = Problem(
                405, "METHOD_NOT_ALLOWED",
                f"Méthode {request.method} non prise en charge pour {request.url.path} (voir /openapi.json).",
                headers=dict(exc.headers or {}),
            )  # fmt: skip
        else:
            p = Problem(exc.status_code, "HTTP_ERROR", str(exc.detail), headers=dict(exc.headers or {}))
        return _problem_response(p, request.url.path)

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        return _problem_response(to_problem(exc), request.url.path)

    async def call(fn: Callable[[], Any]) -> Any:
        """A blocking Session call, in the threadpool; agent exceptions become problems."""
        try:
            return await run_in_threadpool(fn)
        except Problem:
            raise
        except Exception as exc:
            raise to_problem(exc) from exc

    def ctx_of(contexte: str, finalite: str) -> Context:
        return Context(purpose=finalite, background=(contexte == "arriere-plan") or DEFAULT_BACKGROUND)

    def default_oid() -> str:
        """The INS OID of the agent's DMP environment (test OID outside production), for callers who
        give none: one rule with the CLI (``ps_agent.dmp.environment.ins_oid_for``)."""
        return ins_oid_for(backend.environment_name)

    def with_oid(p: Any) -> Any:
        """A patient model whose empty ``ins_oid`` is the environment's."""
        return p if p.ins_oid else p.model_copy(update={"ins_oid": default_oid()})

    def handle(ins: str, oid: str, ins_status: str) -> Any:
        _check_ins(ins)
        return backend.session().patient(PatientRef(ins, oid or default_oid(), ins_status))

    # ------------------------------------------------------------------ status
    @app.get("/v1/status", response_model=m.StatusOut, tags=["agent"])
    async def status() -> m.StatusOut:
        def read() -> m.StatusOut:
            s = backend.session_or_none()
            card = m.CardStatus(present=False)
            if s is not None:
                ident = s.identity
                card = m.CardStatus(
                    present=True, holder=f"{ident.given_name} {ident.family_name}".strip(),
                    id_nat=ident.id_nat, mode=s.mode.value,
                )  # fmt: skip
            counts = {st.value: 0 for st in EntryState}
            for e in backend.services.queue_entries():
                counts[e.state.value] += 1
            return m.StatusOut(
                version=API_VERSION, environment=backend.environment_name, session_open=s is not None,
                card=card, queue=m.QueueCounts(**counts),
            )  # fmt: skip

        return await call(read)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ window
    @app.post("/v1/patients/open", response_model=m.AcceptedOut, status_code=202, tags=["fenêtre"])
    async def open_patient(body: m.OpenPatientIn) -> m.AcceptedOut:
        p = with_oid(body.patient)
        _check_ins(p.ins, "patient.ins")
        traits = p.model_dump(exclude={"ins", "ins_oid"})
        req = OpenPatientRequest(
            p.ins, p.ins_oid, {k: str(v) for k, v in traits.items()}, body.source or "api"
        )
        await run_in_threadpool(backend.events.emit, OPEN_PATIENT_REQUESTED, req)
        return m.AcceptedOut(
            message="Demande transmise à la fenêtre de l'agent ; l'identité sera vérifiée (INSi) avant "
            "tout accès au DMP."
        )

    # ------------------------------------------------------------------ identity
    if identity_lookup is not None:  # offered only when the agent has an INSi client configured
        lookup = identity_lookup

        @app.post("/v1/identity/search", response_model=m.IdentityOut, tags=["identité"])
        async def identity(body: m.IdentityIn) -> m.IdentityOut:
            return await call(lambda: lookup(body))  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ DMP
    @app.get("/v1/patients/{ins}/dmp", response_model=m.DmpStatusOut, tags=["DMP"])
    async def dmp_status(
        ins: Ins, oid: Oid = "", ins_status: InsStatus = "QUAL",
        contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> m.DmpStatusOut:  # fmt: skip
        def read() -> m.DmpStatusOut:
            st = handle(ins, oid, ins_status).dmp_status(ctx=ctx_of(contexte, finalite)).value
            return m.DmpStatusOut(
                exists=st.exists, active=st.active, opposed=st.opposed, authorisation=st.authorisation,
                is_medecin_traitant=st.is_medecin_traitant, family_name=st.family_name,
                given_name=st.given_name, birth_date=st.birth_date,
            )  # fmt: skip

        return await call(read)  # type: ignore[no-any-return]

    @app.post("/v1/patients/{ins}/consent", response_model=m.DmpStatusOut, tags=["DMP"])
    async def consent(
        ins: Ins, body: m.ConsentIn, oid: Oid = "", ins_status: InsStatus = "QUAL"
    ) -> m.DmpStatusOut:
        def write() -> m.DmpStatusOut:
            st = (
                handle(ins, oid, ins_status)
                .record_consent(how=body.how, medecin_traitant=body.medecin_traitant)
                .value
            )
            return m.DmpStatusOut(
                exists=st.exists, active=st.active, opposed=st.opposed, authorisation=st.authorisation,
                is_medecin_traitant=st.is_medecin_traitant,
            )  # fmt: skip

        return await call(write)  # type: ignore[no-any-return]

    @app.post("/v1/patients/{ins}/emergency", status_code=403, tags=["DMP"], response_model=m.AcceptedOut)
    async def emergency(ins: Ins, body: m.EmergencyIn, oid: Oid = "") -> Response:
        _check_ins(ins)
        req = EmergencyRequest(ins, oid or default_oid(), body.mode, body.reason)
        await run_in_threadpool(backend.events.emit, EMERGENCY_CONFIRMATION_REQUESTED, req)
        raise Problem(
            403, "EMERGENCY_NEEDS_WINDOW",
            "Un accès en urgence (bris de glace ou centre 15) ne peut être confirmé que par le professionnel "
            "dans la fenêtre de l'agent : la demande y est affichée.",
            errors=[("mode", "confirmation requise")],
        )  # fmt: skip

    @app.get("/v1/patients/{ins}/documents", response_model=m.DocumentsOut, tags=["DMP"])
    async def documents(
        ins: Ins, oid: Oid = "", ins_status: InsStatus = "QUAL",
        rubrique: Rubrique = None, archives: bool = False,
        contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> m.DocumentsOut:  # fmt: skip
        from ps_agent.dmp.metadata import rubric_of

        def read() -> m.DocumentsOut:
            lst = (
                handle(ins, oid, ins_status)
                .list_documents(rubric=rubrique, include_archived=archives, ctx=ctx_of(contexte, finalite))
                .value
            )
            docs = [_document_out(e, rubric_of(e)) for e in lst.entries]
            return m.DocumentsOut(documents=docs, hidden=list(lst.hidden_explanations))

        return await call(read)  # type: ignore[no-any-return]

    @app.get(
        "/v1/patients/{ins}/documents/{unique_id}",
        tags=["DMP"],
        response_class=Response,
        responses={
            200: {"content": {"application/pdf": {}, "application/xml": {}}, "description": "Document"}
        },
    )
    async def retrieve(
        ins: Ins, unique_id: UniqueId, oid: Oid = "",
        ins_status: InsStatus = "QUAL", format: Literal["auto", "pdf", "cda"] = "auto",
        contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> Response:  # fmt: skip
        _check_uid(unique_id)

        def read() -> Response:
            doc = handle(ins, oid, ins_status).retrieve(unique_id, ctx=ctx_of(contexte, finalite)).value
            pdf = extract_pdf(doc.content) if format != "cda" else None
            if format == "pdf" and pdf is None:
                raise field_problem(
                    409,
                    "NOT_PDF",
                    "format",
                    "Ce document n'est pas un PDF (CDA structuré) : demandez format=cda.",
                )
            if pdf is not None:
                return Response(pdf, media_type="application/pdf")
            return Response(doc.content, media_type="application/xml")

        return await call(read)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ document actions (TD3.3)
    def document_action(
        ins: str, unique_id: str, oid: str, ins_status: str, ctx: Context,
        action: str, run: Callable[[Any, Context], Any],
    ) -> Callable[[], m.DocumentActionOut]:  # fmt: skip
        """A TD3.3 update through the session's patient handle (policy, then the DMP, then the journal);
        the document's problems name ``unique_id``."""
        _check_uid(unique_id)

        def go() -> m.DocumentActionOut:
            h = handle(ins, oid, ins_status)
            try:
                run(h, ctx)
            except Exception as exc:
                raise _document_problem(to_problem(exc)) from exc
            public = "make_visible" if action.startswith("make_visible") else action
            return m.DocumentActionOut(
                unique_id=unique_id,
                action=public,  # type: ignore[arg-type]
                message=m.DOCUMENT_ACTIONS_FR[action],
            )

        return go

    @app.post(
        "/v1/patients/{ins}/documents/{unique_id}/visibility",
        response_model=m.DocumentActionOut, tags=["DMP"],
    )  # fmt: skip
    async def change_visibility(
        ins: Ins, unique_id: UniqueId, body: m.VisibilityChangeIn, oid: Oid = "",
        ins_status: InsStatus = "QUAL", contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> m.DocumentActionOut:  # fmt: skip
        """Masquer aux professionnels ou démasquer (``MASQUE_PS``), rendre visible au patient
        (``INVISIBLE_PATIENT: false``) ou aussi à ses représentants légaux (``INVISIBLE_REP_LEGAUX:
        false``, irréversible). Une seule modification par requête."""
        given = [k for k, v in body.model_dump().items() if v is not None]
        if not given:
            raise field_problem(
                422, "NO_CHANGE", "MASQUE_PS",
                "Indiquez le changement de visibilité : MASQUE_PS (true ou false), INVISIBLE_PATIENT: false "
                "ou INVISIBLE_REP_LEGAUX: false.",
            )  # fmt: skip
        if len(given) > 1:
            raise field_problem(
                422, "ONE_CHANGE", given[1],
                f"Une seule modification de visibilité par requête ({', '.join(given)} reçus).",
            )  # fmt: skip
        ctx = ctx_of(contexte, finalite)
        if body.MASQUE_PS is not None:
            action = "mask" if body.MASQUE_PS else "unmask"

            def run(h: Any, c: Context) -> Any:
                return h.mask(unique_id, ctx=c) if body.MASQUE_PS else h.unmask(unique_id, ctx=c)

        else:
            reps = body.INVISIBLE_REP_LEGAUX is not None
            action = "make_visible_reps" if reps else "make_visible"

            def run(h: Any, c: Context) -> Any:
                return h.make_visible(unique_id, to_legal_representatives=reps, ctx=c)

        return await call(document_action(ins, unique_id, oid, ins_status, ctx, action, run))  # type: ignore[no-any-return]

    @app.post(
        "/v1/patients/{ins}/documents/{unique_id}/archive", response_model=m.DocumentActionOut, tags=["DMP"]
    )
    async def archive(
        ins: Ins, unique_id: UniqueId, oid: Oid = "", ins_status: InsStatus = "QUAL",
        archiver: Annotated[bool, Query(description="false : désarchiver")] = True,
        contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> m.DocumentActionOut:  # fmt: skip
        """Archiver le document (``archiver=false`` : le désarchiver)."""

        def run(h: Any, c: Context) -> Any:
            return h.archive(unique_id, ctx=c) if archiver else h.unarchive(unique_id, ctx=c)

        action = "archive" if archiver else "unarchive"
        fn = document_action(ins, unique_id, oid, ins_status, ctx_of(contexte, finalite), action, run)
        return await call(fn)  # type: ignore[no-any-return]

    @app.delete("/v1/patients/{ins}/documents/{unique_id}", response_model=m.DocumentActionOut, tags=["DMP"])
    async def delete_document(
        ins: Ins, unique_id: UniqueId, oid: Oid = "", ins_status: InsStatus = "QUAL",
        contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> m.DocumentActionOut:  # fmt: skip
        """Supprimer le document du DMP (son auteur seulement : le DMP refuse tout autre, 403). L'appelant
        fait confirmer la personne avant : c'est définitif."""

        def run(h: Any, c: Context) -> Any:
            return h.delete(unique_id, ctx=c)

        fn = document_action(ins, unique_id, oid, ins_status, ctx_of(contexte, finalite), "delete", run)
        return await call(fn)  # type: ignore[no-any-return]

    @app.get("/v1/patients/{ins}/vaccinations", response_model=m.VaccinationsOut, tags=["vaccination"])
    async def vaccinations(
        ins: Ins, oid: Oid = "", ins_status: InsStatus = "QUAL",
        contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> m.VaccinationsOut:  # fmt: skip
        def read() -> m.VaccinationsOut:
            items = handle(ins, oid, ins_status).vaccination_status(ctx=ctx_of(contexte, finalite)).value
            rows = [json.loads(json.dumps(_vaccination_json(i), default=str)) for i in items]
            return m.VaccinationsOut(vaccinations=rows)

        return await call(read)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ deposits and queue
    def _patient_input(p: m.PatientTraits) -> Any:
        from cda import build

        return build.PatientInput.from_dict(p.model_dump(exclude={"ins_status"}))

    def _author_input(a: m.Author | None) -> Any:
        from cda import build

        return None if a is None else build.AuthorInput.from_dict(a.model_dump())

    def _accept(p: Any, work: Callable[[Any, Context], Any]) -> Awaitable[QueuedDeposit]:
        """``p``: anything with ``ins``, ``ins_oid``, ``ins_status`` (request model or sidecar)."""
        _check_ins(p.ins, "patient.ins")
        if p.ins_status != "QUAL":
            raise field_problem(
                422, "INS_NOT_QUALIFIED", "patient.ins_status",
                "L'identité du patient n'est pas qualifiée (INS non qualifiée) : le document ne peut pas "
                "être envoyé au DMP. Qualifiez l'identité (INSi) d'abord.",
            )  # fmt: skip

        def run() -> QueuedDeposit:
            h = backend.session().patient(PatientRef(p.ins, p.ins_oid, p.ins_status))
            return backend.submit(lambda ctx: work(h, ctx), Context(background=True))

        return call(run)

    @app.post("/v1/deposits", response_model=m.QueueItemOut, status_code=202, tags=["dépôt"])
    async def deposit(body: m.DepositIn, response: Response) -> m.QueueItemOut:
        if (body.pdf_base64 is None) == (body.cda_base64 is None):
            raise field_problem(422, "ONE_DOCUMENT", "pdf_base64", "Donnez soit pdf_base64, soit cda_base64.")
        v = body.visibility
        if v.MASQUE_PS and v.INVISIBLE_PATIENT:
            raise field_problem(
                422, "VISIBILITY", "visibility.INVISIBLE_PATIENT",
                "Un document ne peut pas être à la fois masqué aux professionnels et invisible au patient.",
            )  # fmt: skip
        vis = Visibility(v.MASQUE_PS, v.INVISIBLE_PATIENT, v.INVISIBLE_REP_LEGAUX)
        if body.cda_base64 is not None:
            data = _b64(body.cda_base64, "cda_base64")

            def work(h: Any, ctx: Context) -> Any:
                return h.deposit(data, visibility=vis, replaces=body.replaces or None, ctx=ctx)

        else:
            pdf = _b64(body.pdf_base64 or "", "pdf_base64")
            if not pdf.startswith(b"%PDF-"):
                raise field_problem(422, "NOT_A_PDF", "pdf_base64", "Le fichier transmis n'est pas un PDF.")
            for name in ("type_code", "title"):
                if not getattr(body, name).strip():
                    raise field_problem(422, "MISSING_FIELD", name, f"Champ obligatoire manquant : {name}.")
            traits = _patient_input(with_oid(body.patient))
            author = _author_input(body.author)

            def work(h: Any, ctx: Context) -> Any:
                return h.deposit_pdf(
                    pdf, type_code=body.type_code, title=body.title, patient_traits=traits, author=author,
                    visibility=vis, ctx=ctx,
                )  # fmt: skip

        entry = await _accept(with_oid(body.patient), work)
        response.headers["Location"] = f"/v1/queue/{entry.id}"
        return _queue_out(entry)

    @app.post(
        "/v1/deposits/fichier", response_model=m.QueueItemOut, status_code=202, tags=["dépôt"],
        openapi_extra={"requestBody": {"content": {"multipart/form-data": {"encoding": {
            "document": {"contentType": "application/pdf, application/xml, text/xml"}}}}}},
    )  # fmt: skip
    async def deposit_file(
        response: Response,
        document: Annotated[UploadFile, File(description="Le PDF, ou un CDA prêt (XML)")],
        metadata: Annotated[
            str, Form(max_length=100_000, description="La fiche JSON (format du dossier de dépôt)")
        ],
    ) -> m.QueueItemOut:
        """Multipart variant: the document as a file and the same JSON sidecar as the hot folder."""
        from ps_agent.hotfolder.sidecar import SidecarError, parse_sidecar

        data = await document.read()
        is_pdf = data.startswith(b"%PDF-")
        if not is_pdf and not data.lstrip().startswith(b"<"):
            raise field_problem(
                422, "NOT_A_DOCUMENT", "document", "Le fichier n'est ni un PDF ni un document CDA."
            )
        try:
            sc = await run_in_threadpool(
                parse_sidecar, metadata.encode(), is_cda=not is_pdf, cda_bytes=None if is_pdf else data
            )
        except SidecarError as exc:
            field = exc.field if exc.field != "fiche" else "metadata"
            raise field_problem(422, "SIDECAR_INVALID", field, exc.detail) from None
        except Exception as exc:
            p = to_problem(exc)
            raise Problem(p.status, p.code, p.detail, errors=p.errors or [("document", p.detail)]) from exc

        def work(h: Any, ctx: Context) -> Any:
            if not is_pdf:
                return h.deposit(data, visibility=sc.visibility, replaces=sc.replaces or None, ctx=ctx)
            return h.deposit_pdf(
                data, type_code=sc.type_code, title=sc.title, patient_traits=sc.patient, author=sc.author,
                visibility=sc.visibility, ctx=ctx,
            )  # fmt: skip

        entry = await _accept(sc, work)
        response.headers["Location"] = f"/v1/queue/{entry.id}"
        return _queue_out(entry)

    @app.post("/v1/vaccinations", response_model=m.QueueItemOut, status_code=202, tags=["vaccination"])
    async def record_vaccination(body: m.VaccinationIn, response: Response) -> m.QueueItemOut:
        from cda import build

        vac = build.VaccinationInput.from_dict(
            body.model_dump(exclude={"patient", "author"}, exclude_none=True)
        )
        patient, author = _patient_input(with_oid(body.patient)), _author_input(body.author)

        def work(h: Any, ctx: Context) -> Any:
            return h.record_vaccination(patient=patient, author=author, vaccination=vac, ctx=ctx)

        entry = await _accept(with_oid(body.patient), work)
        response.headers["Location"] = f"/v1/queue/{entry.id}"
        return _queue_out(entry)

    def _entry(entry_id: str) -> QueuedDeposit:
        e: QueuedDeposit | None = backend.services.queue.get(entry_id)
        if e is None:
            raise field_problem(404, "UNKNOWN_QUEUE_ID", "id", f"Aucun dépôt « {entry_id} » dans la file.")
        return e  # with its documents: their types are read once (cached by uniqueId)

    @app.get("/v1/queue", response_model=list[m.QueueItemOut], tags=["dépôt"])
    async def queue(tout: bool = False) -> list[m.QueueItemOut]:
        entries = await call(lambda: backend.services.queue_entries(active_only=not tout))
        return [_queue_out(e) for e in entries]

    @app.get("/v1/queue/{entry_id}", response_model=m.QueueItemOut, tags=["dépôt"])
    async def queue_item(entry_id: QueueId) -> m.QueueItemOut:
        return _queue_out(await call(lambda: _entry(entry_id)))

    @app.get(
        "/v1/queue/{entry_id}/events",
        tags=["dépôt"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Flux SSE des états"}},
    )
    async def queue_events(entry_id: QueueId) -> StreamingResponse:
        first = await call(lambda: _entry(entry_id))
        loop = asyncio.get_running_loop()
        changes: asyncio.Queue[QueuedDeposit] = asyncio.Queue()

        def on_change(e: QueuedDeposit) -> None:
            if e.id == entry_id:
                loop.call_soon_threadsafe(changes.put_nowait, e)

        disconnect = backend.services.events.connect(QUEUE_CHANGED, on_change)

        def frame(e: QueuedDeposit) -> str:
            data = _queue_out(e).model_dump_json()
            return f"id: {e.updated}\nevent: {e.state.value}\ndata: {data}\n\n"

        async def stream() -> AsyncIterator[str]:
            try:
                current = await call(lambda: _entry(entry_id))  # state after subscribing: nothing missed
                yield frame(current)
                last = current.state
                while last not in FINAL_STATES:
                    try:
                        e = await asyncio.wait_for(changes.get(), SSE_KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if e.state != last or e.state is EntryState.WAITING:
                        yield frame(e)
                    last = e.state
            finally:
                disconnect()

        del first
        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.post("/v1/queue/resume", response_model=m.ResumeOut, tags=["dépôt"])
    async def queue_resume() -> m.ResumeOut:
        """Envoyer maintenant chaque envoi de la file déposé par le professionnel de la session (ceux en
        attente aussi), chacun pour lui-même ; répond quand ils sont réglés ou de nouveau en attente."""

        def run() -> m.ResumeOut:
            s = backend.session()
            outcomes = s.resume(ctx=Context(background=True), all_entries=True)
            return _resume_out(outcomes)

        return await call(run)  # type: ignore[no-any-return]

    def _resume_out(outcomes: list[Any]) -> m.ResumeOut:
        return m.ResumeOut(
            outcomes=[
                m.ResumeOutcomeOut(
                    id=o.entry_id,
                    state=o.state.value,
                    state_label=o.state.label_fr,
                    reason=o.reason_fr,
                    document_unique_ids=list(o.document_uids),
                )
                for o in outcomes
            ],
            left=len(backend.services.queue.pending()),
        )

    @app.post("/v1/queue/{entry_id}/resume", response_model=m.ResumeOut, tags=["dépôt"])
    async def queue_resume_one(entry_id: QueueId) -> m.ResumeOut:
        """Envoyer maintenant cet envoi de la file (en attente d'envoi ou nouvel essai prévu, même avant
        l'heure prévue) ; répond quand il est réglé ou de nouveau en attente. 404 : envoi inconnu ;
        409 : envoi déjà réglé (enregistré, refusé — un refus est définitif —, rendu) ou en cours d'envoi,
        l'état est dit ; 403 : envoi déposé par un autre professionnel que celui de la session."""
        from ps_agent.session import EntryNotResumable

        def run() -> m.ResumeOut:
            s = backend.session()
            try:
                outcome = s.resume_entry(entry_id, ctx=Context(background=True))
            except EntryNotFound as exc:
                raise field_problem(404, "UNKNOWN_QUEUE_ID", "id", exc.message_fr) from exc
            except EntryNotResumable as exc:
                status = 403 if exc.code == OTHER_PROFESSIONAL_CODE else 409
                raise field_problem(status, exc.code or "QUEUE_STATE", "id", exc.message_fr) from exc
            return _resume_out([outcome])

        return await call(run)  # type: ignore[no-any-return]

    @app.post("/v1/queue/{entry_id}/hand-back", response_model=m.HandBackOut, tags=["dépôt"])
    async def queue_hand_back(entry_id: QueueId, body: m.HandBackIn) -> m.HandBackOut:
        """Écrire les documents CDA de l'envoi dans ``folder`` (chemin absolu sur le poste de l'agent,
        créé au besoin ; fichiers lisibles par leur seul propriétaire), puis retirer l'envoi de la file
        (tracé au journal). Rien n'est retiré si l'écriture échoue."""
        folder = _checked_folder(body.folder)

        def run() -> m.HandBackOut:
            from ps_agent.services import write_documents

            written: list[str] = []

            def write(e: QueuedDeposit) -> None:
                try:
                    written.extend(str(p) for p in write_documents(e, folder))
                except (OSError, ConfigurationError) as exc:
                    why = getattr(exc, "message_fr", "") or getattr(exc, "strerror", "") or str(exc)
                    raise field_problem(
                        422, "FOLDER_UNWRITABLE", "folder",
                        f"Impossible d'écrire les documents dans « {folder} » ({why}) : rien n'a été retiré "
                        "de la file d'envoi.",
                    ) from exc  # fmt: skip

            try:
                entry = backend.session().hand_back(entry_id, write)
            except EntryNotFound as exc:  # the core's codes, verbatim (NOT_FOUND, BUSY, FINAL)
                raise field_problem(404, exc.code or "UNKNOWN_QUEUE_ID", "id", exc.message_fr) from exc
            except OutboxError as exc:  # being sent, or already settled
                raise field_problem(409, exc.code or "QUEUE_STATE", "id", exc.message_fr) from exc
            return m.HandBackOut(
                id=entry.id, state=entry.state.value, state_label=entry.state.label_fr, folder=str(folder),
                files=written,
            )  # fmt: skip

        return await call(run)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ journal
    @app.get(
        "/v1/journal",
        tags=["journal"],
        response_class=Response,
        responses={200: {"content": {"text/csv": {}, "application/fhir+json": {}}, "description": "Export"}},
    )
    async def journal(format: Literal["csv", "fhir"] = "csv") -> Response:
        import io

        def export() -> Response:
            out = io.StringIO()
            j = backend.services.journal
            if format == "csv":
                j.export_csv(out)
                return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
            j.export_fhir(out)
            return Response(out.getvalue(), media_type="application/fhir+json")

        return await call(export)  # type: ignore[no-any-return]

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """Error answers documented as ``application/problem+json`` with the ProblemModel schema."""
        if app.openapi_schema is None:
            doc = base_openapi()
            for item in doc.get("paths", {}).values():
                for op in item.values():
                    for status, resp in op.get("responses", {}).items():
                        content = resp.get("content", {})
                        if status[:1] in ("4", "5") and PROBLEM_MEDIA_TYPE in content:
                            schema = (content.pop("application/json", None) or {}).get("schema")
                            content[PROBLEM_MEDIA_TYPE] = {"schema": schema or {"$ref": PROBLEM_REF}}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
