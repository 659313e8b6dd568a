"""The agent's shape (issue 9 items 1-2) against the real sandbox: exchange facts per call (parallel reads
journal their own message ids), the per-call context reaching AUTH-03 and GEN-03, TD0.4 through the
policy and the journal, the end of an emergency access journaled, cancellation within 200 ms, events."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ps_agent.access.errors import AuthenticationRequired, ForbiddenPurpose, RoleNotAllowed
from ps_agent.access.policy import AccessMode
from ps_agent.auth.model import AuthMode
from ps_agent.context import CANCEL_LATENCY_S, Cancelled, CancelToken, Context
from ps_agent.events import JOURNAL_APPENDED, QUEUE_CHANGED
from ps_agent.outbox import EntryState

from . import docs
from .conftest import credentials_for, identity_of, patient_ref, recording_transport

RETRIEVE = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
JOIN_S = 10.0


def demo() -> Any:
    from sandbox import demo as d

    return d


def test_parallel_retrievals_journal_their_own_exchange_facts(services_for, test_pki, faults):
    p = demo().DEMO_ADULT
    services = services_for()
    gp = services.open_session(credentials_for(test_pki, "gp"))
    handle = gp.patient(patient_ref(p))
    uids = [
        handle.deposit(docs.letter(p, "gp", title=f"Lettre {i}")).value.document_uids[0] for i in range(4)
    ]
    faults(latency_ms=150, latency_rate=1.0, actions=(RETRIEVE,))  # so that the four reads overlap
    results: dict[str, Any] = {}
    start = threading.Barrier(len(uids))

    def read(uid: str) -> None:
        start.wait()
        results[uid] = handle.retrieve(uid)

    threads = [threading.Thread(target=read, args=(u,)) for u in uids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    assert set(results) == set(uids)
    ids = {u: r.exchange.message_id for u, r in results.items()}
    assert len(set(ids.values())) == len(uids)  # four exchanges, four message ids
    records = [
        r.event for r in services.journal.records(action="dmp.retrieve") if r.event.outcome == "success"
    ]
    for uid, result in results.items():
        [rec] = [e for e in records if e.document_ids == (uid,)]
        assert rec.transaction == "TD3.2"
        assert result.exchange.message_id in rec.detail and result.exchange.vihf_id in rec.detail
        others = set(ids.values()) - {ids[uid]}
        assert not any(m in rec.detail for m in others)
        assert result.exchange.duration_s >= 0.15


def test_purpose_and_background_reach_gen03_and_auth03(services_for, test_pki, dmp_sandbox):
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    wire_creds = credentials_for(test_pki, "gp")
    wire = recording_transport(wire_creds, test_pki)
    gp = services.open_session(wire_creds, transport=wire)
    handle = gp.patient(ref)
    with pytest.raises(ForbiddenPurpose) as exc:
        handle.list_documents(ctx=Context(purpose="assurance"))
    assert exc.value.rule_id == "GEN-03" and "L1111-18" in exc.value.message_fr
    assert wire.actions == []  # refused before anything left the machine
    with pytest.raises(AuthenticationRequired) as bg:
        handle.list_documents(ctx=Context(background=True))
    assert bg.value.rule_id == "AUTH-03"
    # an unattended deposit is allowed (AUTH-03 forbids only background consultation)
    handle.deposit(docs.letter(p, "gp", title="Dépôt en tâche de fond"), ctx=Context(background=True))
    refused = [r.event for r in services.journal.records(action="dmp.search") if r.event.outcome == "refused"]
    assert [e.rule_id for e in refused] == ["GEN-03", "AUTH-03"]
    assert "assurance" in refused[0].detail and "tâche de fond" in refused[1].detail
    deposit = [r.event for r in services.journal.records(action="dmp.deposit")][-1]
    assert deposit.outcome == "success" and "tâche de fond" in deposit.detail


def test_authorised_patients_goes_through_the_policy_and_the_journal(services_for, test_pki):
    services = services_for()
    gp = services.open_session(credentials_for(test_pki, "gp"))
    since = datetime.now(UTC) - timedelta(days=3650)
    rows = gp.authorised_patients(since)
    assert isinstance(rows.value, list) and rows.exchange.transaction == "TD0.4"
    [rec] = [r.event for r in services.journal.records(action="dmp.patient_list")]
    assert rec.outcome == "success" and rec.transaction == "TD0.4" and rows.exchange.message_id in rec.detail
    with pytest.raises(AuthenticationRequired):
        gp.authorised_patients(since, ctx=Context(background=True))
    secretary = services.open_session(
        credentials_for(
            test_pki, "specialist", mode=AuthMode.INDIRECTE_RENFORCEE, identity=identity_of("secretary")
        )
    )
    with pytest.raises(RoleNotAllowed):
        secretary.authorised_patients(since)
    outcomes = [
        (r.event.outcome, r.event.rule_id) for r in services.journal.records(action="dmp.patient_list")
    ]
    assert outcomes == [("success", ""), ("refused", "AUTH-03"), ("refused", "AUTH-04")]


def test_end_of_emergency_access_is_journaled(services_for, test_pki):
    p = demo().DEMO_BLOCKING
    services = services_for()
    sp = services.open_session(credentials_for(test_pki, "specialist"))
    handle = sp.patient(patient_ref(p))
    reason = "Patient inconscient admis aux urgences, antécédents inconnus"
    handle.emergency_access(AccessMode.BRIS_DE_GLACE, reason)
    assert handle.access_mode is AccessMode.BRIS_DE_GLACE
    handle.end_emergency_access()
    assert handle.access_mode is AccessMode.NORMAL
    [end] = [r.event for r in services.journal.records(action="dmp.emergency_end")]
    assert end.outcome == "success" and end.access_mode == "bris_de_glace" and end.reason == reason


def _cancel_and_time(target: Any, transport: Any, token: CancelToken) -> tuple[float, BaseException | None]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            box["error"] = exc
        box["end"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    assert transport.entered.wait(JOIN_S), "the operation never reached the blocked exchange"
    started = time.monotonic()
    token.cancel()
    t.join(JOIN_S)
    assert not t.is_alive()
    return box["end"] - started, box.get("error")


def test_vaccination_status_is_cancelled_within_200_ms(services_for, test_pki):
    p = demo().DEMO_ADULT
    services = services_for()
    creds = credentials_for(test_pki, "pharmacist")
    wire = recording_transport(creds, test_pki)
    ph = services.open_session(creds, transport=wire)
    token = CancelToken()
    wire.block_action, wire.block_until = RETRIEVE, token  # the DMP never answers a read until cancelled
    steps: list[tuple[str, int, int]] = []
    ctx = Context(cancel=token, progress=lambda s, d, t: steps.append((s, d, t)))
    elapsed, error = _cancel_and_time(
        lambda: ph.patient(patient_ref(p)).vaccination_status(ctx=ctx), wire, token
    )
    assert isinstance(error, Cancelled)
    assert elapsed < CANCEL_LATENCY_S
    assert steps and steps[0][1] == 0  # progress was reported
    rec = [r.event for r in services.journal.records(action="dmp.retrieve")][-1]
    assert rec.outcome == "error" and rec.error_code == "CANCELLED"
    assert "TD3.2 message urn:uuid:" in rec.detail  # the request abandoned is named in the record


def test_deposit_is_cancelled_within_200_ms_and_stays_in_the_queue(services_for, test_pki, dmp_sandbox):
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    creds = credentials_for(test_pki, "gp")
    wire = recording_transport(creds, test_pki)
    gp = services.open_session(creds, transport=wire)
    gp.patient(ref).dmp_status()
    token = CancelToken()
    wire.block_action, wire.block_until = ITI41, token
    batch = [docs.letter(p, "gp", title=f"Lettre du lot {i}") for i in range(3)]
    elapsed, error = _cancel_and_time(
        lambda: gp.patient(ref).deposit_batch(batch, ctx=Context(cancel=token)), wire, token
    )
    assert isinstance(error, Cancelled) and elapsed < CANCEL_LATENCY_S
    [entry] = services.queue.pending()
    assert entry.state is EntryState.WAITING and len(entry.documents) == 3 and "interrompu" in entry.reason_fr
    wire.block_action = None
    [outcome] = gp.resume(all_entries=True)
    assert outcome.state is EntryState.REGISTERED


def test_events_are_plain_callbacks(services_for, test_pki):
    p = demo().DEMO_ADULT
    services = services_for()
    seen: list[tuple[str, Any]] = []
    services.events.connect(QUEUE_CHANGED, lambda e: seen.append(("queue", e.state)))
    disconnect = services.events.connect(JOURNAL_APPENDED, lambda r: seen.append(("journal", r.event.action)))
    gp = services.open_session(credentials_for(test_pki, "gp"))
    gp.patient(patient_ref(p)).deposit(docs.letter(p, "gp", title="Lettre et événements"))
    assert ("queue", EntryState.SENDING) in seen and ("queue", EntryState.REGISTERED) in seen
    assert ("journal", "dmp.deposit") in seen
    disconnect()
    n = len([s for s in seen if s[0] == "journal"])
    gp.patient(patient_ref(p)).dmp_status()
    assert len([s for s in seen if s[0] == "journal"]) == n


def test_one_patient_handle_from_several_threads_refreshes_the_status_once(services_for, test_pki):
    """The threading rule: a session is shared by threads; a patient's TD0.2 refresh runs once, the
    other threads wait for it and reuse it."""
    p = demo().DEMO_ADULT
    services = services_for()
    creds = credentials_for(test_pki, "gp")
    wire = recording_transport(creds, test_pki)
    gp = services.open_session(creds, transport=wire)
    handle = gp.patient(patient_ref(p))
    assert gp.patient(patient_ref(p)) is handle
    start = threading.Barrier(4)
    listings: list[int] = []

    def read() -> None:
        start.wait()
        listings.append(len(handle.list_documents().value))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    assert len(listings) == 4 and len(set(listings)) == 1
    assert wire.actions.count("urn:hl7-org:v3:PRPA_IN201307UV02") == 1
    assert wire.actions.count("urn:ihe:iti:2007:RegistryStoredQuery") == 4


def test_a_call_after_the_session_ended_never_names_the_previous_exchange(services_for, test_pki):
    """main read the transaction from ``DmpClient.last``: a call refused because the session had ended
    was journaled with the previous call's transaction."""
    from ps_agent.auth.errors import SessionClosed

    p = demo().DEMO_ADULT
    services = services_for()
    creds = credentials_for(test_pki, "gp")
    gp = services.open_session(creds)
    handle = gp.patient(patient_ref(p))
    handle.dmp_status()
    creds.close()
    with pytest.raises(SessionClosed):
        handle.list_documents()
    last = list(services.journal.records())[-1].event
    assert (last.action, last.outcome, last.transaction) == ("dmp.search", "error", "")
    assert "message" not in last.detail


