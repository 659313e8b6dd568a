"""Access policy: decides *before* any DMP call whether an action may go ahead, and says why in French.

Every rule is one of ``/shared/spec/access-rules.md`` and every ``Decision`` names it (``rule_id``).
GEN-01: the DMP server is the enforcer; this policy only refuses early and explains. An allowed
decision does not promise the DMP will accept; the DMP's own answer always wins.

Order of evaluation (first refusal wins):
 1. AUTH-01  a named, identified user (national id + name)
 2. GEN-03   declared purpose is care (not insurance, employment, third-party expertise)
 3. ID-01    the patient has an INS (matricule + INS OID);  ID-02 the identity is QUAL (message of ID-05)
 4. AUTH-04  non-PS staff: deposit and status only, never consultation/consent/emergency
 5. URG-06   centre 15: regulation role only, read-only;  URG-01/URG-02 bris de glace: DIRECTE card,
             written reason of at least ``BRIS_DE_GLACE_MIN_REASON`` characters, emergency opposition
 6. AUTH-03  consultation under establishment authentication needs reinforced local auth (AIR),
             never in background
 7. PAT-06   a DMP that does not exist, is closed or opposed: nothing but the status test
 8. PAT-01   blocked by the patient: no consultation, deposit still allowed
 9. ACC-02/ACC-03  consultation needs a valid authorisation (or médecin traitant, MT-01), else
             ``needs_consent=True``;  ACC-07 deposit needs none
10. DEP-02   PS deposits only PS-authored types;  HAB-01/HAB-03 the habilitation matrix

Every choice on a point the spec marks inferred/uncertain is a constant below, with its reason.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Protocol

from cda import ins as cda_ins
from ps_agent.access.errors import error_for
from ps_agent.auth.model import AuthMode, ProfessionalIdentity

# --- decisions on [I] / [?] points of the spec (one place) -----------------------------------------
BRIS_DE_GLACE_MIN_REASON = 20
"""URG-02 [I]: minimum length (characters, stripped) of the written bris de glace reason. 20 characters
forces a real sentence ("patient inconscient, ...") rather than "urgence"."""

BRIS_DE_GLACE_MODES = frozenset({AuthMode.DIRECTE})
"""URG-01 + issue 5: bris de glace is offered only with the professional's own card (DIRECTE)."""

CONSULTATION_MODES = frozenset({AuthMode.DIRECTE, AuthMode.INDIRECTE_RENFORCEE})
"""AUTH-03 [I]: consultation under establishment certificates only with reinforced local authentication
(AIR, EX_AIR-085 / PGSSI-S); plain INDIRECTE may deposit, not consult."""

BLOCKED_PS_MAY_BREAK_GLASS = False
"""dmp-protocol §7.1 [?] "emergency override for a blocked PS": a patient who blocked a professional has
expressed a will about him; we refuse bris de glace for him (the DMP would decide otherwise anyway)."""

MEDECIN_TRAITANT_IMPLIES_AUTHORISATION = True
"""MT-01 [I]: the DMP's médecin traitant (STATUT_MT) consults without recording a separate consent."""

PREBLOCK_INFERRED_MATRIX_ROWS = False
"""HAB-03 [I]: only CONFIRMED matrix rows refuse before the call; INFERRED rows let the DMP decide (the
decision then carries the French explanation as a notice)."""

# Bound of the per-policy cache of matrix answers (one per profession × type × action × role asked).
MATRIX_ANSWER_CACHE_MAX = 4096

NON_PS_ACTIONS = frozenset(
    {"status", "deposit", "mask", "unmask", "make_visible", "archive", "unarchive", "delete"}
)
"""AUTH-04 [I]: what non-PS establishment staff (secretaries...) may do: deposits and the management of
documents their structure deposited; never consultation, consent or emergency access."""

FORBIDDEN_PURPOSES = frozenset(
    {"assurance", "insurance", "mutuelle", "emploi", "employment", "embauche", "expertise"}
)
"""GEN-03: declared purposes that L1111-18 CSP forbids (the agent's callers declare ``purpose``)."""

NOT_PS_AUTHORED_PREFIXES = ("DOCPAT", "EXPPAT", "REMB", "ATTEST-RESID")
"""DEP-02 [I]: type codes a professional never authors (patient documents, reimbursement data)."""

