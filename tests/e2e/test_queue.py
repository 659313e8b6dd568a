"""The deposit queue against the real sandbox and its fault injection (issue 8 item 1-3): an entry leaves
the queue only with a definite outcome; ambiguous failures resolve to "registered" by resending the same
submission (the uniqueId is the idempotency key), for every depositor; transient failures are never
reported as refusals; one failing entry never holds back the others; two queues on one file never send
the same entry twice; a full disk never makes the agent lie."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.audit.journal import AuditJournal
from ps_agent.auth.model import AuthMode
from ps_agent.context import Context
from ps_agent.dmp.errors import DmpTimeout
from ps_agent.outbox import EntryState
from ps_agent.session import AuditPending, DepositDeferred

from . import docs
from .conftest import credentials_for, identity_of, patient_ref, recording_transport

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
TD02 = "urn:hl7-org:v3:PRPA_IN201307UV02"
POLL_DEADLINE_S = 10.0


def demo() -> Any:
    from sandbox import demo as d

    return d


def registered_count(dmp_sandbox: Any, uid: str) -> int:
    """How many documents with this uniqueId the sandbox's own store holds."""
    return 1 if dmp_sandbox.store.unique_id_exists([uid]) else 0


def wait_registered(dmp_sandbox: Any, uid: str) -> None:
    deadline = time.monotonic() + POLL_DEADLINE_S
    while not dmp_sandbox.store.unique_id_exists([uid]):
        assert time.monotonic() < deadline, f"{uid} never registered by the sandbox"
        threading.Event().wait(0.02)


def queued(session: Any, ref: Any, data: bytes, faults: Any) -> Any:
    """A deposit left WAITING in the queue: its only send is reset before the DMP saw it."""
    faults(reset_before_commit_rate=1.0, actions=(ITI41,))
    with pytest.raises(DepositDeferred) as exc:
        session.patient(ref).deposit(data)
    faults()
    assert exc.value.entry.state is EntryState.WAITING
    return exc.value.entry


def test_status_refresh_fault_during_resume_loses_nothing(services_for, test_pki, faults, dmp_sandbox):
    """main removed the entry, then re-deposited (TD0.2 first): a fault there lost the document."""
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    first = services.open_session(credentials_for(test_pki, "gp"))
    data = docs.letter(p, "gp", title="Lettre à reprendre après incident")
    entry = queued(first, ref, data, faults)
    first.close()
    again = services.open_session(credentials_for(test_pki, "gp"))  # its TD0.2 answer is not fresh
    faults(http_500_rate=1.0, actions=(TD02,))
    [outcome] = again.resume(all_entries=True)
    assert outcome.state is EntryState.WAITING  # not lost, not refused
    kept = services.queue.get(entry.id)
    assert kept is not None and kept.state is EntryState.WAITING and kept.documents == (data,)
    assert "HTTP 500" in kept.reason_fr or "erreur" in kept.reason_fr.lower()
    faults(soap_fault_rate=1.0, actions=(TD02,))  # a SOAP Receiver fault on the status: transient too
    [outcome] = again.resume(all_entries=True)
    assert outcome.state is EntryState.WAITING
    faults()
    [outcome] = again.resume(all_entries=True)
    assert outcome.state is EntryState.REGISTERED
    assert registered_count(dmp_sandbox, entry.document_uids[0]) == 1


