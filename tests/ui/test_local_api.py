"""The window answers the local API (a real ``ApiServer`` on 127.0.0.1 with its token): the practice
software asks to open a patient (the identity goes through INSi, never trusted as given) and to confirm an
emergency access (the dialog, centre 15 refused to a GP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PySide6.QtWidgets import QInputDialog

from ps_agent.api import ApiBackend, ApiServer, create_app, load_or_create_token
from sandbox import demo
from ui import labels as L
from ui.emergency import EmergencyDialog
from ui.labels import IdentityStatus


class LocalApi:
    def __init__(self, services: Any, session_provider: Any, config: Path) -> None:
        self.backend = ApiBackend(services, session_provider)
        self.token = load_or_create_token(config)
        self.server = ApiServer(create_app(self.backend, self.token), port=0)
        self.server.start()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        h = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.server.url, headers=h, timeout=30) as c:
            return c.post(path, json=body)

    def close(self) -> None:
        self.server.stop()
        self.backend.close()


@pytest.fixture
def window_with_api(window_for: Any, services: Any, desk_source: Any, tmp_path: Path) -> Iterator[Any]:
    holder: dict[str, Any] = {}
    api = LocalApi(services, lambda: holder["w"].controller.session, tmp_path / "config")
    w = holder["w"] = window_for("gp", source=desk_source, api_backend=api.backend)
    w.api = api
    yield w
    api.close()


ADULT = demo.DEMO_ADULT
TRAITS = {
    "ins": ADULT.ins,
    "ins_oid": ADULT.oid,
    "birth_family_name": ADULT.family_name,
    "given_names": ADULT.given_names,
    "birth_date": "1979-03-21",
    "sex": ADULT.sex,
    "birth_place_code": ADULT.birth_place,
}


def test_the_practice_software_opens_a_patient_through_insi(window_with_api, qtbot, monkeypatch, wait_idle):
    w = window_with_api
    with qtbot.waitSignal(w.patient_opened, timeout=20_000):
        r = w.api.post("/v1/patients/open", {"patient": TRAITS, "source": "LGC-TEST"})
        assert r.status_code == 202
    wait_idle(w)
    p = w.patient
    # INSi answered: récupérée, with a desk record, whatever status the caller claimed
    assert p.identity.status is IdentityStatus.RECUPEREE and p.identity.record_id is not None
    assert p.identity.ins == ADULT.ins and p.status is None
    assert w.dmp_banner.reason.text() == L.NOT_QUALIFIED_REASON
    assert [r.event.outcome for r in w.controller.services.journal.records(action="insi.search")] == [
        "success"
    ]

    # an emergency asked by the practice software: the dialog, only confirmable here
    r = w.api.post(f"/v1/patients/{ADULT.ins}/emergency", {"mode": "centre_15", "reason": "Appel du SAMU"})
    assert r.status_code == 403
    qtbot.waitUntil(lambda: L.API_CENTRE_15_REFUSED in w.status_line.text() or
                    w.emergency_dialog is not None, timeout=10_000)  # fmt: skip
    assert w.emergency_dialog is None  # a GP is no regulator
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("Passeport", True))
    w.validate_identity("Passeport")
    qtbot.waitUntil(lambda: w.patient.status is not None, timeout=20_000)
    wait_idle(w)
    reason = "Patient inconscient aux urgences"
    r = w.api.post(f"/v1/patients/{ADULT.ins}/emergency", {"mode": "bris_de_glace", "reason": reason})
    assert r.status_code == 403
    qtbot.waitUntil(lambda: w.emergency_dialog is not None, timeout=10_000)
    dialog = w.emergency_dialog
    assert isinstance(dialog, EmergencyDialog) and not dialog.centre_15
    assert dialog.reason.toPlainText() == reason
    assert not dialog.ok.isEnabled()  # the two conditions are still to attest by the professional
    dialog.reject()


def test_an_emergency_for_a_patient_not_open_is_refused_visibly(window_with_api, qtbot):
    w = window_with_api
    r = w.api.post(f"/v1/patients/{ADULT.ins}/emergency", {"mode": "bris_de_glace", "reason": "x" * 12})
    assert r.status_code == 403
    qtbot.waitUntil(lambda: w.status_line.text() == L.API_EMERGENCY_NOT_OPEN, timeout=10_000)
    assert w.emergency_dialog is None and w.patient is None


def test_an_ins_that_insi_does_not_confirm_never_opens(window_with_api, qtbot, wait_idle) -> None:
    w = window_with_api
    wrong = {**TRAITS, "ins": demo.DEMO_MINOR.ins}  # the traits of one patient, the INS of another
    r = w.api.post("/v1/patients/open", {"patient": wrong, "source": "LGC-TEST"})
    assert r.status_code == 202
    qtbot.waitUntil(lambda: "n'est pas celui que l'INSi renvoie" in w.status_line.text(), timeout=20_000)
    wait_idle(w)
    assert w.patient is None
    assert f"L'INS transmis ({demo.DEMO_MINOR.ins})" in w.status_line.text()
