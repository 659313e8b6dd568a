"""What the HTTP routes stand on: the agent's ``Services``, the current ``Session``, the API's own events
and the deposit jobs. No HTTP here (the hot folder and ``ps-agent serve`` use it too).

Threading: every ``Session`` call runs in a worker thread (the routes call it through
``anyio.to_thread``); a deposit runs on the backend's own pool so the request can answer 202 as soon as
the document is durably in the queue while the DMP exchange goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cda.errors import CdaError
from ps_agent.access import errors as access_errors
from ps_agent.api.problems import Problem
from ps_agent.api.settings import DEPOSIT_ACCEPT_TIMEOUT_S, QUEUE_RESUME_INTERVAL_S
from ps_agent.context import Cancelled, Context
from ps_agent.dmp import errors as dmp_errors
from ps_agent.errors import AccessDenied, AuthError, PsAgentError
from ps_agent.events import QUEUE_CHANGED, Events
from ps_agent.outbox import QueuedDeposit

log = logging.getLogger(__name__)

# Events of the API for the window (the core's hub only knows its own names, so the API has its own hub;
# a window connects to both). Callbacks run on a worker thread.
OPEN_PATIENT_REQUESTED = "open_patient_requested"  # (request: OpenPatientRequest)
EMERGENCY_CONFIRMATION_REQUESTED = "emergency_confirmation_requested"  # (request: EmergencyRequest)
API_EVENTS = (OPEN_PATIENT_REQUESTED, EMERGENCY_CONFIRMATION_REQUESTED)


class ApiEvents(Events):
    """The API's callback hub (same contract as ``ps_agent.events.Events``)."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners = {name: [] for name in API_EVENTS}


@dataclass(frozen=True)
class OpenPatientRequest:
    ins: str
    oid: str
    traits: dict[str, str]
    source: str  # who asked ("api", or the caller's declared name)


@dataclass(frozen=True)
class EmergencyRequest:
    ins: str
    oid: str
    mode: str  # bris_de_glace | centre_15
    reason: str


@dataclass
class _Job:
    accepted: threading.Event = field(default_factory=threading.Event)
    entry: QueuedDeposit | None = None
    error: BaseException | None = None


_current_job = threading.local()


