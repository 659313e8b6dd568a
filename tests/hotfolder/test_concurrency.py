"""The hot folder's pipeline against the real sandbox in AIR mode: several deposits in flight at once (the
next items are built and signed while earlier ones are on the network), a failure in one worker does not
stop the others, the same file dropped many times at once is deposited once, a replacement waits for the
earlier items of its patient."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from ps_agent.events import QUEUE_CHANGED
from ps_agent.hotfolder.ledger import DONE, REJECTED
from ps_agent.outbox import EntryState, QueuedDeposit
from sandbox.demo import DEMO_CLOSED
from tests.fixtures.integration import patient_json, pdf
from tests.hotfolder.conftest import sidecar_for

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"


class InFlight:
    """The largest number of queue entries being sent at the same moment (from the queue's own events)."""

    def __init__(self) -> None:
        self.sending: set[str] = set()
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, entry: QueuedDeposit) -> None:
        with self._lock:
            if entry.state is EntryState.SENDING:
                self.sending.add(entry.id)
            else:
                self.sending.discard(entry.id)
            self.most = max(self.most, len(self.sending))


def test_several_deposits_in_flight_each_item_once(rig: Any, tmp_path: Any) -> None:
    from sandbox.server.faults import FaultConfig

    n = 12
    titles = [f"CR parallèle {tmp_path.name[-8:]} {i}" for i in range(n)]
    flight = InFlight()
    disconnect = rig.services.events.connect(QUEUE_CHANGED, flight)
    # every deposit spends 300 ms on the network: only overlap lets several be in flight
    rig.dmp.faults.configure(FaultConfig(seed=3, latency_ms=300, latency_rate=1.0, actions=(ITI41,)))
    try:
        for i, t in enumerate(titles):
            rig.drop(f"p{i:02d}", title=t)
        rig.folder.start()
        rig.wait_for(lambda: rig.folder.ledger.count(DONE) == n, timeout=120)
    finally:
        rig.dmp.faults.clear()
        disconnect()
    assert 2 <= flight.most <= rig.folder.workers, flight.most
    receipts = rig.receipts()
    assert sorted(receipts) == [f"p{i:02d}" for i in range(n)]
    assert all(r["ACK_RECEPTION_DMP"] == "Y" and not r.get("doublon") for r in receipts.values())
    assert len({r["uniqueId"] for r in receipts.values()}) == n
    entries = rig.services.queue_entries()
    assert len(entries) == n and all(e.state is EntryState.REGISTERED for e in entries)
    assert Counter(e.titles[0] for e in entries) == Counter(titles)
    assert list(rig.folder.inbox.iterdir()) == [] and list(rig.folder.work.iterdir()) == []


def test_a_failure_in_one_worker_does_not_stop_the_others(rig: Any) -> None:
    """An integrator's callback that raises on one item, and an item the DMP refuses (closed DMP): every
    other item is still deposited, and the workers go on taking new items afterwards."""
    failed: list[str] = []

    def on_finished(name: str, outcome: str) -> None:
        if name == "w03":
            failed.append(name)
            raise RuntimeError("callback de l'intégrateur en panne")

    rig.folder.on_finished = on_finished
    closed = sidecar_for("CR DMP fermé", patient=patient_json(DEMO_CLOSED))
    for i in range(8):
        if i == 5:
            rig.drop(f"w{i:02d}", sidecar=closed, title="CR DMP fermé")
        else:
            rig.drop(f"w{i:02d}", title=f"CR panne travailleur {i}")
    rig.folder.start()
    rig.wait_for(lambda: rig.folder.ledger.count(DONE) + rig.folder.ledger.count(REJECTED) == 8, timeout=120)
    assert failed == ["w03"]
    assert set(rig.receipts()) == {f"w{i:02d}" for i in range(8) if i != 5}
    assert rig.receipts()["w03"]["ACK_RECEPTION_DMP"] == "Y"  # the callback failed after the receipt
    err = rig.errors()["w05"]
    assert err["ACK_RECEPTION_DMP"] == "N" and err["detail"] and err["code"]
    for i in range(8, 12):  # the workers are all still there
        rig.drop(f"w{i:02d}", title=f"CR panne travailleur {i}")
    rig.wait_for(lambda: rig.folder.ledger.count(DONE) == 11, timeout=120)
    assert len([e for e in rig.services.queue_entries() if e.state is EntryState.REGISTERED]) == 11


