"""The CI-sized fault campaign of "Exactly once" through the hot folder: the sandbox loses requests before
commit, loses answers after commit and answers 503 on deposits (seeded); every item ends registered once,
with its receipt, none lost, none repeated."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ps_agent.access.policy import PatientRef
from ps_agent.auth.model import AuthMode
from ps_agent.hotfolder.ledger import DONE
from ps_agent.services import Services
from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import agent_config, credentials

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
N_ITEMS = 15


def test_fault_campaign_through_the_hot_folder(rig: Any, tmp_path: Any) -> None:
    from sandbox.server.faults import FaultConfig

    titles = [f"CR panne {tmp_path.name[-8:]} {i}" for i in range(N_ITEMS)]
    rig.dmp.faults.configure(
        FaultConfig(seed=1, reset_before_commit_rate=0.2, reset_after_commit_rate=0.2, http_503_rate=0.1,
                    actions=(ITI41,))
    )  # fmt: skip
    try:
        for i, t in enumerate(titles):
            rig.drop(f"f{i}", title=t)
        rig.backend.start_queue_worker(interval_s=0.2)
        rig.folder.start()
        # every item taken and queued while the faults last
        rig.wait_for(lambda: len(rig.services.queue_entries()) == N_ITEMS, timeout=120)
    finally:
        rig.dmp.faults.clear()
    rig.wait_for(lambda: rig.folder.ledger.count(DONE) == N_ITEMS, timeout=180)
    receipts = rig.receipts()
    assert len(receipts) == N_ITEMS and all(r["ACK_RECEPTION_DMP"] == "Y" for r in receipts.values())
    assert not any(r.get("doublon") for r in receipts.values())
    assert rig.errors() == {}
    entries = rig.services.queue_entries()
    assert len(entries) == N_ITEMS and all(e.state.value == "registered" for e in entries)
    assert sum(e.attempts for e in entries) > N_ITEMS, "the campaign injected no failure"
    with Services(agent_config(rig.dmp, rig.pki, tmp_path / "gp-home")) as services:
        session = services.open_session(credentials(rig.pki, "gp", AuthMode.DIRECTE))
        patient = session.patient(PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid, "QUAL"))
        patient.record_consent(how="oral")
        listed = Counter(e.title for e in patient.list_documents().value.entries if e.title in titles)
        session.close()
    assert listed == Counter(titles), listed