def test_a_session_signs_journal_checkpoints_with_its_key(services_for, test_pki):
    """While a session is open its signature key signs the journal's checkpoints; closing it signs what it
    wrote (issue 8 item 4, wired by the session)."""
    p = demo().DEMO_ADULT
    services = services_for()
    creds = credentials_for(test_pki, "gp")
    gp = services.open_session(creds)
    assert services.journal.checkpoint_signer is not None
    gp.patient(patient_ref(p)).dmp_status()
    gp.close()
    assert services.journal.checkpoint_signer is None
    cps = services.journal.checkpoints()
    assert cps and cps[-1].seq == services.journal.last_seq()
    assert cps[-1].certificate == test_pki.card("gp").sign_cert


def test_depositors_on_many_threads_for_one_new_patient_ask_td02_once(services_for, test_pki):
    """A hospital's hot folder: 8 workers deposit at once for a patient the session never saw (AIR mode).
    TD0.2 is a precondition of a deposit (DEP-03): it is asked ONCE for the 8 (the others wait for it and
    reuse it for ``STATUS_TTL_S``), and every document is registered."""
    p = demo().DEMO_ADULT
    services = services_for()
    creds = credentials_for(test_pki, "secretary", mode=AuthMode.INDIRECTE_RENFORCEE)
    wire = recording_transport(creds, test_pki)
    session = services.open_session(creds, transport=wire)
    workers = 8
    start = threading.Barrier(workers)
    registered: list[EntryState] = []
    letters = [docs.letter(p, "gp", title=f"Compte rendu parallèle {i}") for i in range(workers)]

    def deposit(data: bytes) -> None:
        start.wait()
        h = session.patient(patient_ref(p))  # each worker asks for the handle, as the hot folder does
        uid = h.deposit(data, ctx=Context(background=True)).value.submission_set_uid
        registered.append(services.queue.get(uid).state)

    threads = [threading.Thread(target=deposit, args=(d,)) for d in letters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S * 3)
    assert registered == [EntryState.REGISTERED] * workers
    assert wire.actions.count("urn:hl7-org:v3:PRPA_IN201307UV02") == 1
    assert wire.actions.count("urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b") == workers


