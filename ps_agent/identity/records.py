"""Local patient identities and their RNIV status PROV / RECUP / VALI / QUAL (insi.md §5.3–5.4).

One SQLite file in the agent's data folder (``identities.sqlite3``, file 0600, folder 0700). Each identity
keeps its strict traits, the INS (matricule + key + OID) and history as INSi returned them, the INSi
answer envelope it came from (raw bytes), the identity document checked (type, high/low trust, by whom,
when) and every status change. Transitions, exactly as insi.md §5.3 (and access-rules.md ID-02/ID-03):

====================================================  ===========================================
event                                                 transition
====================================================  ===========================================
INSi CR 00 accepted (traits replaced by INS traits)   new → RECUP, PROV → RECUP, VALI → QUAL
                                                      (VALI → RECUP when the INS traits differ from
                                                      the traits the document was checked against:
                                                      the document must be checked again) [I]
high-trust document checked                           PROV → VALI, RECUP → QUAL
manual change of a strict trait                       RECUP → PROV, QUAL → VALI (ID-03)
``douteux`` or ``fictif`` set                         → PROV, INS invalidated, INSi blocked
====================================================  ===========================================

A low-trust document (driving licence, carte Vitale…) is recorded nowhere and changes nothing: it is
refused with a French message. QUAL needs both an INSi answer and a high-trust document.

Every INSi call made through :meth:`IdentityRecords.search_traits` / :meth:`search_vitale` /
:meth:`verify_external` and every status change is journaled in the audit journal (actions
``insi.search``, ``insi.vitale``, ``insi.verify``, ``identity.status``, ``identity.create``,
``identity.edit``), inside the same transaction: a journal failure rolls the change back.

:meth:`IdentityRecords.qualified_ref` gives the DMP its ``PatientRef`` and refuses anything not QUAL
(ID-05 message). An identity handed over by the practice software (:meth:`import_external`) is re-checked
by INSi (:meth:`verify_external`, the interim WS_INS3 of the client) before its first use.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ps_agent.identity import traits as tr
from ps_agent.identity.errors import IdentityError, InsiInputError
from ps_agent.identity.model import (
    InsiResult,
    InsNumber,
    InsTraits,
    Sex,
    TraitsQuery,
    TraitsSearch,
    Verification,
    VerificationStatus,
    VitaleSelection,
)

if TYPE_CHECKING:
    from ps_agent.access.policy import PatientRef
    from ps_agent.audit.journal import AuditJournal
    from ps_agent.identity.insi import InsiClient

RECORDS_FILE = "identities.sqlite3"


class IdentityStatus(enum.StrEnum):
    """RNIV statuses (insi.md §5.3)."""

    PROV = "PROV"  # identité provisoire: no INSi, no document
    RECUP = "RECUP"  # identité récupérée: INSi, no high-trust document
    VALI = "VALI"  # identité validée: high-trust document, no INSi
    QUAL = "QUAL"  # identité qualifiée: INSi + high-trust document — the only one shareable


STATUS_LABELS = {
    IdentityStatus.PROV: "Identité provisoire",
    IdentityStatus.RECUP: "Identité récupérée",
    IdentityStatus.VALI: "Identité validée",
    IdentityStatus.QUAL: "Identité qualifiée",
}

# Identity documents (insi.md §5.3 "High-trust devices", access-rules.md ID-04; FR Core validation-mode
# codes in brackets). [I] the CLI names; the driving licence and the carte Vitale are NOT high-trust.
HIGH_TRUST_DOCUMENTS: dict[str, str] = {
    "passeport": "passeport",  # PA
    "cni": "carte nationale d'identité",  # CN
    "titre-sejour": "titre de séjour permanent",  # CS
    "e-cni": "carte d'identité électronique (identité numérique)",  # eCN
    "identite-numerique": "identité numérique La Poste",  # IN
    "apcv": "application carte Vitale (apCV)",  # AV
    "acte-naissance": "acte de naissance ou livret de famille avec la pièce d'un parent (mineur)",  # AN / LEP
    "acte-naissance-vitale": "acte de naissance avec carte Vitale à photo (résident d'EHPAD)",  # ANCV / LECV
}
LOW_TRUST_DOCUMENTS: dict[str, str] = {
    "permis": "permis de conduire",
    "carte-vitale": "carte Vitale",
    "carte-mutuelle": "carte de mutuelle",
    "autre": "autre document",
}
STRICT_TRAITS = ("birth_name", "first_names", "first_name", "sex", "birth_date", "birth_place")
# [I] VALI + INSi CR 00: QUAL only when the INS traits equal the traits the document was checked against
# (compared after the INSi normalisation); otherwise RECUP and the document must be checked again.
VALI_INSI_NEEDS_SAME_TRAITS = True

NOT_QUALIFIED_MESSAGE = (
    "Identité non qualifiée : envoi au DMP impossible. Qualifiez l'identité (INSi + pièce d'identité à "
    "haut niveau de confiance)."
)  # access-rules.md ID-05, verbatim


# ----------------------------------------------------------------------------------------- errors


class IdentityRecordError(IdentityError):
    """The identity records refused an operation (unknown id, bad document, forbidden transition)."""


class IdentityNotFound(IdentityRecordError):
    def __init__(self, identity_id: int) -> None:
        super().__init__(f"Identité locale n° {identity_id} introuvable.", code="identity_not_found")
        self.identity_id = identity_id


class IdentityNotQualified(IdentityRecordError):
    """ID-05 / INS-R02: no DMP call without a qualified identity (``rule_id`` ID-05)."""

    rule_id = "ID-05"

    def __init__(self, why: str = "") -> None:
        super().__init__(NOT_QUALIFIED_MESSAGE + (f" ({why})" if why else ""), code="DENIED_INS")
        self.why = why


class IdentityStoreError(IdentityRecordError):
    """The identity file cannot be opened or written."""


# ------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Actor:
    """Who acts (for the audit journal): the professional or the local user."""

    id_nat: str
    name: str = ""
    profession: str = ""
    auth_mode: str = ""
    structure_id: str = ""
    card_serial: str = ""

    @classmethod
    def from_identity(cls, identity: Any, auth_mode: str = "", card_serial: str = "") -> Actor:
        """From a ``ProfessionalIdentity`` (``ps_agent.auth.model``)."""
        activity = getattr(identity, "activity", None)
        return cls(
            id_nat=str(getattr(identity, "id_nat", "")),
            name=f"{getattr(identity, 'given_name', '')} {getattr(identity, 'family_name', '')}".strip(),
            profession=str(getattr(identity, "profession_code", "")),
            auth_mode=auth_mode,
            structure_id=str(getattr(activity, "structure_id", "")) if activity else "",
            card_serial=card_serial,
        )


@dataclass(frozen=True)
class IdentityDocument:
    kind: str  # key of HIGH_TRUST_DOCUMENTS / LOW_TRUST_DOCUMENTS
    high_trust: bool
    checked_by: str  # id_nat (+ name) of who checked it
    checked_at: str  # ISO UTC

    @property
    def label(self) -> str:
        return HIGH_TRUST_DOCUMENTS.get(self.kind) or LOW_TRUST_DOCUMENTS.get(self.kind, self.kind)


@dataclass(frozen=True)
class StatusChange:
    at: str
    from_status: str  # "" at creation
    to_status: str
    event: str  # "insi", "document", "edit", "attribute", "create", "import", "verify"
    by: str


@dataclass(frozen=True)
class LocalIdentity:
    """A patient's local identity (traits stored exactly as typed or as INSi returned them)."""

    id: int
    status: IdentityStatus
    birth_name: str
    first_names: str  # all birth first names, space separated
    sex: str
    birth_date: str  # YYYY-MM-DD (lunar allowed)
    birth_place: str = ""  # COG
    first_name: str = ""  # first given name (first word of the list unless INSi sent TIQ/Prenom)
    used_name: str = ""  # nom utilisé (kept apart from the INS traits, INS-R04)
    used_first_name: str = ""
    ins: InsNumber | None = None
    history: tuple[InsNumber, ...] = ()
    source: str = "manuel"  # manuel | traits | vitale | logiciel
    insi_operation: str = ""
    insi_message_id: str = ""
    insi_received_at: str = ""
    document: IdentityDocument | None = None
    homonyme: bool = False
    douteux: bool = False
    fictif: bool = False
    external_verified: bool = True  # False for an identity from the practice software not yet re-checked
    created_at: str = ""
    updated_at: str = ""
    changes: tuple[StatusChange, ...] = field(default=(), compare=False)

    @property
    def qualified(self) -> bool:
        return (
            self.status is IdentityStatus.QUAL
            and self.ins is not None
            and not (self.douteux or self.fictif)
            and self.external_verified
        )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def traits(self) -> InsTraits:
        return InsTraits(
            self.birth_name, self.first_names, self.sex, self.birth_date, self.birth_place, self.first_name
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "statut": self.status.value,
            "libelle_statut": self.status_label,
            "nom_naissance": self.birth_name,
            "prenoms": self.first_names,
            "premier_prenom": self.first_name,
            "sexe": self.sex,
            "date_naissance": self.birth_date,
            "lieu_naissance": self.birth_place,
            "nom_utilise": self.used_name,
            "prenom_utilise": self.used_first_name,
            "ins": self.ins.value if self.ins else "",
            "oid": self.ins.oid if self.ins else "",
            "historique_ins": [{"ins": h.value, "oid": h.oid} for h in self.history],
            "source": self.source,
            "insi": {
                "operation": self.insi_operation,
                "message_id": self.insi_message_id,
                "recu_le": self.insi_received_at,
            },
            "piece": None
            if self.document is None
            else {
                "type": self.document.kind,
                "libelle": self.document.label,
                "haut_niveau_de_confiance": self.document.high_trust,
                "verifiee_par": self.document.checked_by,
                "verifiee_le": self.document.checked_at,
            },
            "homonyme": self.homonyme,
            "douteux": self.douteux,
            "fictif": self.fictif,
            "verifiee_par_insi": self.external_verified,
            "qualifiee": self.qualified,
            "changements": [c.__dict__ for c in self.changes],
        }