INS_OIDS = cda_ins.INS_OIDS  # the one table of INS OIDs (cda.ins)
INS_STATUSES = ("PROV", "RECUP", "VALI", "QUAL")

# --- messages (French, shown to the professional) ---------------------------------------------------
MSG_AUTH_REQUIRED = "Authentification individuelle requise."
MSG_PURPOSE = (
    "Accès refusé : le DMP ne peut être consulté que pour la prise en charge du patient (art. L1111-18 CSP)."
)
MSG_INS_MISSING = "Identifiant INS du patient absent ou invalide : accès au DMP impossible."
MSG_INS_NOT_QUALIFIED = (
    "Identité non qualifiée : envoi au DMP impossible. "
    "Qualifiez l'identité (INSi + pièce d'identité à haut niveau de confiance)."
)
MSG_NON_PS = "Consultation réservée aux professionnels prenant en charge le patient."
MSG_NO_DMP = "Ce patient n'a pas de DMP actif (opposition ou clôture). Aucun document ne sera envoyé."
MSG_BLOCKED = "Le patient a bloqué votre accès à son dossier. Vous pouvez toujours y déposer des documents."
MSG_NEED_CONSENT = "Le patient doit donner son accord avant la consultation."
NOTICE_CONSENT = (
    "Si le patient est d'accord, enregistrez son consentement : « Le patient a donné son accord pour "
    "la consultation de son DMP »."
)
MSG_BTG_MODE = (
    "L'accès en urgence (bris de glace) n'est possible qu'avec votre carte CPS, en authentification directe."
)
MSG_BTG_REASON = (
    "Indiquez par écrit le motif de l'accès en urgence (au moins {n} caractères) : "
    "patient hors d'état d'exprimer sa volonté et risque immédiat pour sa santé."
)
MSG_BTG_OPPOSED = "Le patient s'est opposé à l'accès en urgence à son dossier."
MSG_BTG_BLOCKED = "Le patient a bloqué votre accès à son dossier : l'accès en urgence n'est pas possible."
NOTICE_BTG = (
    "Accès en urgence (bris de glace) : le patient et son médecin traitant seront informés de cet accès. "
    "Motif enregistré dans le journal."
)
MSG_C15_ROLE = "L'accès en mode régulation (centre 15) est réservé au médecin régulateur du SAMU-centre 15."
MSG_C15_READ_ONLY = (
    "En mode régulation (centre 15), seule la consultation est permise : aucun dépôt ni modification."
)
NOTICE_C15 = (
    "Accès en mode régulation médicale (centre 15) : cet accès est tracé et le patient en sera informé."
)
MSG_EMERGENCY_MODE = "Choisissez le mode d'accès en urgence : bris de glace ou régulation (centre 15)."
MSG_AIR_CONSULT = (
    "La consultation du DMP avec le certificat de l'établissement exige une authentification renforcée "
    "de l'utilisateur (AIR)."
)
MSG_BACKGROUND_CONSULT = (
    "La consultation du DMP ne peut pas se faire en tâche de fond : elle doit être demandée par le "
    "professionnel lui-même."
)
MSG_NOT_PS_AUTHORED = (
    "Ce type de document ({type_code}) ne peut pas être déposé par un professionnel de santé."
)
MSG_MATRIX_READ = "Ce type de document n'est pas accessible à votre profession (matrice d'habilitation DMP)."
MSG_MATRIX_WRITE = "Votre profession ne peut pas déposer ce type de document (matrice d'habilitation DMP)."
MSG_ALLOWED = "Action autorisée."
MSG_DMP_DECIDES = "Action autorisée localement ; le DMP décidera."


class Action(enum.StrEnum):
    STATUS = "status"  # TD0.2
    CONSENT = "consent"  # TD0.3 AJOUT (record the patient's authorisation)
    DEPOSIT = "deposit"  # TD2.1
    SEARCH = "search"  # TD3.1
    RETRIEVE = "retrieve"  # TD3.2
    MASK = "mask"  # TD3.3a
    UNMASK = "unmask"
    MAKE_VISIBLE = "make_visible"  # TD3.3b
    ARCHIVE = "archive"  # TD3.3d
    UNARCHIVE = "unarchive"  # TD3.3d
    DELETE = "delete"  # TD3.3c
    EMERGENCY = "emergency"  # open the record in bris de glace / centre 15 mode
    PATIENT_LIST = "patient_list"  # TD0.4: the DMPs this professional is authorised on (no patient)