def test_air_secretary_ambiguous_failure_resolves_to_registered_without_reading(
    services_for, test_pki, faults, dmp_sandbox
):
    """A secretary (AIR, may not consult) whose deposit's answer was lost: main could not check and
    dropped it as refused. Now the same submission is sent again and "already registered" = registered."""
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    creds = credentials_for(
        test_pki, "specialist", mode=AuthMode.INDIRECTE_RENFORCEE, identity=identity_of("secretary")
    )
    wire = recording_transport(creds, test_pki)
    secretary = services.open_session(creds, transport=wire)
    data = docs.letter(p, "specialist", type_code="11490-0", title="Lettre de liaison (réponse perdue)")
    faults(reset_after_commit_rate=1.0, actions=(ITI41,))
    with pytest.raises(DepositDeferred):
        secretary.patient(ref).deposit(data)
    faults()
    [entry] = services.queue.pending()
    assert registered_count(dmp_sandbox, entry.document_uids[0]) == 1  # the first send had committed
    [outcome] = secretary.resume(all_entries=True)
    assert outcome.state is EntryState.REGISTERED and outcome.result.recovered
    assert "impossible pour ce profil" in outcome.reason_fr
    assert ITI18 not in wire.actions  # no GetDocuments: the secretary may not read
    assert wire.actions.count(ITI41) == 2  # the first send and ONE resend of the same submission
    outcomes = [r.event.outcome for r in services.journal.records(action="dmp.deposit")]
    assert "refused" not in outcomes and outcomes[-1] == "success"
    assert services.queue.pending() == []


def test_soap_receiver_fault_is_retried_never_a_refusal(services_for, test_pki, faults, dmp_sandbox):
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for(deposit_retries=1)
    gp = services.open_session(credentials_for(test_pki, "gp"))
    data = docs.letter(p, "gp", title="Lettre face à une panne du DMP")
    faults(soap_fault_rate=1.0, actions=(ITI41,))
    with pytest.raises(DepositDeferred) as exc:
        gp.patient(ref).deposit(data)
    assert dmp_sandbox.faults.counts().get("soap_fault") == 2  # sent, then sent again within the call
    assert exc.value.entry.state is EntryState.WAITING and exc.value.entry.next_try > time.time()
    faults()
    [outcome] = gp.resume(all_entries=True)
    assert outcome.state is EntryState.REGISTERED
    outcomes = [r.event.outcome for r in services.journal.records(action="dmp.deposit")]
    assert "refused" not in outcomes


def test_dmp_slower_than_the_client_timeout_gives_no_false_refusal(
    services_for, test_pki, faults, dmp_sandbox
):
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for(timeout_s=0.5)
    gp = services.open_session(credentials_for(test_pki, "gp"))
    gp.patient(ref).dmp_status()
    data = docs.letter(p, "gp", title="Lettre envoyée à un DMP lent")
    faults(latency_ms=1200, latency_rate=1.0, actions=(ITI41,))
    with pytest.raises(DepositDeferred) as exc:
        gp.patient(ref).deposit(data)
    assert isinstance(exc.value.__cause__, DmpTimeout)
    uid = exc.value.entry.document_uids[0]
    wait_registered(dmp_sandbox, uid)  # the timed-out send commits later
    faults()
    [outcome] = gp.resume(all_entries=True)
    assert outcome.state is EntryState.REGISTERED and "empreinte" in outcome.reason_fr
    assert registered_count(dmp_sandbox, uid) == 1
    assert "refused" not in [r.event.outcome for r in services.journal.records(action="dmp.deposit")]


def test_one_failing_patient_never_holds_back_the_others(services_for, test_pki, faults, dmp_sandbox):
    d = demo()
    services = services_for()
    gp = services.open_session(credentials_for(test_pki, "gp"))
    closed = d.DEMO_CLOSED
    # an entry for a patient whose DMP is closed (queued earlier, first in line)
    bad = docs.letter(closed, "gp", title="Lettre pour un DMP fermé")
    import cda

    services.queue.add(
        "2.25.1" + str(int(time.time() * 1e6)), (closed.ins, closed.oid, "QUAL"), (cda.parse(bad).id.root,),
        (bad,), (False, False, False), ("",), actor_id_nat=gp.identity.id_nat,
    )  # fmt: skip
    good = queued(
        gp, patient_ref(d.DEMO_ADULT), docs.letter(d.DEMO_ADULT, "gp", title="Lettre qui doit partir"), faults
    )
    outcomes = gp.resume(all_entries=True)
    assert [o.state for o in outcomes] == [EntryState.REFUSED, EntryState.REGISTERED]
    assert "DMP actif" in outcomes[0].reason_fr
    assert registered_count(dmp_sandbox, good.document_uids[0]) == 1
    refused = services.queue.entries([EntryState.REFUSED])
    assert refused and refused[0].documents == (bad,)  # kept until a person takes it back