def test_same_file_dropped_many_times_at_once_is_deposited_once(rig: Any) -> None:
    content = pdf("Doublon parallèle")
    for i in range(6):  # six names, one content, taken by four workers at once
        rig.drop(f"d{i}", content, title="CR doublon parallèle")
    rig.folder.start()
    rig.wait_for(lambda: len(rig.receipts()) == 6 and rig.folder.ledger.count(DONE) == 1, timeout=120)
    receipts = rig.receipts()
    firsts = [r for r in receipts.values() if not r.get("doublon")]
    dups = [r for r in receipts.values() if r.get("doublon")]
    assert len(firsts) == 1 and len(dups) == 5
    assert {d["uniqueId"] for d in dups} == {firsts[0]["uniqueId"]}
    assert len(rig.services.queue_entries()) == 1


def test_a_replacement_waits_for_the_earlier_items_of_its_patient(rig: Any) -> None:
    """``a`` and its replacement ``b`` (``replaces`` = a's uniqueId) dropped together: b is sent only once
    a is finished, so the DMP never sees the replacement before the document it replaces."""
    from ps_agent.hotfolder import HotFolder, document_uid_for

    content = pdf("Version 1")
    a_meta = sidecar_for("CR version 1")
    rig.drop("a", content, sidecar=a_meta)
    data = (rig.folder.inbox / "a.pdf").read_bytes()
    from ps_agent.hotfolder.sidecar import parse_sidecar

    key = HotFolder._key(data, parse_sidecar((rig.folder.inbox / "a.json").read_bytes(), is_cda=False))
    a_uid = document_uid_for(key)
    rig.drop("b", sidecar=sidecar_for("CR version 2", action="replace", replaces=a_uid), title="CR version 2")
    order: list[tuple[str, str]] = []
    lock = threading.Lock()

    def note(entry: QueuedDeposit) -> None:
        with lock:
            order.append((entry.titles[0] if entry.titles else "", entry.state.value))

    disconnect = rig.services.events.connect(QUEUE_CHANGED, note)
    try:
        rig.folder.start()
        rig.wait_for(
            lambda: rig.folder.ledger.count(DONE) + rig.folder.ledger.count(REJECTED) == 2, timeout=120
        )
    finally:
        disconnect()
    # (b's own outcome is the DMP's: in AIR mode the secretary may not read the entryUUID of a, so the
    # replacement is refused there; what matters here is the order in which the two were sent)
    assert rig.receipts()["a"]["ACK_RECEPTION_DMP"] == "Y"
    assert "b" in rig.receipts() or "b" in rig.errors()
    v1_registered = order.index(("CR version 1", "registered"))
    v2_first = next(i for i, (t, _) in enumerate(order) if t == "CR version 2")
    assert v2_first > v1_registered, order


def test_a_batch_for_many_new_patients_asks_td02_once_per_patient(rig: Any, tmp_path: Any) -> None:
    """A hospital's batch: items for several patients the session never saw, taken by all the workers at
    once. The DMP's status (TD0.2, a precondition of a deposit, DEP-03) is asked once per patient, not per
    item, even when several workers deposit for the same patient at the same moment: counted by the
    sandbox's own traces (what the DMP saw)."""
    from cda.ins import nir_key
    from sandbox.demo import TEST_INS_OID, DemoPatient

    store = rig.dmp.store
    patients = []
    for i in range(3):  # fresh patients (the module's sandbox keeps what other tests did)
        first13 = f"2850575120{len(store.patients()) + 100:03d}"
        p = DemoPatient(f"{first13}{nir_key(first13):02d}", TEST_INS_OID, f"LOT-{tmp_path.name[-6:]}-{i}",
                        "ALEX", "19850515", "F", "75120")  # fmt: skip
        store.create_patient(p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place)
        patients.append(p)
    per_patient = rig.folder.workers  # as many items per patient as there are workers
    n = per_patient * len(patients)
    for i in range(n):
        p = patients[i % len(patients)]
        rig.drop(
            f"m{i:02d}", sidecar=sidecar_for(f"CR lot {tmp_path.name[-8:]} {i}", patient=patient_json(p))
        )
    rig.folder.start()
    rig.wait_for(lambda: rig.folder.ledger.count(DONE) == n, timeout=120)
    assert len(rig.receipts()) == n
    for p in patients:
        seen = Counter(t.transaction for t in store.traces(p.ins))
        assert seen["TD0.2"] == 1 and seen["TD2.1"] == per_patient, (p.ins, seen)