def test_a_session_keeps_the_handles_in_use_and_a_bounded_number_of_others(
    services_for, test_pki, monkeypatch
):
    """A year of a hospital's hot folder meets 100,000 patients: the session keeps the handles someone
    holds (the same object for the same INS), the ``PATIENT_HANDLES_KEPT`` last used and those in
    emergency access until it ends, not every one."""
    import gc
    import weakref

    from ps_agent import session as session_mod
    from ps_agent.access.policy import PatientRef

    monkeypatch.setattr(session_mod, "PATIENT_HANDLES_KEPT", 5)
    services = services_for()
    session = services.open_session(credentials_for(test_pki, "gp"))
    held = session.patient(patient_ref(demo().DEMO_ADULT))
    first = weakref.ref(session.patient(PatientRef("100000000000001", "1.2.250.1.213.1.4.10")))
    # a patient opened in emergency access (the state emergency_access() sets), then let go by its caller
    urgent_ref = PatientRef("100000000000002", "1.2.250.1.213.1.4.10")
    session.patient(urgent_ref)._set(access_mode=AccessMode.BRIS_DE_GLACE, reason="Patient inconscient")
    for n in range(3, 200):
        session.patient(PatientRef(f"1{n:014d}", "1.2.250.1.213.1.4.10"))
    gc.collect()
    assert first() is None  # not held, not among the last 5: let go
    assert len(session._recent) == 5
    assert len(session._handles) == 7  # the 5 last used, the one held, the one in emergency access
    assert session.patient(patient_ref(demo().DEMO_ADULT)) is held
    assert session.patient(urgent_ref).access() == (AccessMode.BRIS_DE_GLACE, "Patient inconscient")
    session.patient(urgent_ref)._set(access_mode=AccessMode.NORMAL, reason="")  # ended
    for n in range(200, 210):
        session.patient(PatientRef(f"1{n:014d}", "1.2.250.1.213.1.4.10"))
    gc.collect()
    assert len(session._handles) == 6 and session._emergency == {}
    last = session.patient(PatientRef(f"1{199:014d}", "1.2.250.1.213.1.4.10"))
    assert session.patient(PatientRef(f"1{199:014d}", "1.2.250.1.213.1.4.10")) is last


def test_an_emergency_access_opened_on_a_handle_out_of_the_recent_ones_lasts_until_it_ends(
    services_for, test_pki, monkeypatch
):
    """The window holds a patient while a hot folder in the same session meets more than
    ``PATIENT_HANDLES_KEPT`` others; the user then opens bris de glace on that patient: the access is kept
    once the window lets the handle go (never silently back to normal without its end)."""
    import gc

    from ps_agent import session as session_mod
    from ps_agent.access.policy import PatientRef

    monkeypatch.setattr(session_mod, "PATIENT_HANDLES_KEPT", 3)
    services = services_for()
    session = services.open_session(credentials_for(test_pki, "gp"))
    ref = patient_ref(demo().DEMO_ADULT)
    held = session.patient(ref)
    for n in range(3, 10):
        session.patient(PatientRef(f"1{n:014d}", "1.2.250.1.213.1.4.10"))
    assert (ref.ins, ref.oid) not in session._recent
    held.emergency_access(AccessMode.BRIS_DE_GLACE, "Patient inconscient, pronostic vital engagé")
    del held
    gc.collect()
    assert session.patient(ref).access_mode is AccessMode.BRIS_DE_GLACE
