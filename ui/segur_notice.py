"""The Ségur user-level notice (3.6, SC.DMP/CONF.11): shown at first use and again every 180 days, per
user (not per patient), with « J'ai compris »; the acknowledgement goes to the audit journal, which is
also where the last acknowledgement is read from (no other store)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout

NOTICE_TEXT = (
    "Le logiciel peut effectuer des requêtes de recherche de document au nom de l'utilisateur sur les "
    "DMP/MES et permet d'en consulter, sur action manuelle, les documents d'intérêt. Ces interactions sont "
    "tracées avec l'identifiant national de l'utilisateur et le patient est notifié de ces interactions."
)
NOTICE_COMMITMENT = (
    "Toute consultation de ma part d'un DMP/MES pour lequel le patient (ou son représentant légal) n'a pas "
    "donné son consentement m'expose à des poursuites."
)
NOTICE_BUTTON = "J'ai compris"
NOTICE_ACTION = "segur.notice"
# [I] Re-display period: the FAQ's example (180 days); one place.
NOTICE_PERIOD = dt.timedelta(days=180)


def notice_due(journal: Any, id_nat: str, *, now: dt.datetime | None = None) -> bool:
    """True when ``id_nat`` never acknowledged the notice, or last did more than ``NOTICE_PERIOD`` ago."""
    now = now or dt.datetime.now(dt.UTC)
    last: dt.datetime | None = None
    for record in journal.records(action=NOTICE_ACTION):
        if record.event.actor_id_nat != id_nat or record.event.outcome != "success":
            continue
        try:
            when = dt.datetime.fromisoformat(record.timestamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        last = when if last is None or when > last else last
    return last is None or now - last > NOTICE_PERIOD


def acknowledge(services: Any, session: Any) -> None:
    """Journal the acknowledgement (who, when: the record's own time stamp)."""
    from ps_agent.audit.journal import AuditEvent

    ident = session.identity
    services.record(
        AuditEvent(
            action=NOTICE_ACTION,
            outcome="success",
            actor_id_nat=ident.id_nat,
            actor_name=ident.display_name,
            actor_profession=ident.profession_code or ident.non_ps_role,
            auth_mode=session.mode.value,
            structure_id=ident.activity.structure_id if ident.activity else "",
            detail="information Ségur (SC.DMP/CONF.11) : « J'ai compris »",
        )
    )


class SegurNotice(QDialog):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Information sur l'usage du DMP")
        self.setAccessibleName("Information sur l'usage du DMP")
        self.setModal(True)
        lay = QVBoxLayout(self)
        for text in (NOTICE_TEXT, NOTICE_COMMITMENT):
            label = QLabel(text)
            label.setWordWrap(True)
            lay.addWidget(label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText(NOTICE_BUTTON)
        self.ok.setAccessibleName(NOTICE_BUTTON)
        self.buttons.accepted.connect(self.accept)
        lay.addWidget(self.buttons)
        self.resize(560, 220)

    def reject(self) -> None:  # Escape does not dismiss it: only « J'ai compris »
        return