CONSULTATION = frozenset({Action.SEARCH, Action.RETRIEVE, Action.EMERGENCY, Action.PATIENT_LIST})
READ_ONLY = frozenset({Action.STATUS, Action.SEARCH, Action.RETRIEVE, Action.EMERGENCY, Action.PATIENT_LIST})
NO_PATIENT_ACTIONS = frozenset({Action.PATIENT_LIST})
"""Actions about no single patient (the INS checks do not apply; ``patient`` may be None)."""


class AccessMode(enum.StrEnum):
    NORMAL = "normal"
    BRIS_DE_GLACE = "bris_de_glace"
    CENTRE_15 = "centre_15"


@dataclass(frozen=True)
class PatientRef:
    ins: str  # INS matricule
    oid: str  # INS OID (NIR, NIA, test, demo)
    ins_status: str = "QUAL"  # PROV / RECUP / VALI / QUAL (RNIV)

    @property
    def ins_with_oid(self) -> str:
        return f"{self.ins}^{self.oid}"


@dataclass(frozen=True)
class DmpState:
    """What TD0.2 said.

    ``authorised``: True = VALIDE; None = NON_EXISTE / EXPIRE (consent may be recorded, TD0.3 AJOUT);
    False = INTERDIT (the patient blocked this professional, PAT-01).
    ``opposed``: the patient objected to his DMP (PAT-06; treated like closed).
    ``emergency_opposed``: the patient opposed emergency access (BTG / ETREAT deny; URG-01, URG-06).
    """

    exists: bool
    closed: bool = False
    opposed: bool = False
    authorised: bool | None = None
    is_medecin_traitant: bool = False
    emergency_opposed: bool = False

    @property
    def active(self) -> bool:
        return self.exists and not self.closed and not self.opposed

    @property
    def blocked(self) -> bool:
        return self.authorised is False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule_id: str
    message_fr: str
    needs_consent: bool = False
    notice_fr: str = ""
    log_code: str = ""  # access-rules §11 log code (DENIED_INS, NEED_CONSENT...), "" when allowed


class HabilitationMatrix(Protocol):
    """What the policy needs from ``cda.habilitations`` (injectable for tests): ``decide`` returns an object
    with ``read``, ``write`` and ``rule`` (``rule.status`` like "read=CONFIRMED; write=INFERRED", or None
    when no row matches); ``explain`` gives the French sentence."""

    def decide(
        self, profession_code: str, specialty_code: str, type_code: str, *, role: str = ""
    ) -> object: ...

    def explain(
        self,
        profession_code: str,
        specialty_code: str,
        type_code: str,
        *,
        action: str = "read",
        role: str = "",
    ) -> str: ...


@dataclass(frozen=True)
class MatrixAnswer:
    allowed: bool | None  # None: the matrix is unavailable or does not know the code (GEN-04)
    confirmed: bool  # the deciding row is CONFIRMED for this action (HAB-03)
    sentence: str  # French explanation ("Les pharmaciens n'ont pas accès ...")


def _default_matrix() -> object | None:
    try:
        from cda import habilitations  # lands with the CDA team's work
    except ImportError:  # pragma: no cover - depends on the other team's progress
        return None
    return habilitations


def is_non_ps(identity: ProfessionalIdentity) -> bool:
    """Non-PS staff: no profession code (secretary, admissions), or an explicit non-PS role."""
    return not identity.profession_code or bool(identity.non_ps_role)


