"""The real identity source of the window: ``ps_agent.identities.IdentityDesk`` (INSi by traits, the Vitale
card read → beneficiary chosen → INSi), « Valider l'identité » through ``desk.validate`` and the DMP opened
only through ``desk.open_patient`` (a qualified identity; refused before anything reaches the DMP
otherwise).

One desk per card session, built lazily by ``desk_factory(session)`` on the worker thread and closed when
the session changes. Every method here runs on a worker thread (never touches a widget)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ps_agent.errors import PsAgentError
from ui.labels import IdentityStatus
from ui.patient import PatientIdentity

if TYPE_CHECKING:  # the identity core is imported on the worker when first used (window start-up)
    from ps_agent.identity.records import LocalIdentity

# The window's high-trust documents (labels.HIGH_TRUST_DOCUMENTS) → the records' document keys
# (ps_agent.identity.records.HIGH_TRUST_DOCUMENTS).
DOCUMENT_KEYS: dict[str, str] = {
    "Carte nationale d'identité": "cni",
    "Passeport": "passeport",
    "Titre de séjour": "titre-sejour",
    "Livret de famille (mineur, avec la pièce d'un parent)": "acte-naissance",
    "Extrait d'acte de naissance (mineur, avec la pièce d'un parent)": "acte-naissance",
}

SOURCE_LABELS = {"traits": "INSi (traits)", "vitale": "INSi (carte Vitale)", "manuel": "saisie manuelle",
                 "logiciel": "logiciel métier"}  # fmt: skip


class IdentityNotFound(PsAgentError):
    """INSi found no INS (CR 01 / 02): the French message of the answer."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr, code="insi_not_found")


class InsMismatch(PsAgentError):
    """The INS given (practice software, typed) differs from the one INSi returns for these traits."""

    def __init__(self, given: str, insi: str) -> None:
        super().__init__(
            f"L'INS transmis ({given}) n'est pas celui que l'INSi renvoie pour ces traits ({insi}) : le "
            "dossier n'est pas ouvert ; vérifiez l'identité du patient dans le logiciel métier.",
            code="ins_mismatch",
        )


@dataclass(frozen=True)
class Beneficiary:
    """One line of the Vitale card as the chooser shows it (numbered from 1)."""

    number: int
    label: str


def identity_of(ident: LocalIdentity) -> PatientIdentity:
    """The window's ``PatientIdentity`` of a desk record (status, INS, strict traits, record id)."""
    ins = ident.ins
    return PatientIdentity(
        ins=ins.value if ins is not None else "",
        oid=ins.oid if ins is not None else "",
        status=IdentityStatus(ident.status.value),
        birth_family_name=ident.birth_name,
        given_names=ident.first_names,
        birth_date=ident.birth_date,
        sex=ident.sex,
        birth_place_code=ident.birth_place,
        source=SOURCE_LABELS.get(ident.source, ident.source),
        validated_with=ident.document.label if ident.document is not None else "",
        record_id=ident.id,
    )


class DeskSource:
    """``IdentitySource`` over ``IdentityDesk``. ``desk_factory(session)`` builds the desk of a session
    (``lambda s: IdentityDesk(s, insi=InsiSettings(...))``)."""

    name = "INSi"

    def __init__(self, desk_factory: Callable[[Any], Any]) -> None:
        self.desk_factory = desk_factory
        self._lock = threading.Lock()
        self._desk: Any = None

    def desk(self, session: Any) -> Any:
        with self._lock:
            if self._desk is None or self._desk.session is not session or self._desk.closed:
                if self._desk is not None:
                    self._desk.close()
                self._desk = self.desk_factory(session)
            return self._desk

    def close(self) -> None:
        with self._lock:
            if self._desk is not None:
                self._desk.close()
                self._desk = None

    # ------------------------------------------------------------------ the IdentitySource seam
    def find(self, typed: PatientIdentity, ctx: Any) -> PatientIdentity:  # pragma: no cover - needs session
        raise RuntimeError("DeskSource.find_for(session, …) is the entry point")

    def find_for(self, session: Any, typed: PatientIdentity, ctx: Any) -> PatientIdentity:
        """WS_INS2 by the typed strict traits (a typed INS is never trusted: INSi answers)."""
        from ps_agent.identity.model import TraitsQuery

        query = TraitsQuery(
            typed.birth_family_name,
            tuple(typed.given_names.split()),
            typed.sex,
            typed.birth_date,
            typed.birth_place_code or None,
        )
        outcome = self.desk(session).search_traits(query, ctx=ctx)
        if outcome.identity is None:
            raise IdentityNotFound(outcome.message_fr)
        found = identity_of(outcome.identity)
        if typed.ins and typed.ins != found.ins:  # the caller's INS is not the one INSi gives: never open
            raise InsMismatch(typed.ins, found.ins)
        return found

    # ------------------------------------------------------------------ the Vitale card
    def read_vitale(self, session: Any, ctx: Any) -> list[Beneficiary]:
        reading = self.desk(session).read_vitale(ctx=ctx)
        out = []
        for i, b in enumerate(reading.beneficiaries, 1):
            name = b.birth_name or b.usual_name
            holder = " (porteur)" if b.holder else ""
            out.append(Beneficiary(i, f"{i}. {name} {b.first_name} — né(e) le {b.birth_date}{holder}"))
        return out

    def search_vitale(self, session: Any, number: int, ctx: Any) -> PatientIdentity:
        desk = self.desk(session)
        desk.choose(number)
        outcome = desk.search_vitale(ctx=ctx)
        if outcome.identity is None:
            raise IdentityNotFound(outcome.message_fr)
        return identity_of(outcome.identity)

    # ------------------------------------------------------------------ validation and the DMP
    def validate(self, session: Any, identity: PatientIdentity, document: str, ctx: Any) -> PatientIdentity:
        if identity.record_id is None:
            raise ValueError("identity without a desk record")
        key = DOCUMENT_KEYS.get(document, document)
        return identity_of(self.desk(session).validate(identity.record_id, key, ctx=ctx))

    def open_handle(self, session: Any, identity: PatientIdentity, ctx: Any) -> Any:
        """The DMP handle. A qualified identity: only through ``desk.open_patient`` (re-checked, refused
        with ``IdentityNotQualified`` otherwise). A non-qualified one: the session's handle of its
        non-qualified reference, on which the window calls nothing (DMP actions disabled with the reason,
        and the core refuses a non-QUAL reference anyway)."""
        if identity.record_id is not None and identity.qualified:
            return self.desk(session).open_patient(identity.record_id, ctx=ctx)
        return session.patient(identity.ref)
