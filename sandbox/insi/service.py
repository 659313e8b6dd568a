"""The INSi sandbox service: every check of insi.md §7.2–§7.4, matching, seeded fault injection.

``InsiService.handle(body, content_type, tls_cert, mode)`` takes the raw HTTP request of one listener
(``mtls`` = mode A, establishment certificate; ``cpx`` = mode B, server-only TLS) and returns an
:class:`~sandbox.insi.answers.Answer`. Decisions on uncertain points are the constants of
:class:`InsiSettings` (each commented).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from sandbox.insi import answers
from sandbox.insi.answers import Answer, InsiFault, sandbox_fault
from sandbox.insi.assertions import PsCaller, verify_ps_assertion, verify_vitale_assertion
from sandbox.insi.data import InsiStore, Person
from sandbox.server import xmlsafe
from sandbox.server.certs import TrustStore, common_name
from sandbox.server.context import SoapFault
from sandbox.server.faults import FaultInjector

log = logging.getLogger("sandbox.insi")

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
CTXLPS = "urn:siram:lps:ctxlps"
CTXBAM = "urn:siram:bam:ctxbam"
RECSANS = "http://www.cnamts.fr/INSiRecSans"
RECVIT = "http://www.cnamts.fr/INSiRecVit"
ACTION_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
BODIES = {(RECSANS, "RECSANSVITALE"): ACTION_TRAITS, (RECVIT, "RECVITALE"): ACTION_VITALE}

MODE_MTLS = "mtls"
MODE_CPX = "cpx"
INSI_CERTIFICATE_NAMES = ("INSI-MANU", "INSI-AUTO")
# CNDA numbers seen in the sources, plus the sandbox's own (ps-agent's tests and demo use it).
SANDBOX_IDAM = "PSAGENTSBX01"
DEFAULT_IDAMS = (SANDBOX_IDAM, "TESTSGIE0000", "LSN17NF23FW0", "PDP17NF21DD0")


def _xsd_dir() -> Path | None:
    """The official INSi contract files (never copied into the repository): ``$PS_AGENT_INSI_XSD``, else
    ``$PS_AGENT_SHARED/spec/sources/insi/xsd``, else ``../shared/spec/sources/insi/xsd`` beside the checkout.
    Without them the sandbox still makes every structural check of §7, only not the XSD one (it says so)."""
    candidates = []
    if os.environ.get("PS_AGENT_INSI_XSD"):
        candidates.append(Path(os.environ["PS_AGENT_INSI_XSD"]))
    if os.environ.get("PS_AGENT_SHARED"):
        candidates.append(Path(os.environ["PS_AGENT_SHARED"]) / "spec" / "sources" / "insi" / "xsd")
    beside_checkout = Path(__file__).resolve().parents[2].parent / "shared"
    candidates.append(beside_checkout / "spec" / "sources" / "insi" / "xsd")
    for c in candidates:
        if (c / "ServiceIdentiteCertifiee" / "INSi_RECSANS_INS.xsd").is_file():
            return c
    return None


XSD_DIR = _xsd_dir()
if XSD_DIR is None:
    log.warning("INSi sandbox: official XSD not found (PS_AGENT_SHARED); schema checks are skipped")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COG = re.compile(r"^[0-9A-Z]{5}$")
_NAME_CHARS = re.compile(r"^[A-Z '\-]+$")
_MATRICULE = re.compile(r"^\d{6}[AB0-9]\d{6}$")


@dataclass(frozen=True)
class InsiSettings:
    """Checks and fault injection of the INSi sandbox (``[I]`` design choices of insi.md §7)."""

    idams: tuple[str, ...] = DEFAULT_IDAMS
    clock_skew: timedelta = timedelta(minutes=5)  # Temps / IssueInstant tolerance
    ps_assertion_max_age: timedelta = timedelta(seconds=60)  # [I] §7.3 default
    vitale_max_age: timedelta = timedelta(minutes=20)  # [C:S10 CNDA test 1.02]
    strict_emetteur: bool = True  # False reproduces the lenient real service [C:S3]
    several_prenom_fault: bool = True  # [C:S4] several Prenom -> siram_40/insi_102
    first_word_only: bool = False  # first-name criterion: one word of ListePrenom (default) or the first
    fault_on_calls: tuple[int, ...] = ()  # 1-based service call numbers answered siram_40/insi_102
    fault_birth_names: tuple[str, ...] = ()  # traits searches for these birth names -> siram_40/insi_102
    keep_exchanges: int = 200  # request/answer pairs kept in memory (test data only)


@cache
def _schema(relative: str) -> etree.XMLSchema:
    assert XSD_DIR is not None
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(XSD_DIR / relative), parser))


def schema_errors(relative: str, el: etree._Element) -> str:
    if XSD_DIR is None:
        return ""
    schema = _schema(relative)
    doc = etree.fromstring(etree.tostring(el))
    if schema.validate(doc):
        return ""
    return "; ".join(f"ligne {e.line} : {e.message}" for e in list(schema.error_log)[:3])


def _local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


def _text(parent: etree._Element, ns: str, name: str) -> str:
    el = parent.find(f"{{{ns}}}{name}")
    return (el.text or "").strip() if el is not None and el.text else ""


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _name_rule_violation(value: str, first_name: bool) -> str:
    """insi.md §5.2 syntax, checked on what arrives (no normalisation here)."""
    if not value:
        return "vide"
    if not _NAME_CHARS.match(value):
        return "caractère non admis (majuscules sans accent, espace, apostrophe, trait d'union)"
    if len(value) > 100:
        return "plus de 100 caractères"
    if value[0] in " -":
        return "commence par un espace ou un trait d'union"
    if "  " in value or "''" in value or "' " in value or " '" in value:
        return "espace ou apostrophe doublés ou combinés"
    if "---" in value or (first_name and "--" in value):
        return "trait d'union doublé non admis"
    if first_name and value[-1] in "-'":
        return "finit par un trait d'union ou une apostrophe"
    return ""


@dataclass
class Exchange:
    at: datetime
    mode: str
    request: bytes
    answer: Answer


@dataclass
class _Envelope:
    action: str
    message_id: str
    lps: etree._Element
    bam: etree._Element
    security: etree._Element | None
    body: etree._Element


class InsiService:
    def __init__(
        self,
        store: InsiStore,
        trust: TrustStore,
        *,
        settings: InsiSettings | None = None,
        faults: FaultInjector | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.trust = trust
        self.settings = settings or InsiSettings()
        self.faults = faults or FaultInjector()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self.calls = 0
        self.counts: dict[str, int] = {}
        self.exchanges: list[Exchange] = []

    def configure(self, settings: InsiSettings) -> None:
        with self._lock:
            self.settings = settings
            self.calls = 0

    def state(self) -> dict[str, object]:
        with self._lock:
            return {
                "calls": self.calls,
                "outcomes": dict(self.counts),
                "persons": len(self.store.persons),
                "cards": len(self.store.cards),
                "faults": self.faults.config.to_dict(),
            }

    # ------------------------------------------------------------------------------------- entry
    def handle(self, body: bytes, content_type: str, tls_cert: x509.Certificate | None, mode: str) -> Answer:
        message_id: str | None = None
        try:
            env = self._envelope(body, content_type)
            message_id = env.message_id
            answer = self._serve(env, tls_cert, mode)
        except InsiFault as f:
            answer = answers.fault(f, message_id)
            self._count(f.detail_code)
            log.info("INSi sandbox fault %s/%s: %s", f.subcode, f.detail_code, f.reason)
        except ConnectionAbortedError:
            raise  # injected connection reset
        except Exception:  # a sandbox bug still gets an answer, and the server keeps serving
            log.exception("INSi sandbox internal error")
            internal = InsiFault(
                "Erreur interne du service INSi (bac à sable).",
                detail_code="sandbox_internal",
                code="Receiver",
                subcode="siram_40",
            )
            answer = answers.fault(internal, message_id)
        with self._lock:
            self.exchanges.append(Exchange(self._clock(), mode, body, answer))
            del self.exchanges[: -self.settings.keep_exchanges]
        return answer

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1

    # ------------------------------------------------------------------------------- envelope
    def _envelope(self, data: bytes, content_type: str) -> _Envelope:
        try:
            root = xmlsafe.parse(data)
        except SoapFault as exc:
            raise sandbox_fault("sandbox_xml", f"Message refusé : {exc.reason_fr}") from None
        if root.tag != f"{{{SOAP}}}Envelope":
            raise sandbox_fault("sandbox_xml", "Le message n'est pas une enveloppe SOAP 1.2.")
        header = root.find(f"{{{SOAP}}}Header")
        body = root.find(f"{{{SOAP}}}Body")
        if header is None or body is None:
            raise sandbox_fault("sandbox_xml", "Enveloppe SOAP sans en-tête ou sans corps.")
        payload = [c for c in body if isinstance(c.tag, str)]
        if len(payload) != 1:
            raise sandbox_fault("sandbox_body", "Le corps SOAP doit contenir exactement un élément.")
        qn = etree.QName(payload[0])
        action = BODIES.get((qn.namespace or "", qn.localname))
        if action is None:
            raise sandbox_fault(
                "sandbox_body",
                f"Opération inconnue : « {qn.localname} » (RECSANSVITALE ou RECVITALE attendu).",
            )
        wsa_actions = header.findall(f"{{{WSA}}}Action")
        if len(wsa_actions) > 1 or (wsa_actions and (wsa_actions[0].text or "").strip() != action):
            raise sandbox_fault("sandbox_action", "wsa:Action ne correspond pas à l'opération du corps.")
        m = re.search(r'action="?([^";]+)"?', content_type)
        if m and m.group(1).strip() != action:
            raise sandbox_fault("sandbox_action", "L'action SOAP du Content-Type ne correspond pas au corps.")
        ids = header.findall(f"{{{WSA}}}MessageID")
        message_id = (ids[0].text or "").strip() if len(ids) == 1 else ""
        if not message_id.startswith("uuid:") or not _UUID.match(message_id[5:].lower()):
            raise sandbox_fault(
                "sandbox_messageid", "wsa:MessageID absent ou mal formé (uuid:<UUID> attendu)."
            )
        lps = header.findall(f"{{{CTXLPS}}}ContexteLPS")
        bam = header.findall(f"{{{CTXBAM}}}ContexteBAM")
        if len(lps) != 1 or len(bam) != 1:
            raise InsiFault(
                "Contexte LPS ou BAM absent de l'en-tête.",
                detail_code="sandbox_context",
                detail="ContexteLPS/BAM",
            )
        secs = header.findall(f"{{{WSSE}}}Security")
        if len(secs) > 1:
            raise sandbox_fault("sandbox_security", "En-tête wsse:Security en double.")
        return _Envelope(action, message_id, lps[0], bam[0], secs[0] if secs else None, payload[0])

    def _contexts(self, env: _Envelope, now: datetime) -> str:
        """§7.2 items 4–6; returns the Emetteur (the same in both contexts)."""
        for name, xsd, el in (
            ("ContexteLPS", "CTX/ROOT_ctxlps_CTXLPS_V01_00.xsd", env.lps),
            ("ContexteBAM", "CTX/ROOT_ctxbam_CTXBAM_V01_02.xsd", env.bam),
        ):
            errors = schema_errors(xsd, el)
            if errors:
                raise sandbox_fault("sandbox_context", f"{name} non conforme au schéma : {errors}")
        emetteurs = set()
        for name, el, ns in (("ContexteLPS", env.lps, CTXLPS), ("ContexteBAM", env.bam, CTXBAM)):
            if not _UUID.match(_text(el, ns, "Id").lower()):
                raise sandbox_fault("sandbox_context", f"{name}/Id doit être un UUID.")
            when = _instant(_text(el, ns, "Temps"))
            if when is None or abs(now - when) > self.settings.clock_skew:
                raise sandbox_fault(
                    "sandbox_context", f"{name}/Temps absent ou trop éloigné de l'heure du service."
                )
            emetteurs.add(_text(el, ns, "Emetteur"))
        soft = env.lps.find(f"{{{CTXLPS}}}LPS")
        idam = soft.find(f"{{{CTXLPS}}}IDAM") if soft is not None else None
        if (
            idam is None
            or (idam.text or "").strip() not in self.settings.idams
            or idam.get("R") not in ("4", "04")
        ):
            raise answers.unknown_idam()
        assert soft is not None
        instance = _text(soft, CTXLPS, "Instance")
        if not _UUID.match(instance):
            log.warning("ContexteLPS/LPS/Instance is not a canonical UUID: %r", instance)
        if not _text(soft, CTXLPS, "Nom") or not _text(soft, CTXLPS, "Version"):
            log.warning("ContexteLPS/LPS/Nom or Version is empty")
        if len(emetteurs) != 1:
            raise sandbox_fault("sandbox_emetteur", "Les émetteurs des contextes LPS et BAM diffèrent.")
        return emetteurs.pop()

    # ---------------------------------------------------------------------------------- serving
    def _serve(self, env: _Envelope, tls_cert: x509.Certificate | None, mode: str) -> Answer:
        now = self._clock()
        ps: PsCaller | None = None
        expected_emetteur = ""
        if mode == MODE_MTLS:
            if tls_cert is None or common_name(tls_cert) not in INSI_CERTIFICATE_NAMES:
                raise answers.access_level()
            ous = tls_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
            expected_emetteur = str(ous[0].value) if ous else ""
        emetteur = self._contexts(env, now)
        assertions = env.security.findall(f"{{{SAML}}}Assertion") if env.security is not None else []
        others = [c for c in (env.security if env.security is not None else []) if isinstance(c.tag, str)]
        if len(others) != len(assertions):
            raise sandbox_fault(
                "sandbox_security", "wsse:Security ne doit contenir que des assertions SAML 2.0."
            )
        if assertions:
            assert env.security is not None
            errors = schema_errors("WSSE/Security.xsd", env.security)
            if errors:
                raise sandbox_fault("sandbox_assertion", f"wsse:Security non conforme au schéma : {errors}")
        vitale_assertions = [a for a in assertions if self._is_vitale(a)]
        ps_assertions = [a for a in assertions if not self._is_vitale(a)]
        if mode == MODE_CPX:
            if len(ps_assertions) != 1:
                raise sandbox_fault(
                    "sandbox_assertion",
                    "Une assertion PS signée par la carte CPx est obligatoire (une seule).",
                )
            if assertions[0] is not ps_assertions[0]:
                raise sandbox_fault("sandbox_assertion", "L'assertion PS doit précéder l'assertion Vitale.")
            ps = verify_ps_assertion(
                ps_assertions[0],
                self.trust,
                now,
                self.settings.ps_assertion_max_age,
                self.settings.clock_skew,
            )
            expected_emetteur = ps.name_id
        elif ps_assertions:
            raise sandbox_fault(
                "sandbox_assertion", "Mode certificat d'établissement : aucune assertion PS n'est attendue."
            )
        if self.settings.strict_emetteur and emetteur != expected_emetteur:
            raise sandbox_fault(
                "sandbox_emetteur",
                f"Émetteur « {emetteur} » différent de l'identité authentifiée (« {expected_emetteur} »).",
            )
        with self._lock:
            self.calls += 1
            call_number = self.calls
        if call_number in self.settings.fault_on_calls:
            raise answers.unavailable()
        decision = self.faults.decide(env.action)
        if decision.latency_ms:
            threading.Event().wait(decision.latency_ms / 1000.0)
        if decision.outcome == "soap_fault":
            raise answers.unavailable()
        if decision.outcome in ("http_500", "http_503"):
            status = 500 if decision.outcome == "http_500" else 503
            return Answer(
                status,
                f"Erreur HTTP {status} simulée (injection de panne).\n".encode(),
                "text/plain; charset=utf-8",
            )
        if decision.outcome in ("reset_before_commit", "reset_after_commit"):
            raise ConnectionAbortedError("injected reset")
        if env.action == ACTION_TRAITS:
            answer = self._traits(env.body)
        else:
            if len(vitale_assertions) != 1:
                raise sandbox_fault("sandbox_vitale", "L'assertion Vitale est obligatoire (une seule).")
            issuer = ps.name_id if ps is not None else expected_emetteur
            serial = verify_vitale_assertion(
                vitale_assertions[0], issuer, now, self.settings.vitale_max_age, self.settings.clock_skew
            )
            answer = self._vitale(env.body, serial)
        return answer

    @staticmethod
    def _is_vitale(assertion: etree._Element) -> bool:
        name_id = assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
        return name_id is not None and name_id.get("NameQualifier") == "VITALE"

    # ----------------------------------------------------------------------------------- WS_INS2
    def _traits(self, body: etree._Element) -> Answer:
        errors = schema_errors("ServiceIdentiteCertifiee/INSi_RECSANS_INS.xsd", body)
        if errors:
            raise sandbox_fault("sandbox_traits", f"RECSANSVITALE non conforme au schéma : {errors}")
        prenoms = [(p.text or "") for p in body.findall(f"{{{RECSANS}}}Prenom")]
        if len(prenoms) > 1 and self.settings.several_prenom_fault:
            raise answers.unavailable()
        name = _text(body, RECSANS, "NomNaissance")
        sexe = _text(body, RECSANS, "Sexe")
        date = _text(body, RECSANS, "DateNaissance")
        lieu_el = body.find(f"{{{RECSANS}}}LieuNaissance")
        lieu = (lieu_el.text or "") if lieu_el is not None else None
        prenom = prenoms[0] if prenoms else ""
        for label, value, first in (("NomNaissance", name, False), ("Prenom", prenom, True)):
            why = _name_rule_violation(value, first)
            if why:
                raise sandbox_fault("sandbox_traits", f"Trait {label} « {value} » refusé : {why}.")
        if sexe not in ("M", "F"):
            raise sandbox_fault("sandbox_traits", f"Sexe « {sexe} » refusé : M ou F.")
        if not _DATE.match(date):
            raise sandbox_fault("sandbox_traits", f"DateNaissance « {date} » refusée : AAAA-MM-JJ attendu.")
        if lieu is not None and not _COG.match(lieu):
            raise sandbox_fault(
                "sandbox_traits", f"LieuNaissance « {lieu} » refusé : code COG de 5 caractères."
            )
        if name in self.settings.fault_birth_names:
            raise answers.unavailable()
        matches = [p for p in self.store.persons if self._match(p, name, prenom, sexe, date, lieu)]
        return self._result(matches)

    def _match(self, p: Person, name: str, prenom: str, sexe: str, date: str, lieu: str | None) -> bool:
        if (p.birth_name, p.sex, p.birth_date) != (name, sexe, date) or not p.first_names:
            return False
        words = p.first_names.split(" ")
        ok = prenom == p.first_names or (
            prenom == words[0] if self.settings.first_word_only else prenom in words
        )
        return ok and (lieu is None or lieu == p.birth_place)

    def _result(self, matches: list[Person]) -> Answer:
        if not matches:
            self._count("01")
            return answers.resultat("01")
        if len(matches) > 1:
            self._count("02")
            return answers.resultat("02")
        self._count("00")
        return answers.resultat("00", matches[0])

    # ----------------------------------------------------------------------------------- WS_INS1
    def _vitale(self, body: etree._Element, serial: str) -> Answer:
        errors = schema_errors("ServiceIdentiteCertifiee/INSi_RECVITALE_INS.xsd", body)
        if errors:
            raise sandbox_fault("sandbox_vitale", f"RECVITALE non conforme au schéma : {errors}")
        card = self.store.card(serial)
        if card is None:
            raise sandbox_fault("sandbox_vitale", f"Carte Vitale inconnue du bac à sable (n° {serial}).")
        individu = body.find(f"{{{RECVIT}}}MatriculeIndividu/{{{RECVIT}}}NumIdentifiant")
        od_el = body.find(f"{{{RECVIT}}}MatriculeOD")
        od = _text(od_el, RECVIT, "NumIdentifiant") if od_el is not None else ""
        date = _text(body, RECVIT, "DateNaissance")
        rank_text = _text(body, RECVIT, "RangNaissance") or "1"
        if not _MATRICULE.match(od):
            raise sandbox_fault(
                "sandbox_vitale", "MatriculeOD (NIR de l'assuré, 13 caractères) absent ou invalide."
            )
        if not _DATE.match(date) or not rank_text.isdigit() or int(rank_text) < 1:
            raise sandbox_fault("sandbox_vitale", "DateNaissance ou RangNaissance du bénéficiaire invalide.")
        if od != card.assure:
            raise sandbox_fault(
                "sandbox_vitale", "MatriculeOD ne correspond pas à l'assuré de la carte Vitale."
            )
        if individu is not None and (individu.text or "").strip():
            nir = (individu.text or "").strip()
            found = [b for b in card.beneficiaries if b.ins == nir and b.certified_nir]
        else:
            found = [b for b in card.beneficiaries if b.birth_date == date and b.rank == int(rank_text)]
        if not found:
            self._count("01")
            return answers.resultat("01")
        person = self.store.person(found[0].ins)
        if person is None:
            self._count("01")
            return answers.resultat("01")
        self._count("00")
        return answers.resultat("00", person)


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class ServiceState:
    """What ``GET /_sandbox/state`` returns."""

    data: dict[str, object] = field(default_factory=dict)