class AccessPolicy:
    """Decides before the call. Stateless; one instance can serve every session."""

    def __init__(self, matrix: object | None = None) -> None:
        self._matrix = matrix if matrix is not None else _default_matrix()
        self._hidden_cache: dict[tuple[str, str, str], tuple[str, ...]] = {}
        # matrix_answer per (profession, specialty, type, action, role): the matrix is fixed for the
        # policy's life (as for _hidden_cache) and the answer depends on nothing else.
        self._answer_cache: dict[tuple[str, str, str, str, str], MatrixAnswer] = {}

    # -- public API -----------------------------------------------------------------------------
    def decide(
        self,
        action: Action | str,
        *,
        identity: ProfessionalIdentity,
        mode: AuthMode | str,
        patient: PatientRef | None,
        dmp: DmpState | None = None,
        access_mode: AccessMode | str = AccessMode.NORMAL,
        reason: str = "",
        type_code: str | None = None,
        purpose: str = "",
        background: bool = False,
    ) -> Decision:
        """Return the ``Decision`` (never raises for a refusal; see ``check``).

        ``patient`` is None only for actions about no single patient (``Action.PATIENT_LIST``).
        ``type_code`` narrows RETRIEVE/DEPOSIT to one document type (habilitation matrix).
        ``purpose`` is the declared purpose when the caller knows it (GEN-03).
        ``background`` is True for unattended work (hot folder, batch): no consultation then (AUTH-03).
        """
        action = action if isinstance(action, Action) else Action(action)
        mode = mode if isinstance(mode, AuthMode) else AuthMode(mode)
        access_mode = access_mode if isinstance(access_mode, AccessMode) else AccessMode(access_mode)
        # The steps in their fixed order, each given only what it reads (one call per step, no shared
        # keyword dict to build and unpack nine times: this runs at least twice per deposit). The first
        # step that answers (not None) decides.
        if (
            (d := self._authentication(identity=identity)) is not None
            or (d := self._purpose(purpose=purpose)) is not None
            or (d := self._identity(action=action, patient=patient)) is not None
            or (d := self._role(action=action, identity=identity)) is not None
            or (
                d := self._emergency(
                    action=action,
                    identity=identity,
                    mode=mode,
                    dmp=dmp,
                    access_mode=access_mode,
                    reason=reason,
                )
            )
            is not None
            or (d := self._establishment(action=action, mode=mode, background=background)) is not None
            or (d := self._dmp_state(action=action, dmp=dmp)) is not None
            or (d := self._authorisation(action=action, dmp=dmp, access_mode=access_mode)) is not None
            or (
                d := self._document_type(
                    action=action, identity=identity, type_code=type_code, dmp=dmp, access_mode=access_mode
                )
            )
            is not None
        ):
            return d
        return self._allowed(action, identity, dmp, access_mode, type_code)

    def check(self, action: Action | str, **kwargs: object) -> Decision:
        """``decide`` that raises the typed ``AccessDenied`` subclass when refused."""
        decision = self.decide(action, **kwargs)  # type: ignore[arg-type]
        if not decision.allowed:
            raise error_for(decision)
        return decision

    def hidden_types_explanation(self, identity: ProfessionalIdentity, *, role: str = "") -> list[str]:
        """French sentences describing what the matrix hides from this profession (HAB-01): one per
        document class when the whole class is hidden, else one per type. Empty without a matrix."""
        if self._matrix is None:
            return []
        if is_non_ps(identity):
            return [MSG_NON_PS]
        key = (identity.profession_code, identity.specialty_code, role)
        cached = self._hidden_cache.get(key)
        if cached is None:
            cached = self._hidden_cache[key] = tuple(self._hidden_types(identity, role))
        return list(cached)

    def _hidden_types(self, identity: ProfessionalIdentity, role: str) -> list[str]:
        types = _dmp_types()
        hidden_by_class: dict[tuple[str, str], list[str]] = {}
        all_by_class: dict[tuple[str, str], list[str]] = {}
        for code, class_code, class_label in types:
            all_by_class.setdefault((class_code, class_label), []).append(code)
            answer = self.matrix_answer(identity, code, action="read", role=role)
            if answer.allowed is False:
                hidden_by_class.setdefault((class_code, class_label), []).append(code)
        who = _plural(identity)
        sentences: list[str] = []
        for (class_code, class_label), hidden in hidden_by_class.items():
            if len(hidden) == len(all_by_class[(class_code, class_label)]) and len(hidden) > 1:
                sentences.append(f"{who} n'ont pas accès aux documents de la classe « {class_label} ».")
            else:
                for code in hidden:
                    sentence = self.matrix_answer(identity, code, action="read", role=role).sentence
                    if sentence and sentence not in sentences:
                        sentences.append(sentence)
        return sentences

    # -- steps ----------------------------------------------------------------------------------
    @staticmethod
    def _refuse(
        rule_id: str, message: str, log_code: str, *, needs_consent: bool = False, notice: str = ""
    ) -> Decision:
        return Decision(
            False, rule_id, message, needs_consent=needs_consent, notice_fr=notice, log_code=log_code
        )

    def _authentication(self, *, identity: ProfessionalIdentity) -> Decision | None:
        if not identity.id_nat.strip() or not (identity.family_name.strip() or identity.given_name.strip()):
            return self._refuse("AUTH-01", MSG_AUTH_REQUIRED, "DENIED_AUTH")
        return None

    def _purpose(self, *, purpose: str) -> Decision | None:
        if purpose and purpose.strip().lower() in FORBIDDEN_PURPOSES:
            return self._refuse("GEN-03", MSG_PURPOSE, "DENIED_PURPOSE")
        return None

    def _identity(self, *, action: Action, patient: PatientRef | None) -> Decision | None:
        if patient is None and action in NO_PATIENT_ACTIONS:
            return None
        if patient is None or not patient.ins.strip() or patient.oid not in INS_OIDS:
            return self._refuse("ID-01", MSG_INS_MISSING, "DENIED_INS")
        problem = _ins_problem(patient)
        if problem:
            return self._refuse("ID-01", _join(MSG_INS_MISSING, problem), "DENIED_INS")
        if patient.ins_status != "QUAL":
            # ID-02: only a qualified identity lets the INS matricule be used to share data (message ID-05).
            return self._refuse("ID-02", MSG_INS_NOT_QUALIFIED, "DENIED_INS")
        return None

    def _role(self, *, action: Action, identity: ProfessionalIdentity) -> Decision | None:
        if is_non_ps(identity) and action.value not in NON_PS_ACTIONS:
            return self._refuse("AUTH-04", MSG_NON_PS, "DENIED_ROLE")
        return None

    def _emergency(
        self,
        *,
        action: Action,
        identity: ProfessionalIdentity,
        mode: AuthMode,
        dmp: DmpState | None,
        access_mode: AccessMode,
        reason: str,
    ) -> Decision | None:
        if action is Action.EMERGENCY and access_mode is AccessMode.NORMAL:
            return self._refuse("URG-01", MSG_EMERGENCY_MODE, "DENIED_EMERGENCY_MODE")
        if access_mode is AccessMode.CENTRE_15:
            if not identity.is_regulator:
                return self._refuse("URG-06", MSG_C15_ROLE, "DENIED_ROLE")
            if action not in READ_ONLY:
                return self._refuse("URG-06", MSG_C15_READ_ONLY, "DENIED_REGULATION_WRITE")
            if dmp is not None and dmp.emergency_opposed and action is not Action.STATUS:
                return self._refuse("URG-06", MSG_BTG_OPPOSED, "DENIED_EMERGENCY_OPT_OUT")
            return None
        if access_mode is AccessMode.BRIS_DE_GLACE and action in CONSULTATION:
            if mode not in BRIS_DE_GLACE_MODES:
                return self._refuse("URG-01", MSG_BTG_MODE, "DENIED_EMERGENCY_MODE")
            if len((reason or "").strip()) < BRIS_DE_GLACE_MIN_REASON:
                return self._refuse(
                    "URG-02", MSG_BTG_REASON.format(n=BRIS_DE_GLACE_MIN_REASON), "DENIED_EMERGENCY_REASON"
                )
            if dmp is not None and dmp.emergency_opposed:
                return self._refuse("URG-01", MSG_BTG_OPPOSED, "DENIED_EMERGENCY_OPT_OUT")
            if dmp is not None and dmp.blocked and not BLOCKED_PS_MAY_BREAK_GLASS:
                return self._refuse("PAT-01", MSG_BTG_BLOCKED, "DENIED_BLOCKED")
        return None

    def _establishment(self, *, action: Action, mode: AuthMode, background: bool) -> Decision | None:
        if action in CONSULTATION or action is Action.CONSENT:
            if background:
                return self._refuse("AUTH-03", MSG_BACKGROUND_CONSULT, "DENIED_AUTH")
            if mode not in CONSULTATION_MODES:
                return self._refuse("AUTH-03", MSG_AIR_CONSULT, "DENIED_AUTH")
        return None

    def _dmp_state(self, *, action: Action, dmp: DmpState | None) -> Decision | None:
        if dmp is None or action is Action.STATUS:
            return None
        if not dmp.active:
            return self._refuse("PAT-06", MSG_NO_DMP, "DMP_ABSENT")
        return None

    def _authorisation(
        self, *, action: Action, dmp: DmpState | None, access_mode: AccessMode
    ) -> Decision | None:
        if dmp is None or access_mode is not AccessMode.NORMAL:
            return None  # emergency modes skip the authorisation check (dmp-protocol §7.1)
        if action in (Action.SEARCH, Action.RETRIEVE, Action.CONSENT) and dmp.blocked:
            return self._refuse("PAT-01", MSG_BLOCKED, "DENIED_BLOCKED")
        if action in (Action.SEARCH, Action.RETRIEVE):
            if dmp.authorised is True:
                return None
            if dmp.is_medecin_traitant and MEDECIN_TRAITANT_IMPLIES_AUTHORISATION:
                return None
            return self._refuse(
                "ACC-03", MSG_NEED_CONSENT, "NEED_CONSENT", needs_consent=True, notice=NOTICE_CONSENT
            )
        return None

    def _document_type(
        self,
        *,
        action: Action,
        identity: ProfessionalIdentity,
        type_code: str | None,
        dmp: DmpState | None,
        access_mode: AccessMode,
    ) -> Decision | None:
        if not type_code:
            return None
        if action is Action.DEPOSIT:
            if not is_non_ps(identity) and type_code.upper().startswith(NOT_PS_AUTHORED_PREFIXES):
                return self._refuse("DEP-02", MSG_NOT_PS_AUTHORED.format(type_code=type_code), "DENIED_TYPE")
            answer = self.matrix_answer(identity, type_code, action="write")
            if answer.allowed is False and (answer.confirmed or PREBLOCK_INFERRED_MATRIX_ROWS):
                return self._refuse("HAB-01", answer.sentence or MSG_MATRIX_WRITE, "DENIED_MATRIX")
        elif action is Action.RETRIEVE:
            role = _matrix_role(dmp, access_mode)
            answer = self.matrix_answer(identity, type_code, action="read", role=role)
            if answer.allowed is False and (answer.confirmed or PREBLOCK_INFERRED_MATRIX_ROWS):
                return self._refuse("HAB-03", _join(MSG_MATRIX_READ, answer.sentence), "DENIED_MATRIX")
        return None

    def _allowed(
        self,
        action: Action,
        identity: ProfessionalIdentity,
        dmp: DmpState | None,
        access_mode: AccessMode,
        type_code: str | None,
    ) -> Decision:
        # HAB-03: a refusal by an INFERRED matrix row does not block; it travels as a notice.
        notice = ""
        if type_code and action in (Action.DEPOSIT, Action.RETRIEVE):
            write = action is Action.DEPOSIT
            role = "" if write else _matrix_role(dmp, access_mode)
            notice = self.matrix_notice(identity, type_code, write=write, role=role)
        if access_mode is AccessMode.BRIS_DE_GLACE and action in CONSULTATION:
            return Decision(True, "URG-04", "Accès en urgence autorisé.", notice_fr=_join(NOTICE_BTG, notice))
        if access_mode is AccessMode.CENTRE_15:
            return Decision(
                True, "URG-06", "Accès en mode régulation autorisé.", notice_fr=_join(NOTICE_C15, notice)
            )
        if action is Action.DEPOSIT:
            return Decision(True, "ACC-07", MSG_ALLOWED, notice_fr=notice)
        if action is Action.CONSENT:
            return Decision(True, "ACC-03", MSG_ALLOWED)
        if action in (Action.SEARCH, Action.RETRIEVE):
            if dmp is None:
                return Decision(True, "GEN-01", MSG_DMP_DECIDES)
            if dmp.authorised is not True and dmp.is_medecin_traitant:
                return Decision(True, "MT-01", MSG_ALLOWED, notice_fr=notice)
            return Decision(True, "ACC-02", MSG_ALLOWED, notice_fr=notice)
        if action is Action.STATUS:
            return Decision(True, "ACC-03", MSG_ALLOWED)
        return Decision(True, "GEN-01", MSG_DMP_DECIDES)

    # -- matrix helpers -------------------------------------------------------------------------
    def matrix_answer(
        self, identity: ProfessionalIdentity, type_code: str, *, action: str = "read", role: str = ""
    ) -> MatrixAnswer:
        """What the habilitation matrix says for this professional and type (never raises)."""
        matrix = self._matrix
        if matrix is None:
            return MatrixAnswer(None, False, "")
        prof, spec = identity.profession_code, identity.specialty_code
        key = (prof, spec, type_code, action, role)
        cached = self._answer_cache.get(key)
        if cached is None:
            if len(self._answer_cache) >= MATRIX_ANSWER_CACHE_MAX:
                self._answer_cache.clear()
            cached = self._matrix_answer(matrix, prof, spec, type_code, action, role)
            self._answer_cache[key] = cached
        return cached

    @staticmethod
    def _matrix_answer(
        matrix: object, prof: str, spec: str, type_code: str, action: str, role: str
    ) -> MatrixAnswer:
        try:
            decision = matrix.decide(prof, spec, type_code, role=role)  # type: ignore[attr-defined]
        except Exception:  # unknown code or matrix error: let the DMP decide (GEN-04)
            return MatrixAnswer(None, False, "")
        allowed = bool(getattr(decision, "write" if action == "write" else "read", False))
        rule = getattr(decision, "rule", None)
        status = str(getattr(rule, "status", "") or "")
        confirmed = f"{action}=CONFIRMED" in status.replace(" ", "")
        sentence = ""
        if not allowed:
            try:
                sentence = str(
                    matrix.explain(prof, spec, type_code, action=action, role=role) or ""  # type: ignore[attr-defined]
                )
            except Exception:
                sentence = ""
        return MatrixAnswer(allowed, confirmed, sentence)

    def matrix_notice(
        self, identity: ProfessionalIdentity, type_code: str, *, write: bool = False, role: str = ""
    ) -> str:
        """French explanation when the matrix says no for this type (whatever the row's confidence);
        "" when it allows or does not know. For the UI to explain a document the DMP did not return."""
        answer = self.matrix_answer(identity, type_code, action="write" if write else "read", role=role)
        if answer.allowed is not False:
            return ""
        return answer.sentence or (MSG_MATRIX_WRITE if write else MSG_MATRIX_READ)


