"""The SQLite store (real files): restart keeps data, thread safety, patient controls, the demo data set."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cda import parse
from sandbox import demo
from sandbox.dmp.store import (
    APPROVED,
    INTERDIT,
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    Store,
    StoreError,
)
from sandbox.profiles import PROFILES


@pytest.fixture
def demo_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "demo")
    demo.seed(store)
    yield store
    store.close()


def test_demo_ins_are_valid_test_nirs() -> None:
    from cda.ins import OID_TEST, check_nir

    for p in demo.DEMO_PATIENTS:
        assert check_nir(p.ins) == p.ins
        assert p.oid == OID_TEST


def test_demo_data_set_shape(demo_store: Store) -> None:
    from cda import classify

    adult = demo_store.patient(demo.DEMO_ADULT.ins)
    assert adult.medecin_traitant == PROFILES["gp"].id_nat
    docs = demo_store.documents(adult.ins)
    assert 38 <= len(docs) <= 45
    rubrics = {classify.classify_type(d.type_code).dmp_rubric for d in docs}
    assert (
        set(
            (
                "Synthèse",
                "Traitements et soins",
                "Comptes rendus",
                "Imagerie médicale",
                "Analyses de biologie",
                "Prévention",
                "Certificats, déclarations",
                "Données de remboursement",
                "Espace personnel",
            )
        )
        <= rubrics
    )
    vac_notes = [d for d in docs if d.type_code == "87273-9"]
    assert len(vac_notes) >= 2 and all(d.format_code == "urn:asip:ci-sis:vac-note:2021" for d in vac_notes)
    assert any(MASQUE_PS in d.confidentiality for d in docs)
    # every stored document is a real CDA of this patient whose id is the uniqueId
    for d in docs:
        cda_doc = parse(demo_store.content(d.entry_uuid))
        assert cda_doc.patient.ins.extension == adult.ins
        assert cda_doc.id.root == d.unique_id
    minor = demo_store.patient(demo.DEMO_MINOR.ins)
    assert minor.is_minor and len(minor.legal_representatives) == 2
    blocking = demo_store.authorisation(demo.DEMO_BLOCKING.ins, PROFILES["nurse"].id_nat)
    assert blocking.status == INTERDIT
    assert demo_store.patient(demo.DEMO_CLOSED.ins).status == "CLOSED"
    assert demo_store.patient(demo.DEMO_OPPOSED.ins).status == "OPPOSED"


def test_seed_twice_is_idempotent(demo_store: Store) -> None:
    before = demo_store.document_count()
    demo.seed(demo_store)
    assert demo_store.document_count() == before


def test_restart_keeps_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "d")
    demo.seed(store)
    doc = store.documents(demo.DEMO_ADULT.ins)[0]
    store.mask(demo.DEMO_ADULT.ins, doc.unique_id)
    store.add_trace(transaction="TD3.1", result="OK", patient_ins=demo.DEMO_ADULT.ins, ps_id="899700000013")
    content = store.content(doc.entry_uuid)
    store.close()
    again = Store(tmp_path / "d")
    assert again.document(unique_id=doc.unique_id).masked
    assert again.content(doc.entry_uuid) == content
    assert again.traces(demo.DEMO_ADULT.ins)[-1].ps_id == "899700000013"
    assert again.patient(demo.DEMO_ADULT.ins).medecin_traitant == PROFILES["gp"].id_nat
    again.close()


def test_concurrent_writers_from_threads(tmp_path: Path) -> None:
    store = Store(tmp_path / "t")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                store.add_trace(transaction="TD3.1", result="OK", what=f"{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.traces()) == 200
    store.close()


def test_patient_views_hide_invisible_documents(demo_store: Store) -> None:
    adult = demo.DEMO_ADULT.ins
    hidden = [d for d in demo_store.documents(adult) if INVISIBLE_PATIENT in d.confidentiality]
    assert hidden
    seen = {d.unique_id for d in demo_store.documents_for_patient_view(adult)}
    assert not seen & {d.unique_id for d in hidden}
    demo_store.make_visible(adult, hidden[0].unique_id)
    assert hidden[0].unique_id in {d.unique_id for d in demo_store.documents_for_patient_view(adult)}
    minor = demo.DEMO_MINOR.ins
    secret = [d for d in demo_store.documents(minor) if INVISIBLE_REPRESENTANTS_LEGAUX in d.confidentiality]
    assert len(secret) == 1
    for_reps = {d.unique_id for d in demo_store.documents_for_patient_view(minor, legal_representative=True)}
    assert secret[0].unique_id not in for_reps
    assert secret[0].unique_id in {d.unique_id for d in demo_store.documents_for_patient_view(minor)}


def test_store_refusals_are_french(demo_store: Store) -> None:
    with pytest.raises(StoreError, match="Aucun DMP"):
        demo_store.set_status("100000000000000", "CLOSED")
    with pytest.raises(StoreError, match="déjà"):
        p = demo.DEMO_ADULT
        demo_store.create_patient(p.ins, p.oid, "X", "Y", "20000101", "F")
    with pytest.raises(StoreError, match="pas bloqué"):
        demo_store.unblock(demo.DEMO_ADULT.ins, PROFILES["gp"].id_nat)
    with pytest.raises(StoreError, match="introuvable"):
        demo_store.mask(demo.DEMO_ADULT.ins, "1.2.3.4.does.not.exist")
    with pytest.raises(StoreError, match="Statut"):
        demo_store.set_status(demo.DEMO_ADULT.ins, "PERHAPS")


def test_unblock_removes_the_authorisation(demo_store: Store) -> None:
    nurse = PROFILES["nurse"].id_nat
    demo_store.unblock(demo.DEMO_BLOCKING.ins, nurse)
    assert demo_store.authorisation(demo.DEMO_BLOCKING.ins, nurse) is None


def test_documents_by_status(demo_store: Store) -> None:
    docs = demo_store.documents(demo.DEMO_ADULT.ins, [APPROVED])
    assert docs and all(d.status == APPROVED for d in docs)


def test_a_data_folder_of_the_earlier_layout_is_migrated(tmp_path: Path) -> None:
    """Before metadata versions, documents.unique_id was UNIQUE and there was no content_uuid column."""
    import sqlite3

    folder = tmp_path / "old"
    with Store(folder) as store:
        demo.seed(store)
        before = {d.unique_id: store.content(d.entry_uuid) for d in store.documents(demo.DEMO_ADULT.ins)}
    db = sqlite3.connect(folder / "dmp.sqlite3")
    db.execute("DROP INDEX documents_uid_version")
    db.execute("ALTER TABLE documents DROP COLUMN content_uuid")
    db.execute("CREATE UNIQUE INDEX old_unique_id ON documents(unique_id)")
    db.commit()
    db.close()
    with Store(folder) as store:
        docs = store.documents(demo.DEMO_ADULT.ins)
        assert {d.unique_id: store.content(d.entry_uuid) for d in docs} == before
        masked = store.mask(demo.DEMO_ADULT.ins, docs[0].unique_id)  # a second row with the same uniqueId
        assert masked.version == docs[0].version + 1 and masked.entry_uuid != docs[0].entry_uuid
        assert store.content(masked.entry_uuid) == before[docs[0].unique_id]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd (Linux)")
def test_pooled_connections_are_bounded_and_closed(tmp_path: Path) -> None:
    """A connection per thread was never closed when the thread ended (the server runs one thread per TCP
    connection): after many threads every request failed for want of file descriptors."""
    import os

    from sandbox.dmp.store import POOL_MAX_IDLE

    store = Store(tmp_path / "pool")
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        threads = [threading.Thread(target=store.patients) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert store.open_connections <= POOL_MAX_IDLE
    assert len(os.listdir("/proc/self/fd")) <= fds + 2 * POOL_MAX_IDLE
    store.close()
    assert store.open_connections == 0