# ------------------------------------------------------------------------------------------ store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL CHECK (status IN ('PROV','RECUP','VALI','QUAL')),
    birth_name TEXT NOT NULL, first_names TEXT NOT NULL, first_name TEXT NOT NULL, sex TEXT NOT NULL,
    birth_date TEXT NOT NULL, birth_place TEXT NOT NULL,
    used_name TEXT NOT NULL DEFAULT '', used_first_name TEXT NOT NULL DEFAULT '',
    ins_matricule TEXT NOT NULL DEFAULT '', ins_key TEXT NOT NULL DEFAULT '',
    ins_oid TEXT NOT NULL DEFAULT '',
    ins_type TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    insi_operation TEXT NOT NULL DEFAULT '', insi_message_id TEXT NOT NULL DEFAULT '',
    insi_received_at TEXT NOT NULL DEFAULT '', insi_answer BLOB,
    doc_kind TEXT NOT NULL DEFAULT '', doc_high_trust INTEGER NOT NULL DEFAULT 0,
    doc_checked_by TEXT NOT NULL DEFAULT '', doc_checked_at TEXT NOT NULL DEFAULT '',
    doc_traits TEXT NOT NULL DEFAULT '',
    homonyme INTEGER NOT NULL DEFAULT 0, douteux INTEGER NOT NULL DEFAULT 0,
    fictif INTEGER NOT NULL DEFAULT 0,
    external_verified INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ins_history (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    matricule TEXT NOT NULL, key TEXT NOT NULL, oid TEXT NOT NULL, type_matricule TEXT NOT NULL,
    date_start TEXT NOT NULL, date_end TEXT NOT NULL, recorded_at TEXT NOT NULL,
    UNIQUE (identity_id, matricule, key, oid)
);
CREATE TABLE IF NOT EXISTS status_changes (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    at TEXT NOT NULL, from_status TEXT NOT NULL, to_status TEXT NOT NULL, event TEXT NOT NULL,
    by TEXT NOT NULL
);
"""


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _norm_traits(t: InsTraits) -> tuple[str, ...]:
    """Traits compared as INSi compares them (uppercase, no diacritics); '' when not normalisable."""

    def n(v: str, f: str) -> str:
        try:
            return tr.normalise_name(v, f) if v else ""
        except InsiInputError:
            return v

    return (n(t.birth_name, "birth_name"), n(t.first_names, "first_name"), t.sex, t.birth_date, t.birth_place)


class IdentityRecords:
    """The identity store. Thread-safe; ``journal`` receives every INSi call and status change."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        journal: AuditJournal | None = None,
        actor: Actor | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        self.journal = journal
        self.actor = actor or Actor("")
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # patient identities inside: owner-only (os.open is portable; the mode is ignored on Windows,
            # where the per-user data folder protects the file)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise IdentityStoreError(
                f"Impossible d'ouvrir le fichier des identités {self.path} : {exc}", code="identity_store"
            ) from exc

    @classmethod
    def open(cls, home: str | os.PathLike[str], **kw: Any) -> IdentityRecords:
        """The store of the agent's data folder ``home``."""
        return cls(Path(home) / RECORDS_FILE, **kw)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> IdentityRecords:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------- plumbing
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def _by(self, actor: Actor | None) -> str:
        a = actor or self.actor
        return f"{a.id_nat} {a.name}".strip()

    def _audit(
        self,
        action: str,
        outcome: str,
        *,
        actor: Actor | None = None,
        ins: InsNumber | None = None,
        transaction: str = "",
        error_code: str = "",
        detail: str = "",
        rule_id: str = "",
    ) -> None:
        if self.journal is None:
            return
        from ps_agent.audit.journal import AuditEvent

        a = actor or self.actor
        self.journal.append(
            AuditEvent(
                action=action,
                outcome=outcome,
                actor_id_nat=a.id_nat,
                actor_name=a.name,
                actor_profession=a.profession,
                auth_mode=a.auth_mode,
                card_serial=a.card_serial,
                structure_id=a.structure_id,
                patient_ins=f"{ins.value}^{ins.oid}" if ins else "",
                transaction=transaction,
                error_code=error_code,
                detail=detail,
                rule_id=rule_id,
            )
        )

    def _change(
        self,
        conn: sqlite3.Connection,
        identity: LocalIdentity,
        to: IdentityStatus,
        event: str,
        actor: Actor | None,
        now: str,
        *,
        ins: InsNumber | None = None,
        new: bool = False,
    ) -> None:
        before = "" if new else identity.status.value
        conn.execute(
            "INSERT INTO status_changes VALUES (?,?,?,?,?,?)",
            (identity.id, now, before, to.value, event, self._by(actor)),
        )
        if before != to.value:
            self._audit(
                "identity.status",
                "success",
                actor=actor,
                ins=ins or identity.ins,
                detail=f"identité {identity.id} : {before or '∅'} → {to.value} ({event})",
                rule_id="ID-02",
            )

    # ------------------------------------------------------------------------------- reading
    def get(self, identity_id: int) -> LocalIdentity:
        with self._lock:
            row = self._conn.execute("SELECT * FROM identities WHERE id = ?", (identity_id,)).fetchone()
            if row is None:
                raise IdentityNotFound(identity_id)
            cols = [d[0] for d in self._conn.execute("SELECT * FROM identities LIMIT 0").description]
            data = dict(zip(cols, row, strict=True))
            hist = self._conn.execute(
                "SELECT matricule, key, oid, type_matricule, date_start, date_end FROM ins_history "
                "WHERE identity_id = ? ORDER BY rowid",
                (identity_id,),
            ).fetchall()
            changes = self._conn.execute(
                "SELECT at, from_status, to_status, event, by FROM status_changes WHERE identity_id = ? "
                "ORDER BY rowid",
                (identity_id,),
            ).fetchall()
        ins = (
            InsNumber(data["ins_matricule"], data["ins_key"], data["ins_oid"], data["ins_type"])
            if data["ins_matricule"]
            else None
        )
        doc = (
            IdentityDocument(
                data["doc_kind"], bool(data["doc_high_trust"]), data["doc_checked_by"], data["doc_checked_at"]
            )
            if data["doc_kind"]
            else None
        )
        return LocalIdentity(
            id=data["id"],
            status=IdentityStatus(data["status"]),
            birth_name=data["birth_name"],
            first_names=data["first_names"],
            first_name=data["first_name"],
            sex=data["sex"],
            birth_date=data["birth_date"],
            birth_place=data["birth_place"],
            used_name=data["used_name"],
            used_first_name=data["used_first_name"],
            ins=ins,
            history=tuple(InsNumber(*h) for h in hist),
            source=data["source"],
            insi_operation=data["insi_operation"],
            insi_message_id=data["insi_message_id"],
            insi_received_at=data["insi_received_at"],
            document=doc,
            homonyme=bool(data["homonyme"]),
            douteux=bool(data["douteux"]),
            fictif=bool(data["fictif"]),
            external_verified=bool(data["external_verified"]),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            changes=tuple(StatusChange(*c) for c in changes),
        )

    def insi_answer(self, identity_id: int) -> bytes:
        """The INSi answer envelope the identity's INS came from (raw, as received)."""
        self.get(identity_id)
        with self._lock:
            row = self._conn.execute(
                "SELECT insi_answer FROM identities WHERE id = ?", (identity_id,)
            ).fetchone()
        return bytes(row[0] or b"")

    def list(self) -> list[LocalIdentity]:
        with self._lock:
            ids = [r[0] for r in self._conn.execute("SELECT id FROM identities ORDER BY id")]
        return [self.get(i) for i in ids]

    # ------------------------------------------------------------------------------- checks
    @staticmethod
    def check_traits(
        birth_name: str, first_names: str, sex: str, birth_date: str, birth_place: str = ""
    ) -> None:
        """The traits an identity may hold (insi.md §5.2); raises ``InsiInputError`` naming the field."""
        tr.name_for_request(birth_name, "birth_name")
        names = tr.split_first_names(first_names)
        if not names:
            raise InsiInputError(
                "Au moins un prénom de naissance est obligatoire.", code="traits_missing", field="first_name"
            )
        for n in names:
            tr.name_for_request(n, "first_name")
        tr.check_sex(sex)
        tr.check_date(birth_date)
        if birth_place:
            tr.check_cog(birth_place)

    # ------------------------------------------------------------------------------- writing
    def _insert(self, conn: sqlite3.Connection, ident: LocalIdentity, now: str) -> int:
        cur = conn.execute(
            "INSERT INTO identities (status, birth_name, first_names, first_name, sex, birth_date,"
            " birth_place, used_name, used_first_name, source, external_verified, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ident.status.value,
                ident.birth_name,
                ident.first_names,
                ident.first_name,
                ident.sex,
                ident.birth_date,
                ident.birth_place,
                ident.used_name,
                ident.used_first_name,
                ident.source,
                int(ident.external_verified),
                now,
                now,
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def create(
        self,
        birth_name: str,
        first_names: str,
        sex: str,
        birth_date: str,
        birth_place: str = "",
        *,
        used_name: str = "",
        used_first_name: str = "",
        actor: Actor | None = None,
    ) -> LocalIdentity:
        """A provisional identity typed by the user (PROV)."""
        self.check_traits(birth_name, first_names, sex, birth_date, birth_place)
        now = _iso(self._clock())
        ident = LocalIdentity(
            0,
            IdentityStatus.PROV,
            birth_name.strip(),
            " ".join(first_names.split()),
            sex.strip().upper(),
            birth_date.strip(),
            birth_place.strip().upper(),
            first_name=first_names.split()[0],
            used_name=used_name.strip(),
            used_first_name=used_first_name.strip(),
        )
        with self._tx() as conn:
            new_id = self._insert(conn, ident, now)
            ident = replace(ident, id=new_id)
            self._audit("identity.create", "success", actor=actor, detail=f"identité {new_id} (PROV)")
            conn.execute(
                "INSERT INTO status_changes VALUES (?,?,?,?,?,?)",
                (new_id, now, "", "PROV", "create", self._by(actor)),
            )
        return self.get(new_id)

    def _store_ins(
        self, conn: sqlite3.Connection, identity_id: int, result: InsiResult, now: str
    ) -> InsNumber:
        assert result.identity is not None
        got = result.identity
        t = got.traits
        old = conn.execute(
            "SELECT ins_matricule, ins_key, ins_oid, ins_type FROM identities WHERE id = ?", (identity_id,)
        ).fetchone()
        conn.execute(
            "UPDATE identities SET birth_name=?, first_names=?, first_name=?, sex=?, birth_date=?,"
            " birth_place=?, ins_matricule=?, ins_key=?, ins_oid=?, ins_type=?, insi_operation=?,"
            " insi_message_id=?, insi_received_at=?, insi_answer=?, updated_at=? WHERE id=?",
            (
                t.birth_name,
                t.first_names,
                t.first_given_name,
                t.sex,
                t.birth_date,
                t.birth_place,
                got.ins.matricule,
                got.ins.key,
                got.ins.oid,
                got.ins.type_matricule,
                result.operation.name,
                result.message_id,
                _iso(result.received_at),
                result.raw,
                now,
                identity_id,
            ),
        )
        previous = (
            [InsNumber(*old)]
            if old and old[0] and (old[0], old[2]) != (got.ins.matricule, got.ins.oid)
            else []
        )
        for h in (*previous, got.ins, *got.history):  # INS-R05: keep every INS with its dates
            conn.execute(
                "INSERT OR IGNORE INTO ins_history VALUES (?,?,?,?,?,?,?,?)",
                (identity_id, h.matricule, h.key, h.oid, h.type_matricule, h.date_start, h.date_end, now),
            )
        return got.ins

    def record_insi(
        self,
        result: InsiResult,
        *,
        identity_id: int | None = None,
        source: str = "traits",
        actor: Actor | None = None,
        used_name: str = "",
        used_first_name: str = "",
    ) -> LocalIdentity:
        """Accept a CR 00 answer: the strict traits become the INS traits (INS-R04). New identity → RECUP;
        PROV → RECUP; VALI → QUAL (RECUP when the traits changed [I]); RECUP/QUAL: INS refreshed."""
        if not result.found or result.identity is None:
            raise IdentityRecordError(
                "Aucune identité INS n'a été trouvée : rien n'est enregistré (l'identité reste locale).",
                code="identity_no_ins",
            )
        now = _iso(self._clock())
        got = result.identity
        with self._tx() as conn:
            if identity_id is None:
                t = got.traits
                base = LocalIdentity(
                    0,
                    IdentityStatus.PROV,
                    t.birth_name,
                    t.first_names,
                    t.sex,
                    t.birth_date,
                    t.birth_place,
                    first_name=t.first_given_name,
                    used_name=used_name,
                    used_first_name=used_first_name,
                    source=source,
                )
                identity_id = self._insert(conn, base, now)
                current = replace(base, id=identity_id)
                before_traits = None
            else:
                current = self.get(identity_id)
                if current.douteux or current.fictif:
                    raise IdentityRecordError(
                        "Identité douteuse ou fictive : les appels INSi sont bloqués pour elle (INS-R07).",
                        code="identity_insi_blocked",
                    )
                before_traits = current.traits
            self._store_ins(conn, identity_id, result, now)
            status = current.status
            if status is IdentityStatus.PROV:
                to = IdentityStatus.RECUP
            elif status is IdentityStatus.VALI:
                same = before_traits is not None and _norm_traits(before_traits) == _norm_traits(got.traits)
                to = IdentityStatus.QUAL if same or not VALI_INSI_NEEDS_SAME_TRAITS else IdentityStatus.RECUP
                if to is IdentityStatus.RECUP:  # the document was checked against other traits
                    conn.execute(
                        "UPDATE identities SET doc_kind='', doc_high_trust=0, doc_checked_by='', "
                        "doc_checked_at='' WHERE id=?",
                        (identity_id,),
                    )
            else:
                to = status
            conn.execute("UPDATE identities SET status=? WHERE id=?", (to.value, identity_id))
            self._change(conn, current, to, "insi", actor, now, ins=got.ins, new=before_traits is None)
        return self.get(identity_id)

    def validate(self, identity_id: int, document: str, *, actor: Actor | None = None) -> LocalIdentity:
        """A document was checked against the identity: high-trust → PROV → VALI, RECUP → QUAL.
        A low-trust or unknown document is refused and nothing changes."""
        kind = document.strip().lower()
        if kind in LOW_TRUST_DOCUMENTS:
            raise IdentityRecordError(
                f"Le document « {LOW_TRUST_DOCUMENTS[kind]} » n'est pas une pièce à haut niveau de "
                "confiance : l'identité ne peut pas être validée avec lui (passeport, carte nationale "
                "d'identité, titre de séjour… requis).",
                code="identity_low_trust",
            )
        if kind not in HIGH_TRUST_DOCUMENTS:
            raise IdentityRecordError(
                f"Type de pièce d'identité inconnu : « {document} ». Types admis : "
                f"{', '.join(HIGH_TRUST_DOCUMENTS)}.",
                code="identity_document",
            )
        now = _iso(self._clock())
        with self._tx() as conn:
            current = self.get(identity_id)
            if current.fictif:
                raise IdentityRecordError(
                    "Identité fictive : elle ne peut pas être validée.", code="identity_fictive"
                )
            to = {
                IdentityStatus.PROV: IdentityStatus.VALI,
                IdentityStatus.RECUP: IdentityStatus.QUAL,
            }.get(current.status, current.status)
            conn.execute(
                "UPDATE identities SET doc_kind=?, doc_high_trust=1, doc_checked_by=?, doc_checked_at=?, "
                "status=?, updated_at=? WHERE id=?",
                (kind, self._by(actor), now, to.value, now, identity_id),
            )
            self._change(conn, current, to, "document", actor, now)
        return self.get(identity_id)

    def edit_traits(self, identity_id: int, *, actor: Actor | None = None, **changes: str) -> LocalIdentity:
        """Manual edit. A changed strict trait drops the status (RECUP → PROV, QUAL → VALI; ID-03): the
        INS is no longer shareable. ``used_name`` / ``used_first_name`` change nothing."""
        allowed = {*STRICT_TRAITS, "used_name", "used_first_name"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise IdentityRecordError(f"Champ(s) inconnu(s) : {', '.join(unknown)}.", code="identity_field")
        current = self.get(identity_id)
        new = replace(current, **{k: v.strip() for k, v in changes.items()})  # type: ignore[arg-type]
        if "first_names" in changes and "first_name" not in changes:
            new = replace(new, first_name=new.first_names.split()[0] if new.first_names else "")
        self.check_traits(new.birth_name, new.first_names, new.sex, new.birth_date, new.birth_place)
        strict_changed = [k for k in STRICT_TRAITS if getattr(new, k) != getattr(current, k)]
        now = _iso(self._clock())
        to = current.status
        if strict_changed:
            to = {IdentityStatus.RECUP: IdentityStatus.PROV, IdentityStatus.QUAL: IdentityStatus.VALI}.get(
                current.status, current.status
            )
        with self._tx() as conn:
            conn.execute(
                "UPDATE identities SET birth_name=?, first_names=?, first_name=?, sex=?, birth_date=?, "
                "birth_place=?, used_name=?, used_first_name=?, status=?, updated_at=? WHERE id=?",
                (
                    new.birth_name,
                    new.first_names,
                    new.first_name,
                    new.sex.upper(),
                    new.birth_date,
                    new.birth_place.upper(),
                    new.used_name,
                    new.used_first_name,
                    to.value,
                    now,
                    identity_id,
                ),
            )
            self._audit(
                "identity.edit",
                "success",
                actor=actor,
                ins=current.ins,
                detail=f"identité {identity_id} : {', '.join(strict_changed) or 'traits d usage'} modifié(s)",
                rule_id="ID-03" if strict_changed else "",
            )
            if to is not current.status:
                self._change(conn, current, to, "edit", actor, now)
        return self.get(identity_id)

    def set_attributes(
        self,
        identity_id: int,
        *,
        homonyme: bool | None = None,
        douteux: bool | None = None,
        fictif: bool | None = None,
        actor: Actor | None = None,
    ) -> LocalIdentity:
        """``douteux``/``fictif`` force PROV and invalidate the INS (insi.md §5.3, EXI ID 26); only
        ``douteux`` + ``homonyme`` may be combined (EXI ID 24)."""
        current = self.get(identity_id)
        h = current.homonyme if homonyme is None else homonyme
        d = current.douteux if douteux is None else douteux
        f = current.fictif if fictif is None else fictif
        if f and (d or h):
            raise IdentityRecordError(
                "Une identité fictive ne peut pas être aussi douteuse ou homonyme.",
                code="identity_attributes",
            )
        now = _iso(self._clock())
        with self._tx() as conn:
            to = IdentityStatus.PROV if (d or f) else current.status
            conn.execute(
                "UPDATE identities SET homonyme=?, douteux=?, fictif=?, status=?, updated_at=? WHERE id=?",
                (int(h), int(d), int(f), to.value, now, identity_id),
            )
            if d or f:
                conn.execute(
                    "UPDATE identities SET ins_matricule='', ins_key='', ins_oid='', ins_type='' WHERE id=?",
                    (identity_id,),
                )
            if to is not current.status:
                self._change(conn, current, to, "attribute", actor, now)
        return self.get(identity_id)

    # --------------------------------------------------------------------------- INSi, journaled
    def _insi_call(self, action: str, transaction: str, call: Callable[[], Any], actor: Actor | None) -> Any:
        try:
            return call()
        except IdentityError as exc:
            outcome = "refused" if isinstance(exc, InsiInputError) else "error"
            self._audit(action, outcome, actor=actor, transaction=transaction, error_code=exc.code or "",
                        detail=exc.message_fr[:200])  # fmt: skip
            raise

    def search_traits(
        self,
        insi: InsiClient,
        query: TraitsQuery,
        *,
        identity_id: int | None = None,
        actor: Actor | None = None,
    ) -> tuple[TraitsSearch, LocalIdentity | None]:
        """WS_INS2 (strategy of insi.md §3.1), journaled; CR 00 recorded (new identity RECUP, or the
        transition of ``identity_id``). CR 01/02 record nothing."""
        if identity_id is not None:
            self._refuse_blocked(identity_id)
        outcome = self._insi_call("insi.search", "WS_INS2", lambda: insi.find_by_traits(query), actor)
        result = outcome.result
        self._audit(
            "insi.search",
            "success" if result.found else "refused",
            actor=actor,
            ins=result.identity.ins if result.identity else None,
            transaction="WS_INS2",
            error_code="" if result.found else f"CR{result.code.value}",
            detail=f"{len(outcome.attempts)} appel(s), MessageID {result.message_id}",
        )
        if not result.found:
            return outcome, None
        return outcome, self.record_insi(result, identity_id=identity_id, source="traits", actor=actor)

    def search_vitale(
        self,
        insi: InsiClient,
        selection: VitaleSelection,
        *,
        confirm_card: Callable[[VitaleSelection], None] | None = None,
        identity_id: int | None = None,
        actor: Actor | None = None,
    ) -> tuple[InsiResult, LocalIdentity | None]:
        """WS_INS1 for the chosen beneficiary, journaled; CR 00 recorded as in :meth:`search_traits`."""
        if identity_id is not None:
            self._refuse_blocked(identity_id)
        result: InsiResult = self._insi_call(
            "insi.vitale",
            "WS_INS1",
            lambda: insi.search_with_vitale(selection, confirm_card=confirm_card),
            actor,
        )
        self._audit(
            "insi.vitale",
            "success" if result.found else "refused",
            actor=actor,
            ins=result.identity.ins if result.identity else None,
            transaction="WS_INS1",
            error_code="" if result.found else f"CR{result.code.value}",
            detail=f"MessageID {result.message_id}",
        )
        if not result.found:
            return result, None
        ben = selection.beneficiary
        return result, self.record_insi(
            result,
            identity_id=identity_id,
            source="vitale",
            actor=actor,
            used_name=ben.usual_name,
            used_first_name=ben.first_name,
        )

    def _refuse_blocked(self, identity_id: int) -> None:
        ident = self.get(identity_id)
        if ident.douteux or ident.fictif:
            raise IdentityRecordError(
                "Identité douteuse ou fictive : les appels INSi sont bloqués pour elle (INS-R07).",
                code="identity_insi_blocked",
            )

    # --------------------------------------------------------------------- practice software
    def import_external(
        self,
        ins: InsNumber,
        traits: InsTraits,
        *,
        status: str = "QUAL",
        document: str = "",
        actor: Actor | None = None,
    ) -> LocalIdentity:
        """An identity handed over by the practice software (INS + traits + its status). It is stored as
        *not yet re-checked*: :meth:`qualified_ref` refuses it until :meth:`verify_external` succeeds."""
        self.check_traits(traits.birth_name, traits.first_names, traits.sex, traits.birth_date,
                          traits.birth_place)  # fmt: skip
        try:
            claimed = IdentityStatus(status.strip().upper())
        except ValueError:
            raise IdentityRecordError(
                f"Statut d'identité inconnu : « {status} ».", code="identity_status"
            ) from None
        if claimed in (IdentityStatus.RECUP, IdentityStatus.QUAL) and not (
            len(ins.matricule) == 13 and ins.oid
        ):
            raise IdentityRecordError(
                "INS incomplet (matricule de 13 caractères et OID).", code="identity_ins"
            )
        kind = document.strip().lower()
        if claimed in (IdentityStatus.VALI, IdentityStatus.QUAL) and kind not in HIGH_TRUST_DOCUMENTS:
            raise IdentityRecordError(
                "Une identité validée ou qualifiée doit indiquer la pièce à haut niveau de confiance "
                f"vérifiée (types admis : {', '.join(HIGH_TRUST_DOCUMENTS)}).",
                code="identity_document",
            )
        now = _iso(self._clock())
        base = LocalIdentity(
            0,
            claimed,
            traits.birth_name,
            traits.first_names,
            traits.sex,
            traits.birth_date,
            traits.birth_place,
            first_name=traits.first_given_name,
            source="logiciel",
            external_verified=False,
        )
        with self._tx() as conn:
            new_id = self._insert(conn, base, now)
            conn.execute(
                "UPDATE identities SET ins_matricule=?, ins_key=?, ins_oid=?, ins_type=?, doc_kind=?, "
                "doc_high_trust=?, doc_checked_by=?, doc_checked_at=? WHERE id=?",
                (ins.matricule, ins.key, ins.oid, ins.type_matricule, kind, int(bool(kind)),
                 "logiciel métier" if kind else "", now if kind else "", new_id),
            )  # fmt: skip
            self._audit("identity.create", "success", actor=actor, ins=ins,
                        detail=f"identité {new_id} reçue du logiciel métier ({claimed.value}), à vérifier par l'INSi")  # fmt: skip  # noqa: E501
            conn.execute(
                "INSERT INTO status_changes VALUES (?,?,?,?,?,?)",
                (new_id, now, "", claimed.value, "import", self._by(actor)),
            )
        return self.get(new_id)

    def verify_external(
        self, identity_id: int, insi: InsiClient, *, actor: Actor | None = None
    ) -> tuple[Verification, LocalIdentity]:
        """Re-check an INS by INSi before its first use — the client's INTERIM WS_INS3 (a WS_INS2 search
        + comparison, insi.md §3.3). Valid → the identity becomes usable; otherwise its status drops to
        what it is without INSi (QUAL → VALI, RECUP → PROV) and the INS is not used."""
        current = self.get(identity_id)
        if current.ins is None:
            raise IdentityRecordError("Cette identité n'a pas d'INS à vérifier.", code="identity_no_ins")
        self._refuse_blocked(identity_id)
        ins = current.ins
        verification: Verification = self._insi_call(
            "insi.verify", "WS_INS3", lambda: insi.verify_ins(ins, current.traits), actor
        )
        now = _iso(self._clock())
        with self._tx() as conn:
            self._audit(
                "insi.verify",
                "success" if verification.valid else "refused",
                actor=actor,
                ins=current.ins,
                transaction="WS_INS3",
                error_code="" if verification.valid else verification.status.value,
                detail="vérification intérimaire (WS_INS2 + comparaison)",
            )
            if verification.valid:
                conn.execute(
                    "UPDATE identities SET external_verified=1, insi_operation=?, insi_message_id=?, "
                    "insi_received_at=?, insi_answer=?, updated_at=? WHERE id=?",
                    ("WS_INS3", verification.result.message_id, _iso(verification.result.received_at),
                     verification.result.raw, now, identity_id),
                )  # fmt: skip
                conn.execute(
                    "INSERT INTO status_changes VALUES (?,?,?,?,?,?)",
                    (identity_id, now, current.status.value, current.status.value, "verify", self._by(actor)),
                )
            else:
                to = {
                    IdentityStatus.QUAL: IdentityStatus.VALI,
                    IdentityStatus.RECUP: IdentityStatus.PROV,
                }.get(current.status, current.status)
                conn.execute(
                    "UPDATE identities SET status=?, updated_at=? WHERE id=?", (to.value, now, identity_id)
                )
                if to is not current.status:
                    self._change(conn, current, to, "verify", actor, now)
        return verification, self.get(identity_id)

    verify_ins = verify_external  # the name of the rules' "re-check by INSi before first use" (interim)

    # ----------------------------------------------------------------------------------- DMP
    def qualified_ref(self, identity_id: int) -> PatientRef:
        """The ``PatientRef`` of a QUAL identity for the DMP; ``IdentityNotQualified`` (ID-05) otherwise."""
        from ps_agent.access.policy import PatientRef

        ident = self.get(identity_id)
        if ident.status is not IdentityStatus.QUAL:
            raise IdentityNotQualified(f"statut actuel : {ident.status_label.lower()}")
        if ident.douteux or ident.fictif:
            raise IdentityNotQualified("identité douteuse ou fictive")
        if ident.ins is None:
            raise IdentityNotQualified("aucun INS")
        if not ident.external_verified:
            raise IdentityNotQualified("INS reçu du logiciel métier, pas encore vérifié par l'INSi")
        return PatientRef(ident.ins.value, ident.ins.oid, IdentityStatus.QUAL.value)


__all__ = [
    "HIGH_TRUST_DOCUMENTS",
    "LOW_TRUST_DOCUMENTS",
    "NOT_QUALIFIED_MESSAGE",
    "Actor",
    "IdentityDocument",
    "IdentityNotFound",
    "IdentityNotQualified",
    "IdentityRecordError",
    "IdentityRecords",
    "IdentityStatus",
    "LocalIdentity",
    "Sex",
    "StatusChange",
    "VerificationStatus",
]