def test_two_queues_on_one_home_never_send_an_entry_twice(
    services_for, test_pki, faults, dmp_sandbox, tmp_path
):
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    home = tmp_path / "shared-home"
    a = services_for(home)
    b = services_for(home)
    sa = a.open_session(credentials_for(test_pki, "gp"))
    sb = b.open_session(credentials_for(test_pki, "gp"))
    entries = [queued(sa, ref, docs.letter(p, "gp", title=f"Lettre partagée {i}"), faults) for i in range(3)]
    assert {e.id for e in b.queue.pending()} == {e.id for e in entries}
    faults(latency_ms=300, latency_rate=1.0, actions=(ITI41,))
    results: dict[str, list[Any]] = {}
    start = threading.Barrier(2)

    def run(name: str, session: Any) -> None:
        start.wait()
        results[name] = session.resume(all_entries=True)

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", sa), ("b", sb))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert dmp_sandbox.faults.counts().get("latency") == 3  # each entry sent exactly once
    states = [o.state for o in results["a"] + results["b"]]
    assert EntryState.REFUSED not in states and EntryState.WAITING not in states
    assert all(e.state is EntryState.REGISTERED for e in a.queue.entries())
    for e in entries:
        assert registered_count(dmp_sandbox, e.document_uids[0]) == 1


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A real 512 KiB tmpfs (root only), unmounted after the test."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace')}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * 4096
        while True:
            try:
                if os.write(fd, chunk) == 0:
                    break
            except OSError:
                break
        for size in (512, 64, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_full_disk_tells_the_truth_and_writes_the_record_later(
    services_for, test_pki, dmp_sandbox, tiny_disk
):
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    journal = AuditJournal(tiny_disk / "audit.sqlite3")
    services = services_for(journal=journal)
    gp = services.open_session(credentials_for(test_pki, "gp"))
    gp.patient(ref).dmp_status()
    filler: list[Path] = []

    def progress(step: str, done: int, total: int) -> None:
        if step == "Envoi au DMP" and not filler:  # after the intent record, before the send
            filler.append(fill(tiny_disk))

    data = docs.letter(p, "gp", title="Lettre déposée sur un disque plein")
    with pytest.raises(AuditPending) as exc:
        gp.patient(ref).deposit(data, ctx=Context(progress=progress))
    assert "enregistré(s) dans le DMP" in exc.value.message_fr and "sera écrite" in exc.value.message_fr
    uid = exc.value.result.document_uids[0]
    assert registered_count(dmp_sandbox, uid) == 1
    assert services.backlog == 1
    entry = services.queue.get(exc.value.result.submission_set_uid)
    assert entry.state is EntryState.REGISTERED and not entry.journaled
    filler[0].unlink()  # space is back
    gp.patient(ref).dmp_status()  # the next record first writes the kept one
    assert services.backlog == 0
    recs = [r.event for r in journal.records(action="dmp.deposit")]
    assert [e.outcome for e in recs] == ["pending", "success"]
    assert recs[-1].document_ids == (uid,) and "différé" in recs[-1].detail
    assert services.queue.get(entry.id).journaled
    assert journal.verify().ok


def test_queue_files_are_private_whoever_made_the_folder(services_for, tmp_path):
    home = tmp_path / "loose"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # noqa: S103 - a folder made loose by someone else
    services = services_for(home)
    assert (home.stat().st_mode & 0o777) == 0o700
    assert (services.queue.path.stat().st_mode & 0o777) == 0o600


def test_no_intent_record_no_send_then_sent_once_space_is_back(
    services_for, test_pki, dmp_sandbox, tiny_disk
):
    from ps_agent.audit.errors import AuditError

    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    journal = AuditJournal(tiny_disk / "audit.sqlite3")
    services = services_for(journal=journal)
    gp = services.open_session(credentials_for(test_pki, "gp"))
    gp.patient(ref).dmp_status()
    filler = fill(tiny_disk)
    data = docs.letter(p, "gp", title="Lettre sans trace d'intention")
    with pytest.raises(AuditError) as exc:
        gp.patient(ref).deposit(data)
    assert "n'est pas envoyé" in exc.value.message_fr and "file d'envoi" in exc.value.message_fr
    [entry] = services.queue.pending()
    assert entry.state is EntryState.WAITING and registered_count(dmp_sandbox, entry.document_uids[0]) == 0
    [outcome] = gp.resume(all_entries=True)  # still full: nothing is sent
    assert outcome.state is EntryState.WAITING and registered_count(dmp_sandbox, entry.document_uids[0]) == 0
    filler.unlink()
    [outcome] = gp.resume(all_entries=True)
    assert outcome.state is EntryState.REGISTERED
    recs = [(r.event.outcome, r.event.detail) for r in journal.records(action="dmp.deposit")]
    assert [o for o, _ in recs] == ["pending", "success"] and "reprise" in recs[0][1]


def test_a_full_home_refuses_the_deposit_before_sending(services_for, test_pki, dmp_sandbox, tiny_disk):
    from ps_agent.audit.errors import AuditError
    from ps_agent.outbox import OutboxError

    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for(tiny_disk / "home")
    gp = services.open_session(credentials_for(test_pki, "gp"))
    gp.patient(ref).dmp_status()
    fill(tiny_disk)
    data = docs.letter(p, "gp", title="Lettre sur un disque plein", size=64_000)
    import cda

    with pytest.raises((OutboxError, AuditError)) as exc:  # the queue or the intent cannot be written
        gp.patient(ref).deposit(data)
    assert "n'est pas envoyé" in exc.value.message_fr
    assert registered_count(dmp_sandbox, cda.parse(data).id.root) == 0


class WireLog(httpx.BaseTransport):
    """Wraps a real transport: keeps (SOAP action, WS-A MessageID, VIHF assertion ID) of each request."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read().decode("utf-8", errors="replace")
        action = re.search(r'action="([^"]+)"', request.headers.get("content-type", ""))
        message = re.search(r"<(?:\w+:)?MessageID[^>]*>([^<]+)<", body)
        assertion = re.search(r"<(?:\w+:)?Assertion\b[^>]*\bID=\"([^\"]+)\"", body)
        self.sent.append(
            (action.group(1) if action else "", message.group(1) if message else "",
             assertion.group(1) if assertion else "")
        )  # fmt: skip
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_receiver_fault_on_the_status_check_before_queueing_is_no_refusal(
    services_for, test_pki, faults, dmp_sandbox
):
    """The TD0.2 check made for a new deposit (status not fresh) met a SOAP Receiver fault: main raised
    it before queueing ("Le DMP a refusé l'opération"): a false refusal. Now the document is queued first
    and the check runs inside the entry's resolution: the entry waits and is sent later."""
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    gp = services.open_session(credentials_for(test_pki, "gp"))  # no TD0.2 answer yet
    data = docs.letter(p, "gp", title="Lettre déposée pendant une panne du TD0.2")
    faults(soap_fault_rate=1.0, actions=(TD02,))
    with pytest.raises(DepositDeferred) as exc:
        gp.patient(ref).deposit(data)
    assert dmp_sandbox.faults.counts().get("soap_fault") == 1
    entry = exc.value.entry
    assert entry.state is EntryState.WAITING and services.queue.get(entry.id).documents == (data,)
    assert registered_count(dmp_sandbox, entry.document_uids[0]) == 0
    assert "refused" not in [r.event.outcome for r in services.journal.records(action="dmp.deposit")]
    faults()
    [outcome] = gp.resume(all_entries=True)
    assert outcome.state is EntryState.REGISTERED
    assert registered_count(dmp_sandbox, entry.document_uids[0]) == 1


def test_a_final_status_refusal_after_queueing_leaves_the_entry_refused_with_its_reason(
    services_for, test_pki, dmp_sandbox
):
    """A refusal about the patient found by the check inside the queue's resolution: REFUSED (why), the
    document kept until a person takes it back — registered, refused for a reason, or waiting."""
    from ps_agent.errors import PsAgentError

    p = demo().DEMO_CLOSED
    ref = patient_ref(p)
    services = services_for()
    gp = services.open_session(credentials_for(test_pki, "gp"))
    data = docs.letter(p, "gp", title="Lettre pour un DMP fermé")
    with pytest.raises(PsAgentError) as exc:
        gp.patient(ref).deposit(data)
    assert not isinstance(exc.value, DepositDeferred)
    [entry] = services.queue.entries()
    assert entry.state is EntryState.REFUSED and entry.reason_fr and entry.documents == (data,)
    assert registered_count(dmp_sandbox, entry.document_uids[0]) == 0


def test_a_resend_after_an_ambiguous_failure_carries_a_new_vihf_and_message_id(
    services_for, test_pki, faults, dmp_sandbox
):
    """The sandbox refuses a replayed VIHF (Sender fault wsse:InvalidSecurityToken): a resend that reused
    the first attempt's signed envelope would be a false refusal. Every attempt is built and signed anew
    (the queue keeps the documents, never a prepared envelope)."""
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for(deposit_retries=1)
    creds = credentials_for(test_pki, "gp")
    wire = WireLog(creds.tls_transport(ca_file=str(test_pki.ca_bundle)))
    gp = services.open_session(creds, transport=wire)
    gp.patient(ref).dmp_status()
    data = docs.letter(p, "gp", title="Lettre renvoyée après une réponse perdue")
    faults(reset_after_commit_rate=1.0, actions=(ITI41,))  # both sends of the call commit, answers lost
    with pytest.raises(DepositDeferred) as exc:
        gp.patient(ref).deposit(data)
    faults()
    [outcome] = gp.resume(all_entries=True)  # third send: "already registered" → registered
    assert outcome.state is EntryState.REGISTERED
    deposits = [(m, a) for action, m, a in wire.sent if action == ITI41]
    assert len(deposits) == 3 and all(m and a for m, a in deposits)
    assert len({m for m, _ in deposits}) == 3 and len({a for _, a in deposits}) == 3
    all_ids = [m for _, m, _ in wire.sent]
    assert len(set(all_ids)) == len(all_ids)  # no MessageID ever reused, whatever the request
    assert registered_count(dmp_sandbox, exc.value.entry.document_uids[0]) == 1
    assert "refused" not in [r.event.outcome for r in services.journal.records(action="dmp.deposit")]


def test_updates_resolve_the_current_version_after_a_mask(services_for, test_pki, dmp_sandbox):
    """A mask makes a NEW version entry (new entryUUID): archiving with the entry listed before the mask
    would name a stale entryUUID (XDSMetadataVersionError). The agent resolves the entry right before."""
    from ps_agent.dmp.model import Status

    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    gp = services.open_session(credentials_for(test_pki, "gp"))
    handle = gp.patient(ref)
    uid = handle.deposit(docs.letter(p, "gp", title="Lettre masquée puis archivée")).value.document_uids[0]
    [listed] = [e for e in handle.list_documents().value if e.unique_id == uid]
    handle.mask(listed)
    handle.unmask(listed)  # the listed entry is now two versions old
    handle.archive(listed)
    [now] = [e for e in handle.list_documents(include_archived=True).value if e.unique_id == uid]
    assert now.status == Status.ARCHIVED and now.entry_uuid != listed.entry_uuid
    handle.delete(listed)
    assert uid not in {e.unique_id for e in handle.list_documents(include_archived=True).value}


def test_resume_on_a_full_disk_returns_outcomes_and_releases_the_claim(
    services_for, test_pki, faults, dmp_sandbox, tiny_disk
):
    """Queue and journal on a full disk during a resume whose send commits: resume returns an outcome per
    entry (main raised AuditWriteError/OutboxError), the entry is reported registered, never sent again by
    this process, and both its row and its audit record are written once space returns."""
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for(tiny_disk / "home")
    gp = services.open_session(credentials_for(test_pki, "gp"))
    gp.patient(ref).dmp_status()
    entries = [
        queued(gp, ref, docs.letter(p, "gp", title=f"Lettre n° {n} reprise sur disque plein"), faults)
        for n in (1, 2)
    ]
    filler: list[Path] = []

    def progress(step: str, done: int, total: int) -> None:
        if step == "Envoi au DMP" and not filler:  # after the claim, before the first send
            filler.append(fill(tiny_disk))

    outcomes = gp.resume(all_entries=True, ctx=Context(progress=progress))
    assert len(outcomes) == 2 and filler
    first = outcomes[0]
    assert first.state is EntryState.REGISTERED  # the DMP holds it: said so, even on a full disk
    assert registered_count(dmp_sandbox, entries[0].document_uids[0]) == 1
    seen = services.queue.get(entries[0].id)
    # released: no longer sending, never due again (its owner stays only until its record is written)
    assert seen is not None and seen.state is EntryState.REGISTERED
    assert seen.id not in [e.id for e in services.queue.due()]
    filler[0].unlink()  # space is back
    gp.resume(all_entries=True)
    for e in entries:
        row = services.queue.get(e.id)
        assert row is not None and row.state is EntryState.REGISTERED and row.journaled
        assert registered_count(dmp_sandbox, e.document_uids[0]) == 1
    recs = [r.event for r in services.journal.records(action="dmp.deposit") if r.event.outcome == "success"]
    assert {u for r in recs for u in r.document_ids} == {e.document_uids[0] for e in entries}


def test_a_document_handed_again_resolves_through_its_entry(services_for, test_pki, faults, dmp_sandbox):
    """The same document handed a second time (the agent was killed during the first call, a full disk
    declined it, a double click): the entry that holds it answers — registered without a second entry
    nor a second send; or, still open, that entry is sent (never a new submission for it)."""
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    creds = credentials_for(test_pki, "gp")
    wire = WireLog(creds.tls_transport(ca_file=str(test_pki.ca_bundle)))
    gp = services.open_session(creds, transport=wire)
    gp.patient(ref).dmp_status()
    done = docs.letter(p, "gp", title="Lettre déjà déposée")
    first = gp.patient(ref).deposit(done).value
    sends = sum(1 for a, _, _ in wire.sent if a == ITI41)
    again = gp.patient(ref).deposit(done)
    assert again.value.document_uids == first.document_uids and again.value.recovered
    assert again.value.submission_set_uid == first.submission_set_uid
    assert sum(1 for a, _, _ in wire.sent if a == ITI41) == sends  # nothing sent again
    waiting = queued(gp, ref, docs.letter(p, "gp", title="Lettre remise pendant qu'elle attend"), faults)
    data = services.queue.get(waiting.id).documents[0]
    result = gp.patient(ref).deposit(data).value  # handed again: its waiting entry is sent now
    assert result.submission_set_uid == waiting.id
    assert services.queue.get(waiting.id).state is EntryState.REGISTERED
    assert len(services.queue.entries()) == 2
    for e in services.queue.entries():
        assert registered_count(dmp_sandbox, e.document_uids[0]) == 1


def test_a_document_handed_again_while_its_entry_is_being_sent_is_not_sent_twice(
    services_for, test_pki, faults, dmp_sandbox
):
    from ps_agent.outbox import DepositQueue

    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    services = services_for()
    gp = services.open_session(credentials_for(test_pki, "gp"))
    gp.patient(ref).dmp_status()
    waiting = queued(gp, ref, docs.letter(p, "gp", title="Lettre remise pendant son envoi"), faults)
    data = services.queue.get(waiting.id).documents[0]
    other = DepositQueue(services.queue.path)  # another live sender holds it
    try:
        assert other.claim(waiting.id) is not None
        with pytest.raises(DepositDeferred) as exc:
            gp.patient(ref).deposit(data)
        assert exc.value.code == "ALREADY_QUEUED" and exc.value.entry.id == waiting.id
        assert "envoi en cours" in exc.value.message_fr
        assert len(services.queue.entries()) == 1
        assert registered_count(dmp_sandbox, waiting.document_uids[0]) == 0
    finally:
        other.close()


DEAD_OWNER = "from ps_agent.outbox.owner import new_owner_id; print(new_owner_id())"


def _dead_owner() -> str:
    """The owner id of a process that has ended (as a ``kill -9``'ed agent leaves it in the queue file)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", DEAD_OWNER], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    return done.stdout.strip()


def _success_records(services: Any, lot: str) -> list[Any]:
    return [
        r
        for r in services.journal.records(action="dmp.deposit")
        if r.event.outcome == "success" and r.event.detail.startswith(f"lot {lot}")
    ]


def test_a_crash_before_the_journaled_flag_reaches_the_file_gives_one_record(
    services_for, test_pki, dmp_sandbox, tmp_path
):
    """The "journaled" flag of a registered deposit rides in the queue's next write. While its depositor
    lives (a second agent on the same home meanwhile), a recovery leaves the entry alone; once that process
    is dead (its owner id made that of an ended process, as ``kill -9`` leaves it), the restart finds the
    record in the journal and only sets the flag: the deposit is never journaled twice."""
    p = demo().DEMO_ADULT
    ref = patient_ref(p)
    home = tmp_path / "crash-home"
    first = services_for(home)
    done = (
        first.open_session(credentials_for(test_pki, "gp"))
        .patient(ref)
        .deposit(docs.letter(p, "gp", title="Lettre avant l'arrêt brutal"))
    )
    lot = done.value.submission_set_uid
    mine = first.queue.get(lot)
    assert mine is not None and mine.state is EntryState.REGISTERED and mine.journaled
    restarted = services_for(home)
    on_disk = restarted.queue.get(lot)
    assert on_disk is not None and on_disk.state is EntryState.REGISTERED and not on_disk.journaled
    assert on_disk.owner == first.queue.owner
    session = restarted.open_session(credentials_for(test_pki, "gp"))
    session.resume(all_entries=True)  # its depositor lives: left to it
    assert [e.id for e in restarted.queue.unjournaled()] == [lot]
    assert len(_success_records(restarted, lot)) == 1
    with sqlite3.connect(restarted.queue.path) as con:  # the first agent dies before the flag is written
        con.execute("UPDATE queue_entry SET owner=? WHERE id=?", (_dead_owner(), lot))
    con.close()
    session.resume(all_entries=True)
    assert restarted.queue.unjournaled() == []
    success = _success_records(restarted, lot)
    assert len(success) == 1 and "différé" not in success[0].event.detail
    assert registered_count(dmp_sandbox, done.value.document_uids[0]) == 1
    assert restarted.journal.verify().ok


def test_the_record_of_the_same_documents_handed_again_is_not_taken_for_the_deposits_own(
    services_for, test_pki, dmp_sandbox, tmp_path
):
    """A crash after registration, before the success record; the same documents handed again write
    « lot X ; déjà enregistré … » (``_deposit_again``): the recovery still writes the deposit's own record
    (it does not take that one, nor the record of a longer id, for it)."""
    p = demo().DEMO_ADULT
    services = services_for(tmp_path / "again-home")
    session = services.open_session(credentials_for(test_pki, "gp"))
    handle = session.patient(patient_ref(p))
    lot = handle.deposit(docs.letter(p, "gp", title="Lettre déposée deux fois")).value.submission_set_uid
    entry = services.queue.get(lot)
    assert entry is not None and session._success_journaled(entry)  # its own record, by the deposit
    fake = replace(entry, id=f"{entry.id}.0")  # an entry of the same patient without a record of its own
    for detail in (
        f"lot {fake.id} ; déjà enregistré (document déjà déposé depuis ce poste)",
        f"lot {fake.id}.7",
        f"lot {fake.id}.7; remplacement",
    ):
        session._audit("dmp.deposit", "success", handle, transaction="TD2.1", detail=detail)
        assert not session._success_journaled(fake), detail
    own = f"lot {fake.id}; remplacement"
    session._audit("dmp.deposit", "success", handle, transaction="TD2.1", detail=own)
    assert session._success_journaled(fake)
