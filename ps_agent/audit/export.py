"""Exports of the audit journal: FHIR R4 ``AuditEvent`` resources in a ``Bundle`` (JSON), and CSV.

FHIR mapping (R4, http://hl7.org/fhir/R4/auditevent.html):
- ``type``: DICOM DCM 110110 "Patient Record" for DMP actions, 110114 "User Authentication" for ``auth.*``;
- ``subtype``: the agent's action code (system ``ACTION_SYSTEM``) and, when known, the DMP transaction
  (``TD0.2``... system ``TRANSACTION_SYSTEM``);
- ``action``: C create (deposit, consent), R read (retrieve), U update (mask, unmask, make visible,
  archive), D delete, E execute (status, search, emergency opening, login...);
- ``outcome``: 0 success (and "pending"), 4 refused (minor failure), 8 error (serious failure);
- ``agent[0]``: the user (``who.identifier`` = PS national id, system urn:oid:1.2.250.1.71.4.2.1),
  ``requestor`` true; ``agent[1]`` the author the action was done for (AIR/INDIRECTE deposits);
- ``source``: the agent software, ``site`` = structure id;
- ``entity``: the patient (INS matricule with its OID as identifier system) and each document id;
- ``purposeOfEvent``: v3-ActReason BTG (bris de glace), ETREAT (centre 15), TREAT otherwise.
The chain position and hash travel in ``extension`` so an exported file can be checked against the journal.

CSV: one row per record, every field, document ids joined by ``;``. Cells that a spreadsheet would
take for a formula (starting with = + - @) are prefixed with an apostrophe (CSV injection).

Selection (11.2, « Exporter la sélection »): both writers take ``where``, a record predicate;
:class:`RecordFilter` is the one the window builds (period, action, patient, outcome, text): its
``query()`` narrows the SQL read (``AuditJournal.iter_records``) and ``matches`` decides per record, so
what is shown and what is exported are the same records.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from ps_agent.audit.journal import AuditRecord, record_to_dict

ACTION_SYSTEM = "urn:ps-agent:audit-action"
TRANSACTION_SYSTEM = "urn:ps-agent:dmp-transaction"
HASH_EXTENSION = "urn:ps-agent:fhir:StructureDefinition:audit-chain"
PS_ID_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # national id of health professionals (PSIdNat) [I]
STRUCTURE_ID_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"  # structure national id [I]
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBJECT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_NAME = "ps-agent"

_ACTION_CODES = {
    "dmp.deposit": "C",
    "dmp.deposit_batch": "C",
    "dmp.consent": "C",
    "dmp.vaccination": "C",
    "dmp.retrieve": "R",
    "dmp.mask": "U",
    "dmp.unmask": "U",
    "dmp.make_visible": "U",
    "dmp.archive": "U",
    "dmp.unarchive": "U",
    "dmp.delete": "D",
    "dmp.consent_remove": "D",
}
_OUTCOMES = {"success": "0", "pending": "0", "refused": "4", "error": "8"}
_PURPOSES = {
    "bris_de_glace": ("BTG", "break the glass"),
    "centre_15": ("ETREAT", "Emergency Treatment"),
    "normal": ("TREAT", "treatment"),
}
CSV_COLUMNS = (
    "seq",
    "timestamp",
    "clock_note",
    "action",
    "outcome",
    "actor_id_nat",
    "actor_name",
    "actor_profession",
    "auth_mode",
    "card_serial",
    "structure_id",
    "patient_ins",
    "transaction",
    "document_ids",
    "access_mode",
    "reason",
    "error_code",
    "detail",
    "on_behalf_of",
    "rule_id",
    "prev_hash",
    "hash",
)


Where = Callable[[AuditRecord], bool]


def _record_time(record: AuditRecord) -> datetime:
    t = datetime.fromisoformat(record.timestamp.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RecordFilter:
    """A selection of journal records; every criterion optional (empty = all).

    ``since`` inclusive and ``until`` exclusive are aware datetimes (a caller turns local days into
    instants); ``action`` exact or a prefix ending with "." (``"dmp."``); ``patient_ins`` the matricule with
    or without ``^oid``; ``outcome`` success / refused / error / pending; ``text`` a case-insensitive
    substring of the actor (name, id), the author acted for, the patient, the action, the transaction,
    the document ids, the reason, the error code, the rule or the detail."""

    since: datetime | None = None
    until: datetime | None = None
    action: str = ""
    patient_ins: str = ""
    outcome: str = ""
    text: str = ""

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"RecordFilter.{name} must be timezone-aware")

    @property
    def empty(self) -> bool:
        return self == RecordFilter()

    def query(self) -> dict[str, Any]:
        """The keyword filters ``AuditJournal.iter_records`` applies in SQL (a superset of the selection)."""
        out: dict[str, Any] = {}
        if self.patient_ins:
            out["patient_ins"] = self.patient_ins
        if self.since is not None:
            out["since"] = self.since
        if self.action:
            out["action"] = self.action
        return out

    def matches(self, record: AuditRecord) -> bool:
        ev = record.event
        if self.since is not None or self.until is not None:
            when = _record_time(record)
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when >= self.until:
                return False
        if self.action and not (
            ev.action == self.action or (self.action.endswith(".") and ev.action.startswith(self.action))
        ):
            return False
        if self.patient_ins:
            matricule = self.patient_ins.split("^", 1)[0]
            if ev.patient_ins.split("^", 1)[0] != matricule:
                return False
        if self.outcome and ev.outcome != self.outcome:
            return False
        if self.text:
            needle = self.text.casefold()
            hay = " ".join(
                (
                    ev.actor_name, ev.actor_id_nat, ev.on_behalf_of, ev.patient_ins, ev.action,
                    ev.transaction, " ".join(ev.document_ids), ev.reason, ev.error_code, ev.rule_id,
                    ev.detail, ev.structure_id,
                )
            )  # fmt: skip
            if needle not in hay.casefold():
                return False
        return True

    def select(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        return (r for r in records if self.matches(r))


def _selected(records: Iterable[AuditRecord], where: Where | None) -> Iterable[AuditRecord]:
    return records if where is None else (r for r in records if where(r))


def fhir_action(action: str) -> str:
    return _ACTION_CODES.get(action, "E")


def to_fhir(record: AuditRecord) -> dict[str, Any]:
    """One FHIR R4 AuditEvent resource for ``record``."""
    ev = record.event
    is_auth = ev.action.startswith("auth.")
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"ps-agent-{record.seq}",
        "extension": [
            {
                "url": HASH_EXTENSION,
                "extension": [
                    {"url": "seq", "valueInteger": record.seq},
                    {"url": "prevHash", "valueString": record.prev_hash},
                    {"url": "hash", "valueString": record.hash},
                ],
            }
        ],
        "type": (
            {"system": DCM, "code": "110114", "display": "User Authentication"}
            if is_auth
            else {"system": DCM, "code": "110110", "display": "Patient Record"}
        ),
        "subtype": [{"system": ACTION_SYSTEM, "code": ev.action}],
        "action": fhir_action(ev.action),
        "recorded": record.timestamp,
        "outcome": _OUTCOMES.get(ev.outcome, "12"),
    }
    if ev.transaction:
        resource["subtype"].append({"system": TRANSACTION_SYSTEM, "code": ev.transaction})
    desc = [p for p in (ev.outcome if ev.outcome == "pending" else "", ev.error_code, ev.detail) if p]
    if desc:
        resource["outcomeDesc"] = " — ".join(desc)
    code, display = _PURPOSES.get(ev.access_mode, _PURPOSES["normal"])
    resource["purposeOfEvent"] = [{"coding": [{"system": ACT_REASON, "code": code, "display": display}]}]
    if ev.reason:
        resource["purposeOfEvent"][0]["text"] = ev.reason
    user: dict[str, Any] = {
        "who": {
            "identifier": {"system": PS_ID_SYSTEM, "value": ev.actor_id_nat},
            "display": ev.actor_name,
        },
        "requestor": True,
    }
    if ev.actor_profession:
        user["role"] = [{"text": ev.actor_profession}]
    if ev.auth_mode:
        user["type"] = {"text": ev.auth_mode}
    if ev.card_serial:
        user["altId"] = ev.card_serial
    agents = [user]
    if ev.on_behalf_of:
        agents.append(
            {
                "who": {"identifier": {"system": PS_ID_SYSTEM, "value": ev.on_behalf_of}},
                "requestor": False,
                "role": [{"text": "auteur"}],
            }
        )
    resource["agent"] = agents
    source: dict[str, Any] = {"observer": {"display": SOURCE_NAME}}
    if ev.structure_id:
        source["site"] = ev.structure_id
        source["observer"]["identifier"] = {"system": STRUCTURE_ID_SYSTEM, "value": ev.structure_id}
    resource["source"] = source
    entities: list[dict[str, Any]] = []
    if ev.patient_ins:
        matricule, _, oid = ev.patient_ins.partition("^")
        ident: dict[str, Any] = {"value": matricule}
        if oid:
            ident["system"] = f"urn:oid:{oid}"
        entities.append(
            {
                "what": {"identifier": ident},
                "type": {"system": OBJECT_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    for doc_id in ev.document_ids:
        entities.append(
            {
                "what": {"identifier": {"value": doc_id}},
                "type": {"system": OBJECT_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
            }
        )
    if ev.rule_id:
        entities.append(
            {
                "what": {"display": "politique d'accès"},
                "type": {"system": OBJECT_TYPE, "code": "4", "display": "Other"},
                "detail": [{"type": "rule_id", "valueString": ev.rule_id}],
            }
        )
    if entities:
        resource["entity"] = entities
    return resource


def write_fhir_bundle(records: Iterable[AuditRecord], out: IO[str], *, where: Where | None = None) -> int:
    """Stream a FHIR ``Bundle`` (type ``collection``) of AuditEvents; return the number of entries.
    ``where``: only the records it accepts (e.g. ``RecordFilter(...).matches``).

    One entry per line (compact JSON) so that 100k records stream without building one huge object.
    ``Bundle.total`` is not set: FHIR only allows it on search/history bundles (invariant bdl-1).
    """
    out.write('{"resourceType":"Bundle","type":"collection","entry":[')
    n = 0
    for record in _selected(records, where):
        entry = {"fullUrl": f"urn:uuid:{uuid.UUID(record.hash[:32])}", "resource": to_fhir(record)}
        out.write(("\n" if n == 0 else ",\n") + json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
        n += 1
    out.write("\n]}\n")
    return n


def _cell(value: object) -> str:
    text = ";".join(value) if isinstance(value, list) else str(value)
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


def write_csv(records: Iterable[AuditRecord], out: IO[str], *, where: Where | None = None) -> int:
    """CSV of the records (header row first); ``where``: only the records it accepts."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    n = 0
    for record in _selected(records, where):
        data = record_to_dict(record)
        writer.writerow([_cell(data[c]) for c in CSV_COLUMNS])
        n += 1
    return n
