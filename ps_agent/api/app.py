"""The local HTTP API (FastAPI): routes, the token/Origin/size guard and the problem+json answers.

``create_app(backend, token, allowed_origins)`` returns the ASGI application; ``ps_agent.api.server``
runs it with uvicorn on the loopback interface only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace as dc_replace
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
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
from ps_agent.api.settings import DEFAULT_BACKGROUND, MAX_BODY_BYTES, OID_NIR
from ps_agent.context import Context
from ps_agent.dmp.model import Visibility
from ps_agent.events import QUEUE_CHANGED
from ps_agent.outbox import FINAL_STATES, EntryState, QueuedDeposit

API_VERSION = "1.0.0"
PUBLIC_PATHS = frozenset({"/openapi.json"})
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


def _queue_out(e: QueuedDeposit) -> m.QueueItemOut:
    return m.QueueItemOut(
        id=e.id, state=e.state.value, state_label=e.state.label_fr, reason=e.reason_fr,
        reason_code=e.reason_code, document_unique_ids=list(e.document_uids), titles=list(e.titles),
        attempts=e.attempts, next_try=e.next_try, created=e.created, updated=e.updated,
        events_url=f"/v1/queue/{e.id}/events",
    )  # fmt: skip


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
            allow_methods=["GET", "POST"],
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

    def handle(ins: str, oid: str, ins_status: str) -> Any:
        _check_ins(ins)
        return backend.session().patient(PatientRef(ins, oid, ins_status))

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
        p = body.patient
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
        ins: Ins, oid: Oid = OID_NIR, ins_status: InsStatus = "QUAL",
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
        ins: Ins, body: m.ConsentIn, oid: Oid = OID_NIR, ins_status: InsStatus = "QUAL"
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
    async def emergency(ins: Ins, body: m.EmergencyIn, oid: Oid = OID_NIR) -> Response:
        _check_ins(ins)
        req = EmergencyRequest(ins, oid, body.mode, body.reason)
        await run_in_threadpool(backend.events.emit, EMERGENCY_CONFIRMATION_REQUESTED, req)
        raise Problem(
            403, "EMERGENCY_NEEDS_WINDOW",
            "Un accès en urgence (bris de glace ou centre 15) ne peut être confirmé que par le professionnel "
            "dans la fenêtre de l'agent : la demande y est affichée.",
            errors=[("mode", "confirmation requise")],
        )  # fmt: skip

    @app.get("/v1/patients/{ins}/documents", response_model=m.DocumentsOut, tags=["DMP"])
    async def documents(
        ins: Ins, oid: Oid = OID_NIR, ins_status: InsStatus = "QUAL",
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
            docs = [
                m.DocumentOut(
                    unique_id=e.unique_id,
                    title=e.title,
                    type_code=e.type_code.code,
                    type=e.type_code.display,
                    rubric=rubric_of(e),
                    creation_time=e.creation_time.isoformat(),
                    status=e.status_label_fr,
                    authors=[f"{a.given_name} {a.family_name}".strip() for a in e.authors],
                    MASQUE_PS=e.visibility.masked_to_professionals,
                    INVISIBLE_PATIENT=e.visibility.invisible_to_patient,
                    INVISIBLE_REP_LEGAUX=e.visibility.invisible_to_legal_representatives,
                )
                for e in lst.entries
            ]
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
        ins: Ins, unique_id: UniqueId, oid: Oid = OID_NIR,
        ins_status: InsStatus = "QUAL", format: Literal["auto", "pdf", "cda"] = "auto",
        contexte: Contexte = "interactif", finalite: Finalite = "",
    ) -> Response:  # fmt: skip
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

    @app.get("/v1/patients/{ins}/vaccinations", response_model=m.VaccinationsOut, tags=["vaccination"])
    async def vaccinations(
        ins: Ins, oid: Oid = OID_NIR, ins_status: InsStatus = "QUAL",
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
            traits = _patient_input(body.patient)
            author = _author_input(body.author)

            def work(h: Any, ctx: Context) -> Any:
                return h.deposit_pdf(
                    pdf, type_code=body.type_code, title=body.title, patient_traits=traits, author=author,
                    visibility=vis, ctx=ctx,
                )  # fmt: skip

        entry = await _accept(body.patient, work)
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
        patient, author = _patient_input(body.patient), _author_input(body.author)

        def work(h: Any, ctx: Context) -> Any:
            return h.record_vaccination(patient=patient, author=author, vaccination=vac, ctx=ctx)

        entry = await _accept(body.patient, work)
        response.headers["Location"] = f"/v1/queue/{entry.id}"
        return _queue_out(entry)

    def _entry(entry_id: str) -> QueuedDeposit:
        e: QueuedDeposit | None = backend.services.queue.get(entry_id)
        if e is None:
            raise field_problem(404, "UNKNOWN_QUEUE_ID", "id", f"Aucun dépôt « {entry_id} » dans la file.")
        return dc_replace(e, documents=())

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