class ApiBackend:
    """The agent as the API sees it. ``session`` may change (card removed and reinserted in the window);
    ``session_provider`` is asked on every call."""

    def __init__(
        self,
        services: Any,
        session_provider: Callable[[], Any],
        *,
        environment_name: str = "",
        deposit_workers: int = 4,
    ) -> None:
        self.services = services
        self._session_provider = session_provider
        self.environment_name = environment_name or getattr(
            getattr(services.config, "environment", None), "name", ""
        )
        self.events = ApiEvents()
        self._pool = ThreadPoolExecutor(max_workers=deposit_workers, thread_name_prefix="api-deposit")
        self._disconnect = services.events.connect(QUEUE_CHANGED, self._on_queue_changed)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ session
    def session(self) -> Any:
        s = self._session_provider()
        if s is None or getattr(s, "closed", False):
            raise Problem(
                503, "NO_SESSION",
                "Aucune session n'est ouverte (carte CPS absente ou session d'établissement fermée) : "
                "insérez la carte et ouvrez la session dans l'agent.",
            )  # fmt: skip
        return s

    def session_or_none(self) -> Any:
        s = self._session_provider()
        return None if s is None or getattr(s, "closed", False) else s

    # ------------------------------------------------------------------ deposits
    def _on_queue_changed(self, entry: QueuedDeposit) -> None:
        job: _Job | None = getattr(_current_job, "job", None)
        if job is not None and job.entry is None:
            job.entry = entry
            job.accepted.set()

    def submit(self, work: Callable[[Context], Any], ctx: Context) -> QueuedDeposit:
        """Run a deposit in the background; return its queue entry as soon as it is durably queued.
        Errors before that (invalid document, policy refusal) are raised here."""
        job = _Job()

        def run() -> Any:
            _current_job.job = job
            try:
                return work(ctx)
            except dmp_errors.TransportError as exc:  # DepositDeferred: queued, waits for a resend
                if not job.accepted.is_set():
                    job.error = exc
                return None
            except BaseException as exc:
                if not job.accepted.is_set():
                    job.error = exc
                else:
                    log.info("deposit refused after it was queued: %s", exc)
                return None
            finally:
                _current_job.job = None
                job.accepted.set()

        fut: Future[Any] = self._pool.submit(run)
        if not job.accepted.wait(DEPOSIT_ACCEPT_TIMEOUT_S):
            raise Problem(503, "BUSY", "L'agent n'a pas pu enregistrer le dépôt à temps ; réessayez.")
        if job.entry is None:
            fut.result()
            raise to_problem(job.error or PsAgentError("Dépôt non enregistré.", code="NOT_QUEUED"))
        return job.entry

    # ------------------------------------------------------------------ queue worker
    def start_queue_worker(self, interval_s: float = QUEUE_RESUME_INTERVAL_S) -> None:
        """Resume due entries now and then every ``interval_s`` (waiting deposits whose time came)."""

        def loop() -> None:
            while not self._stop.is_set():
                s = self.session_or_none()
                if s is not None:
                    try:
                        s.resume(ctx=Context(background=True))
                    except Exception:
                        log.exception("queue resume failed")
                self._stop.wait(interval_s)

        self._worker = threading.Thread(target=loop, name="api-queue", daemon=True)
        self._worker.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._disconnect()
        self._pool.shutdown(wait=True, cancel_futures=False)
        if self._worker is not None:
            self._worker.join(timeout=30)


# Codes of DMP refusals that mean "this patient has no DMP / is unknown" [I] (sandbox and S1 spellings).
UNKNOWN_PATIENT_CODES = frozenset({"DMPPatientNotFound", "PatientNotFound", "DMPNotFound", "UNKNOWN_PATIENT"})


def to_problem(exc: BaseException) -> Problem:
    """The ONE mapping of the agent's exceptions to HTTP problems (French detail, field named)."""
    if isinstance(exc, Problem):
        return exc
    msg = getattr(exc, "message_fr", "") or str(exc) or type(exc).__name__
    code = str(getattr(exc, "code", "") or type(exc).__name__)
    if isinstance(exc, CdaError):
        fld = exc.field or "document"
        return Problem(422, code or "INVALID_DOCUMENT", msg, errors=[(fld, msg)])
    if isinstance(exc, access_errors.IdentityNotQualified):
        return Problem(422, code, msg, errors=[("ins_status", msg)], source="politique")
    if isinstance(exc, access_errors.NoActiveDmp):
        return Problem(404, code, msg, errors=[("ins", msg)], source="politique")
    if isinstance(exc, AccessDenied):
        return Problem(403, code, msg, source="politique")
    if isinstance(exc, dmp_errors.InvalidRequest):
        return Problem(422, code, msg)
    if isinstance(exc, dmp_errors.DmpRefusal):
        if code in UNKNOWN_PATIENT_CODES:
            return Problem(404, code, msg, errors=[("ins", msg)], source="dmp")
        return Problem(422, code, msg, source="dmp")
    if isinstance(exc, Cancelled):
        return Problem(503, code, msg)
    if isinstance(exc, (dmp_errors.TransportError, dmp_errors.ProtocolError)):
        return Problem(503, code, msg)
    if isinstance(exc, dmp_errors.DocumentIntegrityError):
        return Problem(502, code, msg)
    if isinstance(exc, AuthError):
        return Problem(503, code, msg)
    if isinstance(exc, PsAgentError):
        return Problem(422, code, msg)
    log.error("internal error in the API", exc_info=exc)
    return Problem(500, "INTERNAL", f"Erreur interne de l'agent ({type(exc).__name__}).")
