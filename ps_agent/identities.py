"""Patient identities for the window and the local API: the INSi and Vitale operations bound to a ``Session``.

``IdentityDesk(session)`` (or ``identities_for(session)``) offers the operations of ``ps-agent patient …``
on a session, as ``PatientHandle`` does for the DMP: each takes a ``Context`` (progress steps in French,
cancellation and deadline checked between steps, an INSi call in flight abandoned within
``CANCEL_LATENCY_S``), journals in the services' audit journal with the session's professional as actor,
and keeps the identities in the services' home (``IdentityRecords.open(home)``).

One builder for the INSi client, shared with the CLI (:func:`open_insi_client`):

- the authentication follows the credential: a card session (DIRECTE) signs a PS assertion with the card
  (``CpxAuth.from_credentials``, mode B); an establishment session (INDIRECTE / AIR) uses the
  establishment's INSi certificate ``INSI-MANU`` given in configuration (``InsiSettings.certificate``,
  ``CertificateAuth``, mode A);
- the INSi environment follows the DMP environment (:data:`INSI_ENV_OF_DMP`, :func:`insi_environment_for`).

Threading: a desk may be called from several threads (the records and the INSi client are thread-safe);
the Vitale reading and the chosen beneficiary are the workstation's (one ``VitaleReader`` per desk).
Callbacks (progress) run on the thread doing the work.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ps_agent.access.policy import PatientRef
from ps_agent.audit.journal import AuditEvent
from ps_agent.auth.model import AuthMode, Credentials
from ps_agent.context import DEFAULT_CONTEXT, Context, run_interruptible
from ps_agent.errors import PsAgentError
from ps_agent.identity.auth import CertificateAuth, CpxAuth, InsiAuth
from ps_agent.identity.environments import (
    INSI_ENVIRONMENTS,
    InsiAuthMode,
    InsiEnvironment,
    insi_environment,
    installation_instance,
)
from ps_agent.identity.errors import IdentityError, InsiConfigurationError
from ps_agent.identity.insi import InsiClient
from ps_agent.identity.model import (
    InsiResult,
    TraitsQuery,
    TraitsSearch,
    Verification,
    VitaleBeneficiary,
    VitaleSelection,
)
from ps_agent.identity.records import Actor, IdentityRecords, IdentityStatus, LocalIdentity
from ps_agent.identity.vitale import VitaleReader, VitaleReading
from ps_agent.identity.wire import LpsContext

if TYPE_CHECKING:
    import httpx

    from ps_agent.session import PatientHandle, Session

T = TypeVar("T")

# [I] The INSi environment that goes with each DMP environment (one mapping, here): the local sandbox DMP
# with the local INSi sandbox, the ANS training servers (formationN) with the INSi qualification service
# (the only INSi test environment the spec names, insi.md §2.1), production with production. A custom DMP
# address (a test installation) has no INSi counterpart: its INSi address must be given (``--insi-url``,
# ``InsiSettings.url``) and it is treated as a non-production sandbox.
INSI_ENV_OF_DMP: dict[str, str] = {
    "sandbox": "sandbox",
    "production": "production",
    **{f"formation{n}": "qualification" for n in (1, 2, 3, 4, 5)},
}
CUSTOM_DMP_INSI = "sandbox"  # [I] a custom DMP address: a non-production INSi at the address given

# [I] The CNDA authorisation number (IDAM) is per software; without one configured the sandbox
# environment uses the number the INSi sandbox accepts. Other environments require it explicitly.
SANDBOX_IDAM = "PSAGENTSBX01"
SOFTWARE_NAME = "PS-AGENT"
SOFTWARE_VERSION = "0.1.0"

# Progress labels (French, shown to the user)
STEP_CONNECT = "Connexion au téléservice INSi"
STEP_READ_VITALE = "Lecture de la carte Vitale"
STEP_CHECK_CARD = "Contrôle de la carte Vitale et du bénéficiaire choisi"
STEP_WS_INS1 = "Recherche de l'INS avec la carte Vitale (INSi)"
STEP_WS_INS2 = "Recherche de l'INS par les traits d'identité (INSi)"
STEP_VERIFY = "Vérification de l'INS auprès de l'INSi"
STEP_RECORD = "Enregistrement de l'identité"
STEP_DOCUMENT = "Enregistrement de la pièce d'identité vérifiée"
STEP_EDIT = "Modification des traits d'identité"
STEP_QUALIFIED = "Contrôle de la qualification de l'identité (INS qualifié)"


# ------------------------------------------------------------------------------------------ builder


@dataclass(frozen=True)
class InsiSettings:
    """How to reach INSi (configuration, never secrets on disk).

    ``environment``: an INSi environment name (``sandbox``, ``qualification``, ``production`` or a full name
    of ``INSI_ENVIRONMENTS``); None = the one that goes with the DMP environment (``INSI_ENV_OF_DMP``).
    ``url`` overrides its address, ``ca_file`` its trusted CA bundle (None = the DMP environment's).
    ``billing_id``: the AM billing number of the PS assertion (mode B). ``certificate`` (+ ``passphrase``,
    kept in memory only): the establishment's INSi PKCS#12 (CN ``INSI-MANU``), mode A."""

    environment: str | None = None
    url: str | None = None
    ca_file: str | None = None
    idam: str | None = None
    billing_id: str = ""
    certificate: Path | None = None
    passphrase: str = field(default="", repr=False)
    retries: int = 0


def insi_environment_for(
    dmp_env: str,
    mode: InsiAuthMode,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    url: str | None = None,
) -> InsiEnvironment:
    """The INSi environment for ``dmp_env`` (a DMP environment name or https address, or an INSi name)
    and the authentication ``mode``; ``url`` overrides the address."""
    if dmp_env in INSI_ENVIRONMENTS:
        name = dmp_env
    else:
        base = dmp_env if dmp_env in ("sandbox", "qualification", "production") else None
        if base is None and dmp_env.startswith("https://"):
            if not url:
                raise InsiConfigurationError(
                    "Le DMP est à une adresse personnalisée : indiquez aussi l'adresse du service INSi "
                    "(--insi-url ou PS_AGENT_INSI_URL).",
                    code="insi_url",
                )
            base = CUSTOM_DMP_INSI
        if base is None:
            base = INSI_ENV_OF_DMP.get(dmp_env)
        if base is None:
            raise InsiConfigurationError(
                f"Aucun environnement INSi ne correspond à l'environnement « {dmp_env} ». Choisissez parmi "
                f"{', '.join(sorted({*INSI_ENV_OF_DMP, *INSI_ENVIRONMENTS}))}.",
                code="insi_environment",
            )
        name = f"{base}-{mode.value}"
    env = insi_environment(name, ca_file=ca_file)
    return env.with_url(url) if url else env


def insi_auth(credentials: Credentials | None, settings: InsiSettings) -> InsiAuth:
    """Mode A when the establishment's INSi certificate is configured (required without a card); else
    mode B for a card session (DIRECTE): the card signs the PS assertion."""
    if settings.certificate is not None:
        path = Path(settings.certificate)
        if not path.is_file():
            raise InsiConfigurationError(
                f"Certificat INSi de l'établissement introuvable : {path}.", code="insi_certificate_file"
            )
        return CertificateAuth.from_pkcs12(path, settings.passphrase)
    if credentials is None or credentials.mode is not AuthMode.DIRECTE:
        raise InsiConfigurationError(
            "Sans carte CPS, l'INSi n'est accessible qu'avec le certificat INSi de l'établissement "
            "(INSI-MANU) : indiquez-le dans la configuration.",
            code="insi_no_certificate",
        )
    return CpxAuth.from_credentials(credentials, billing_id=settings.billing_id)


def open_insi_client(
    credentials: Credentials | None,
    dmp_env: str,
    settings: InsiSettings,
    home: str | os.PathLike[str],
    *,
    default_ca_file: str | None = None,
    environment: InsiEnvironment | None = None,
    auth: InsiAuth | None = None,
    transport: httpx.BaseTransport | None = None,
    frame_recorder: Callable[[str, str, bytes], None] | None = None,
) -> InsiClient:
    """THE builder of the INSi client (CLI and :class:`IdentityDesk`): authentication from the credential
    or the configured certificate, environment from the DMP's (or ``environment``), LPS context with the
    installation id of ``home``. ``auth``: an authentication already made by :func:`insi_auth`."""
    auth = auth or insi_auth(credentials, settings)
    ca = settings.ca_file or default_ca_file or None
    env = environment or insi_environment_for(
        settings.environment or dmp_env, auth.mode, ca_file=ca, url=settings.url
    )
    idam = settings.idam or (SANDBOX_IDAM if env.name.startswith("sandbox") else "")
    lps = LpsContext(
        idam, f"urn:lps:{SOFTWARE_NAME}:{SOFTWARE_VERSION}", SOFTWARE_VERSION, installation_instance(home)
    )
    return InsiClient(env, auth, lps, transport=transport, frame_recorder=frame_recorder,
                      retries=settings.retries)  # fmt: skip


def actor_of(credentials: Credentials | None, auth: Any = None) -> Actor:
    """The journal's actor: the professional of the credential, else the establishment certificate."""
    if credentials is not None:
        ident = credentials.identity
        serial = str(getattr(ident, "extra", {}).get("card_serial", "")) if hasattr(ident, "extra") else ""
        return Actor.from_identity(ident, auth_mode=credentials.mode.value, card_serial=serial)
    if isinstance(auth, CertificateAuth):
        return Actor(id_nat=auth.emetteur, name=auth.certificate_name, auth_mode="ETABLISSEMENT")
    return Actor(id_nat="")


# ------------------------------------------------------------------------------------------ the desk


@dataclass(frozen=True)
class InsiOutcome:
    """An INSi search recorded (or not): the identity (None when not found: CR 01/02), the answer, the
    message for the user."""

    identity: LocalIdentity | None
    result: InsiResult
    attempts: int = 1

    @property
    def found(self) -> bool:
        return self.identity is not None

    @property
    def message_fr(self) -> str:
        return self.result.message_fr


def _interruptible(fn: Callable[[], T], ctx: Context) -> T:
    """An INSi call that a cancellation or the deadline abandons (nothing recorded)."""
    return run_interruptible(fn, ctx, name="ps-agent-insi-call")


class _CancellableInsi:
    """The INSi client as ``IdentityRecords`` sees it, each call interruptible by ``ctx``: a cancelled
    call raises ``Cancelled`` in the caller's thread before anything is recorded."""

    def __init__(self, client: InsiClient, ctx: Context) -> None:
        self._client = client
        self._ctx = ctx

    def find_by_traits(self, query: TraitsQuery) -> TraitsSearch:
        return _interruptible(lambda: self._client.find_by_traits(query), self._ctx)

    def search_with_vitale(
        self, selection: VitaleSelection, *, confirm_card: Callable[[VitaleSelection], None] | None = None
    ) -> InsiResult:
        return _interruptible(
            lambda: self._client.search_with_vitale(selection, confirm_card=confirm_card), self._ctx
        )

    def verify_ins(self, ins: Any, traits: Any) -> Verification:
        return _interruptible(lambda: self._client.verify_ins(ins, traits), self._ctx)


class _Steps:
    def __init__(self, ctx: Context, labels: Sequence[str]) -> None:
        self.ctx, self.labels, self.done = ctx, list(labels), 0

    def next(self) -> None:
        """Check cancellation, then announce the next step."""
        self.ctx.check()
        self.ctx.report(self.labels[self.done], self.done, len(self.labels))
        self.done += 1

    def finish(self) -> None:
        self.ctx.report("Terminé", len(self.labels), len(self.labels))


class IdentityDesk:
    """The identity operations of one ``Session`` (see the module docstring).

    ``insi``: how to reach INSi (default: the environment of the DMP's, its CA bundle, the sandbox IDAM
    in the sandbox). ``insi_env``: an explicit INSi environment (tests). ``vitale_reader``: the reader of
    the Vitale card (None = the first reader holding one). ``transport``: the INSi HTTP transport (tests)."""

    def __init__(
        self,
        session: Session,
        *,
        insi: InsiSettings | None = None,
        insi_env: InsiEnvironment | None = None,
        vitale_reader: str | None = None,
        transport: httpx.BaseTransport | None = None,
        vitale: VitaleReader | None = None,
    ) -> None:
        self.session = session
        self.services = session.services
        self.settings = insi or InsiSettings()
        self._insi_env = insi_env
        self._transport = transport
        self._client: InsiClient | None = None
        self._client_lock = threading.Lock()
        self.vitale = vitale or VitaleReader(vitale_reader)
        self.actor = actor_of(session.credentials)
        self.records = IdentityRecords.open(
            self.services.config.home, journal=self.services.journal, actor=self.actor
        )
        self.closed = False

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        self.records.close()

    def __enter__(self) -> IdentityDesk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def insi_client(self) -> InsiClient:
        """The desk's INSi client, built once (TLS connection kept) from the session's credentials."""
        with self._client_lock:
            if self._client is None:
                dmp_env = self.services.config.environment
                self._client = open_insi_client(
                    self.session.credentials,
                    dmp_env.name if dmp_env.name in INSI_ENV_OF_DMP else dmp_env.base_url,
                    self.settings,
                    self.services.config.home,
                    default_ca_file=dmp_env.ca_file or None,
                    environment=self._insi_env,
                    transport=self._transport,
                    frame_recorder=self.services.frames.record,
                )
            return self._client

    def _connect(self, ctx: Context) -> _CancellableInsi:
        if self.session.closed:
            raise InsiConfigurationError(
                "La session est fermée : reconnectez-vous pour interroger l'INSi.", code="session_closed"
            )
        return _CancellableInsi(self.insi_client(), ctx)

    @contextlib.contextmanager
    def _journaled(self, action: str, transaction: str) -> Iterator[None]:
        """Journal what ``IdentityRecords`` does not: a cancelled call (``CANCELLED`` / ``DEADLINE``) and a
        failure outside the identity layer (the card session ended while signing…). INSi faults and input
        errors are journaled by the records themselves."""
        try:
            yield
        except PsAgentError as exc:
            if not isinstance(exc, IdentityError):
                a = self.actor
                self.services.record(
                    AuditEvent(
                        action=action, outcome="error", actor_id_nat=a.id_nat, actor_name=a.name,
                        actor_profession=a.profession, auth_mode=a.auth_mode, card_serial=a.card_serial,
                        structure_id=a.structure_id, transaction=transaction,
                        error_code=exc.code or type(exc).__name__, detail=exc.message_fr[:200],
                    )
                )  # fmt: skip
            raise

    # ------------------------------------------------------------------ Vitale
    def read_vitale(self, reader: str | None = None, *, ctx: Context = DEFAULT_CONTEXT) -> VitaleReading:
        """Read the Vitale card (any previous choice dropped); ``reading.beneficiaries`` to list."""
        steps = _Steps(ctx, [STEP_READ_VITALE])
        steps.next()
        if reader is not None and reader != self.vitale.reader:
            self.vitale.reader = reader
        reading = self.vitale.read()
        ctx.check()
        steps.finish()
        return reading

    def beneficiaries(self) -> tuple[VitaleBeneficiary, ...]:
        reading = self.vitale.reading
        return reading.beneficiaries if reading is not None else ()

    def choose(self, number: int) -> VitaleSelection:
        """Choose beneficiary ``number`` (from 1) of the last reading."""
        return self.vitale.choose(number)

    def search_vitale(self, *, identity_id: int | None = None, ctx: Context = DEFAULT_CONTEXT) -> InsiOutcome:
        """WS_INS1 for the chosen beneficiary (refused when older than 20 minutes or the card changed), the
        answer recorded (CR 00 → identity RECUP, or the transition of ``identity_id``)."""
        steps = _Steps(ctx, [STEP_CHECK_CARD, STEP_CONNECT, STEP_WS_INS1, STEP_RECORD])
        steps.next()
        selection = self.vitale.current()
        steps.next()
        insi = self._connect(ctx)
        steps.next()
        with self._journaled("insi.vitale", "WS_INS1"):
            result, ident = self.records.search_vitale(
                insi,  # type: ignore[arg-type]
                selection,
                confirm_card=self.vitale.confirm_card,
                identity_id=identity_id,
                actor=self.actor,
            )
        steps.next()
        steps.finish()
        return InsiOutcome(ident, result)

    # ------------------------------------------------------------------ traits
    def search_traits(
        self, query: TraitsQuery, *, identity_id: int | None = None, ctx: Context = DEFAULT_CONTEXT
    ) -> InsiOutcome:
        """WS_INS2 (the strategy of insi.md §3.1), the answer recorded (CR 00 → RECUP)."""
        steps = _Steps(ctx, [STEP_CONNECT, STEP_WS_INS2, STEP_RECORD])
        steps.next()
        insi = self._connect(ctx)
        steps.next()
        with self._journaled("insi.search", "WS_INS2"):
            outcome, ident = self.records.search_traits(
                insi,  # type: ignore[arg-type]
                query,
                identity_id=identity_id,
                actor=self.actor,
            )
        steps.next()
        steps.finish()
        return InsiOutcome(ident, outcome.result, len(outcome.attempts))

    def verify_external(self, identity_id: int, *, ctx: Context = DEFAULT_CONTEXT) -> Verification:
        """Re-check by INSi an INS received from the practice software (INTERIM WS_INS3: traits search and
        comparison, insi.md §3.3)."""
        steps = _Steps(ctx, [STEP_CONNECT, STEP_VERIFY])
        steps.next()
        insi = self._connect(ctx)
        steps.next()
        with self._journaled("insi.verify", "WS_INS3"):
            verification, _ident = self.records.verify_external(
                identity_id,
                insi,  # type: ignore[arg-type]
                actor=self.actor,
            )
        steps.finish()
        return verification

    # ------------------------------------------------------------------ local records
    def validate(self, identity_id: int, document: str, *, ctx: Context = DEFAULT_CONTEXT) -> LocalIdentity:
        """A high-trust document was checked by the session's professional: PROV → VALI, RECUP → QUAL."""
        steps = _Steps(ctx, [STEP_DOCUMENT])
        steps.next()
        ident = self.records.validate(identity_id, document, actor=self.actor)
        steps.finish()
        return ident

    def edit_traits(
        self, identity_id: int, *, ctx: Context = DEFAULT_CONTEXT, **changes: str
    ) -> LocalIdentity:
        """Manual edit; a changed strict trait drops the status (RECUP → PROV, QUAL → VALI)."""
        steps = _Steps(ctx, [STEP_EDIT])
        steps.next()
        ident = self.records.edit_traits(identity_id, actor=self.actor, **changes)
        steps.finish()
        return ident

    def create(
        self, birth_name: str, first_names: str, sex: str, birth_date: str, birth_place: str = ""
    ) -> LocalIdentity:
        """A provisional identity typed at the desk (PROV), to be searched by INSi and validated."""
        return self.records.create(birth_name, first_names, sex, birth_date, birth_place, actor=self.actor)

    def get(self, identity_id: int) -> LocalIdentity:
        return self.records.get(identity_id)

    def list(self) -> list[LocalIdentity]:
        return self.records.list()

    # ------------------------------------------------------------------ DMP
    def patient_ref(self, identity_id: int, *, ctx: Context = DEFAULT_CONTEXT) -> PatientRef:
        """The ``PatientRef`` of a qualified identity; an INS received from the practice software is first
        re-checked by INSi (rules: before its first use). ``IdentityNotQualified`` (ID-05) otherwise."""
        ident = self.records.get(identity_id)
        if ident.ins is not None and not ident.external_verified and ident.status is IdentityStatus.QUAL:
            self.verify_external(identity_id, ctx=ctx)
        ctx.check()
        ctx.report(STEP_QUALIFIED, 0, 1)
        return self.records.qualified_ref(identity_id)

    def open_patient(self, identity_id: int, *, ctx: Context = DEFAULT_CONTEXT) -> PatientHandle:
        """The session's ``PatientHandle`` for a QUAL identity; a non-qualified identity is refused with
        ``IdentityNotQualified`` before anything reaches the DMP."""
        return self.session.patient(self.patient_ref(identity_id, ctx=ctx))


def identities_for(session: Session, **kw: Any) -> IdentityDesk:
    """``IdentityDesk(session, **kw)``."""
    return IdentityDesk(session, **kw)


__all__ = [
    "INSI_ENV_OF_DMP",
    "SANDBOX_IDAM",
    "IdentityDesk",
    "InsiOutcome",
    "InsiSettings",
    "actor_of",
    "identities_for",
    "insi_auth",
    "insi_environment_for",
    "open_insi_client",
]
