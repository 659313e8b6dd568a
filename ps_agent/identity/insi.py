"""INSi client over httpx: WS_INS2 (traits), WS_INS1 (carte Vitale) and the interim verification.

``InsiClient(environment, auth, lps)`` with ``auth`` a :class:`~ps_agent.identity.auth.CertificateAuth`
(mode A) or :class:`~ps_agent.identity.auth.CpxAuth` (mode B); each call builds a fresh envelope (fresh
``MessageID``, ``ContexteLPS/Id``, ``ContexteBAM/Id``; a PS assertion signed per call in mode B), posts it
and returns an :class:`~ps_agent.identity.model.InsiResult` (CR 00/01/02) or raises an error of
:mod:`ps_agent.identity.errors`.

The client knows nothing about identity records or audit: ``last`` keeps the identifiers of the last
exchange (MessageID, ContexteLPS/Id, HTTP status, fault codes) for the caller's journal, and the optional
``frame_recorder`` receives the raw exchanges (homologation evidence; they hold patient traits).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from lxml import etree

from ps_agent.dmp.errors import DmpTimeout, ResponseTooLarge, TransportError
from ps_agent.dmp.transport import post_bounded
from ps_agent.identity import traits as tr
from ps_agent.identity import wire
from ps_agent.identity.auth import InsiAuth
from ps_agent.identity.environments import InsiEnvironment
from ps_agent.identity.errors import (
    InsiConfigurationError,
    InsiFault,
    InsiInputError,
    InsiProtocolError,
    InsiTimeout,
    InsiTransportError,
    InsiUnavailable,
    VitaleSelectionExpired,
)
from ps_agent.identity.model import (
    CodeCR,
    InsiResult,
    InsNumber,
    InsTraits,
    Operation,
    Sex,
    TraitsQuery,
    TraitsSearch,
    Verification,
    VerificationStatus,
    VitaleSelection,
)
from ps_agent.identity.wire import LpsContext

log = logging.getLogger(__name__)

# [I] One INSi exchange, start to end (a search answers in about a second; the DMP client allows 300 s
# for large documents, which INSi never carries), and the largest answer read (a RESULTAT with its
# history is a few kilobytes).
INSI_DEADLINE_S = 60.0
INSI_MAX_RESPONSE_BYTES = 1024 * 1024

# CNDA test INSi 1.02: Vitale data (and the assertion made at card reading) are not reused after 20 min.
VITALE_MAX_AGE = timedelta(minutes=20)
_DIGITS13 = "0123456789AB"

FrameRecorder = Callable[[str, str, bytes], None]  # (direction "out"/"in", SOAP action, bytes)
Clock = Callable[[], datetime]


@dataclass
class InsiExchange:
    """Identifiers of the last exchange, for the audit journal (never the traits or the INS)."""

    operation: str = ""
    message_id: str = ""
    lps_id: str = ""
    http_status: int = 0
    outcome: str = ""  # CR code, or the error code
    extra: dict[str, str] = field(default_factory=dict)


def _check_matricule(value: str, field_name: str, label: str) -> None:
    if (
        len(value) != 13
        or not value[:5].isdigit()
        or not value[7:].isdigit()
        or not (value[5:7].isdigit() or value[5:7] in ("2A", "2B"))
    ):
        raise InsiInputError(
            f"Le {label} « {value} » est invalide : 13 caractères attendus (sans la clé).",
            code="vitale_nir",
            field=field_name,
        )


class InsiClient:
    """Talks to one INSi environment with one authentication (``InsiAuth``)."""

    def __init__(
        self,
        environment: InsiEnvironment,
        auth: InsiAuth,
        lps: LpsContext,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        frame_recorder: FrameRecorder | None = None,
        retries: int = 0,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``retries``: automatic new attempts of a WS_INS2 call after a retryable failure (Receiver fault
        such as siram_40/insi_102, network error), ``backoff_s`` doubling each time (insi.md §4.2 "retry
        later, bounded, with back-off"). WS_INS1 is never retried automatically: a Vitale assertion is not
        reused (CNDA test 1.02), the user reads the card again."""
        if auth.mode != environment.mode:
            raise InsiConfigurationError(
                f"L'environnement INSi « {environment.name} » attend le mode d'authentification "
                f"« {environment.mode.value} », pas « {auth.mode.value} ».",
                code="insi_mode_mismatch",
            )
        if not lps.idam.strip():
            raise InsiConfigurationError(
                "Le numéro d'autorisation CNDA du logiciel (IDAM) n'est pas configuré : l'INSi refuserait "
                "l'appel.",
                code="insi_idam",
            )
        self._env = environment
        self._auth = auth
        self._lps = lps
        self._clock = clock or (lambda: datetime.now(UTC))
        self._frames = frame_recorder
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport or auth.transport(environment), timeout=environment.timeout_s
        )
        self.last = InsiExchange()

    # ------------------------------------------------------------------------------------ plumbing
    @property
    def environment(self) -> InsiEnvironment:
        return self._env

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InsiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, direction: str, action: str, data: bytes) -> None:
        if self._frames is not None:
            try:
                self._frames(direction, action, data)
            except Exception:  # the frame log must never break a call
                log.exception("INSi frame log failed")

    def _call(
        self,
        operation: Operation,
        body: etree._Element,
        cov: etree._Element,
        extra_assertions: list[etree._Element],
    ) -> InsiResult:
        retries = self._retries if operation is Operation.WS_INS2 else 0
        for attempt in range(retries + 1):
            try:
                return self._once(operation, copy.deepcopy(body), copy.deepcopy(cov), extra_assertions)
            except (InsiUnavailable, InsiTransportError) as exc:
                if attempt == retries:
                    raise
                delay = self._backoff_s * 2**attempt
                log.info("INSi call failed (%s), new attempt in %.1f s", exc.code, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(
        self,
        operation: Operation,
        body: etree._Element,
        cov: etree._Element,
        extra_assertions: list[etree._Element],
    ) -> InsiResult:
        now = self._clock()
        prepared = wire.build_request(
            operation,
            body,
            lps=self._lps,
            emetteur=self._auth.emetteur,
            cov=cov,
            assertions=[*self._auth.assertions(now), *extra_assertions],
            now=now,
        )
        self.last = InsiExchange(operation.name, prepared.message_id, prepared.lps_id)
        self._record("out", prepared.action, prepared.payload)
        try:
            # the DMP client's bounded exchange: one overall deadline (not per read) and a size cap
            response = post_bounded(
                self._http,
                self._env.url,
                content=prepared.payload,
                content_type=f'application/soap+xml; charset=utf-8; action="{prepared.action}"',
                deadline_s=INSI_DEADLINE_S,
                max_response_bytes=INSI_MAX_RESPONSE_BYTES,
            )
        except DmpTimeout as exc:  # one read, the connection or the overall deadline
            self.last.outcome = "insi_timeout"
            raise InsiTimeout(
                "Le service INSi n'a pas répondu à temps. Réessayez dans un instant.",
                code="insi_timeout",
                detail=exc.detail or str(exc),
            ) from exc
        except ResponseTooLarge as exc:
            self.last.outcome = "insi_protocol"
            raise InsiProtocolError(
                "La réponse du service INSi est anormalement volumineuse : elle est refusée.",
                code="insi_protocol",
                detail=exc.detail or str(exc),
            ) from exc
        except TransportError as exc:
            self.last.outcome = "insi_transport"
            raise InsiTransportError(
                "Le service INSi est injoignable (réseau ou connexion sécurisée refusée). Vérifiez la "
                "connexion et le certificat, puis réessayez.",
                detail=exc.detail or str(exc),
            ) from exc
        self.last.http_status = response.status_code
        self._record("in", prepared.action, response.content)
        try:
            result = wire.parse_answer(
                response.content,
                operation=operation,
                message_id=prepared.message_id,
                http_status=response.status_code,
            )
        except InsiFault as fault:
            self.last.outcome = fault.code or "insi_fault"
            log.info(
                "INSi fault %s/%s (HTTP %s, MessageID %s, ContexteLPS %s)",
                fault.subcode,
                fault.detail_code,
                response.status_code,
                prepared.message_id,
                prepared.lps_id,
            )
            raise
        except InsiProtocolError as exc:
            self.last.outcome = "insi_protocol"
            if response.status_code >= 400:
                raise InsiTransportError(
                    f"Le service INSi a répondu par une erreur HTTP {response.status_code}. "
                    "Réessayez plus tard.",
                    code=f"HTTP_{response.status_code}",
                    detail=exc.detail,
                ) from exc
            raise
        if response.status_code != 200:
            self.last.outcome = "insi_protocol"
            raise InsiProtocolError(
                f"Le service INSi a répondu HTTP {response.status_code} avec un résultat : réponse ignorée.",
                code=f"HTTP_{response.status_code}",
            )
        if self._env.production and result.identity is not None and result.identity.ins.is_test:
            self.last.outcome = "insi_protocol"
            raise InsiProtocolError(
                "Le service INSi de production a renvoyé un INS de test : réponse refusée.",
                code="insi_test_oid",
                detail=result.identity.ins.oid,
            )
        self.last.outcome = result.code.value
        return result

    # ---------------------------------------------------------------------------------- WS_INS2
    def search_by_traits(self, query: TraitsQuery, *, prenom: str | None = None) -> InsiResult:
        """One WS_INS2 call with one ``Prenom`` (default: the whole list, space separated)."""
        q = tr.for_request(query)
        sent = tr.name_for_request(prenom, "first_name") if prenom is not None else " ".join(q.first_names)
        return self._call(Operation.WS_INS2, wire.traits_body(q, sent), wire.couverture(None), [])

    def find_by_traits(self, query: TraitsQuery) -> TraitsSearch:
        """The search strategy of insi.md §3.1: each first name alone, in order, stopping at CR 00; then,
        for a list of several names, the whole list in one ``Prenom``. Faults stop the loop (raised).

        The final answer is the CR 00 if any, else CR 02 if any call was ambiguous (add traits, §3.1 step
        3), else the last CR 01."""
        q = tr.for_request(query)
        candidates = list(q.first_names)
        if len(candidates) > 1:
            candidates.append(" ".join(candidates))
        attempts: list[tuple[str, InsiResult]] = []
        for prenom in candidates:
            result = self._call(Operation.WS_INS2, wire.traits_body(q, prenom), wire.couverture(None), [])
            attempts.append((prenom, result))
            if result.found:
                return TraitsSearch(result, tuple(attempts))
        ambiguous = [r for _, r in attempts if r.code is CodeCR.AMBIGUOUS]
        final = ambiguous[-1] if ambiguous else attempts[-1][1]
        return TraitsSearch(final, tuple(attempts))

    # ---------------------------------------------------------------------------------- WS_INS1
    def check_selection(self, selection: VitaleSelection) -> None:
        """Refuse stale or malformed Vitale data and test cards in production (before anything is sent)."""
        card, ben = selection.card, selection.beneficiary
        age = self._clock() - selection.read_at
        if age > VITALE_MAX_AGE:
            raise VitaleSelectionExpired(
                "La lecture de la carte Vitale date de plus de 20 minutes : relisez la carte et choisissez "
                "à nouveau le bénéficiaire.",
                code="vitale_expired",
                field="read_at",
            )
        if self._env.production and card.nature.upper() in ("T", "D"):
            raise InsiConfigurationError(
                "Carte Vitale de test ou de démonstration : refusée avec le service INSi de production.",
                code="vitale_test_card",
            )
        serial = card.serial.strip()
        if not serial.isdigit() or len(serial.lstrip("0")) > 12 or not serial.lstrip("0"):
            raise InsiInputError(
                f"Numéro de série de la carte Vitale invalide : « {card.serial} ».",
                code="vitale_serial",
                field="serial",
            )
        _check_matricule(card.assure_nir, "assure_nir", "NIR de l'assuré")
        if not (len(card.assure_key) == 2 and card.assure_key.isdigit()):
            raise InsiInputError(
                "La clé du NIR de l'assuré doit compter 2 chiffres.", code="vitale_nir", field="assure_key"
            )
        if ben.nir:
            _check_matricule(ben.nir, "nir", "NIR du bénéficiaire")
        tr.check_date(ben.birth_date, "birth_date")
        if ben.rank < 1:
            raise InsiInputError(
                "Le rang de naissance du bénéficiaire doit être supérieur ou égal à 1.",
                code="vitale_rank",
                field="rank",
            )
        name = ben.birth_name or card.assure_name
        if name:
            tr.name_for_request(name, "birth_name")

    def search_with_vitale(
        self, selection: VitaleSelection, *, confirm_card: Callable[[VitaleSelection], None] | None = None
    ) -> InsiResult:
        """WS_INS1 for the chosen beneficiary. The Vitale assertion carries the instant of the card read
        (``read_at``); data older than 20 minutes are refused (read the card again).

        ``confirm_card`` is called right before the request is built: the card reader checks there that
        the card in the reader is still the one read and the beneficiary still on it (CNDA test 1.03), and
        raises (a ``PsAgentError``) otherwise; nothing is sent then."""
        self.check_selection(selection)
        if confirm_card is not None:
            confirm_card(selection)
        if selection.beneficiary.birth_name or selection.card.assure_name:
            name = tr.name_for_request(
                selection.beneficiary.birth_name or selection.card.assure_name, "birth_name"
            )
            if selection.beneficiary.birth_name:
                selection = _with_names(selection, birth_name=name)
            else:
                selection = _with_names(selection, assure_name=name)
        vitale = wire.vitale_assertion(selection, self._auth.vitale_issuer)
        return self._call(
            Operation.WS_INS1, wire.vitale_body(selection), wire.couverture(selection), [vitale]
        )

    # ------------------------------------------------------------------------- WS_INS3 (interim)
    def verify_ins(self, ins: InsNumber, traits: InsTraits) -> Verification:
        """INTERIM verification (insi.md §3.3, fallback 2) — NOT the CNDA-tested WS_INS3 operation, whose
        contract is not public: a WS_INS2 search with the stored traits (strategy of §3.1), then the
        returned active INS and five traits are compared with the stored ones. Replace by WS_INS3 when
        the SEL-MP-043 contract package is obtained."""
        first_names = tr.split_first_names(traits.first_names) or (
            (traits.first_name,) if traits.first_name else ()
        )
        query = TraitsQuery(
            traits.birth_name, first_names, Sex(traits.sex), traits.birth_date, traits.birth_place or None
        )
        outcome = self.find_by_traits(query)
        result = outcome.result
        if result.code is CodeCR.NOT_FOUND:
            return Verification(VerificationStatus.NOT_FOUND, result)
        if result.code is CodeCR.AMBIGUOUS:
            return Verification(VerificationStatus.AMBIGUOUS, result)
        assert result.identity is not None
        got = result.identity
        same_ins = (got.ins.matricule, got.ins.key, got.ins.oid) == (ins.matricule, ins.key, ins.oid)
        if not same_ins:
            in_history = any((h.matricule, h.oid) == (ins.matricule, ins.oid) for h in got.history)
            status = VerificationStatus.MATRICULE_CHANGED if in_history else VerificationStatus.INS_DIFFERS
            return Verification(status, result)
        diffs = tuple(
            name
            for name, a, b in (
                ("birth_name", got.traits.birth_name, traits.birth_name),
                ("first_names", got.traits.first_names, traits.first_names),
                ("sex", got.traits.sex, traits.sex),
                ("birth_date", got.traits.birth_date, traits.birth_date),
                ("birth_place", got.traits.birth_place, traits.birth_place),
            )
            if a != b
        )
        if diffs:
            return Verification(VerificationStatus.TRAITS_DIFFER, result, diffs)
        return Verification(VerificationStatus.VALID, result)


def _with_names(
    selection: VitaleSelection, *, birth_name: str = "", assure_name: str = ""
) -> VitaleSelection:
    from dataclasses import replace

    if birth_name:
        return replace(selection, beneficiary=replace(selection.beneficiary, birth_name=birth_name))
    return replace(selection, card=replace(selection.card, assure_name=assure_name))