def _matrix_role(dmp: DmpState | None, access_mode: AccessMode) -> str:
    """GEN-04: role rows apply only when the role is established (centre 15, DMP médecin traitant)."""
    if access_mode is AccessMode.CENTRE_15:
        return "REGULATEUR"
    if dmp is not None and dmp.is_medecin_traitant:
        return "MEDECIN_TRAITANT"
    return ""


def _plural(identity: ProfessionalIdentity) -> str:
    try:
        from cda.habilitations import PROFESSION_PLURALS
    except ImportError:  # pragma: no cover
        PROFESSION_PLURALS = {}
    label = identity.profession_label or identity.profession_code
    return PROFESSION_PLURALS.get(identity.profession_code, f"Les professionnels ({label})")


def _ins_problem(patient: PatientRef) -> str:
    """The CDA library's INS check (format + NIR key); "" when fine or when the library is absent."""
    return _ins_problem_of(patient.ins, patient.oid)


@functools.lru_cache(maxsize=1024)
def _ins_problem_of(ins: str, oid: str) -> str:
    # a pure function of the two strings (format + key): asked at every policy decision, computed once
    try:
        from cda.errors import CdaError
        from cda.ins import check_ins
    except ImportError:  # pragma: no cover
        return ""
    try:
        check_ins(ins, oid)
    except CdaError as exc:
        return exc.message_fr
    return ""


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _dmp_types() -> list[tuple[str, str, str]]:
    """(type code, class code, class label) of the DMP-accepted types, from ``cda.valuesets``."""
    try:
        from cda import valuesets
    except ImportError:  # pragma: no cover
        return []
    table = valuesets.document_types()
    return [(c, table[c].class_code, table[c].class_label) for c in valuesets.dmp_type_codes()]


__all__ = [
    "BRIS_DE_GLACE_MIN_REASON",
    "AccessMode",
    "AccessPolicy",
    "Action",
    "Decision",
    "DmpState",
    "PatientRef",
]
