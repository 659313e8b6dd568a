"""Audit journal figures: CPU per append (µs of this process, user + system; a deposit writes two),
from 1 thread and from 4 threads at once; appends/s with synchronous=FULL (each append committed and
fsynced, anchor fsync'd), the same from 1, 4 and 8 threads at once (group commit: records per durable
write), the same with a software signer making a checkpoint every ``CHECKPOINT_EVERY`` records, verify
time for 100k records (with and without signed checkpoints), export throughput, policy decisions/s.

    .venv/bin/python benchmarks/bench_audit.py [--records 100000] [--appends 2000] [--dir DIR] [--cpu-only]

The 100k-record journal is filled with ``executemany`` of correctly chained rows (building it through
``append`` would take minutes of fsyncs and measure nothing new); ``verify`` then walks all of it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ps_agent.access import AccessPolicy, Action, DmpState, PatientRef
from ps_agent.audit.journal import (
    _COLUMNS,
    CHECKPOINT_EVERY,
    GENESIS_HASH,
    AuditEvent,
    AuditJournal,
    format_timestamp,
    record_hash,
    sanitize_event,
)
from ps_agent.auth.model import AuthMode, ProfessionalIdentity
from ps_agent.auth.software import SoftwareSigner

# The professional every benchmark record names.
ACTOR = {
    "actor_id_nat": "899700000013",
    "actor_name": "JEAN MEDECIN-GENERALISTE",
    "actor_profession": "10",
    "auth_mode": "DIRECTE",
    "card_serial": "0000000101",
    "structure_id": "380000000100017",
}


def event(n: int) -> AuditEvent:
    return AuditEvent(
        action="dmp.retrieve",
        outcome="success",
        **ACTOR,
        patient_ins=f"2790351215{n % 1000:03d}89^1.2.250.1.213.1.4.10",
        transaction="TD3.2",
        document_ids=(f"1.2.250.1.999.1.{n}",),
    )


def deposit_event(n: int) -> AuditEvent:
    """What a deposit journals (its intent, then its outcome): a detail text, an author on whose behalf."""
    return AuditEvent(
        action="dmp.deposit",
        outcome="success" if n % 2 else "pending",
        **ACTOR,
        patient_ins="279035121518989^1.2.250.1.213.1.4.10",
        transaction="TD2.1",
        document_ids=(f"1.2.250.1.999.1.{n // 2}",),
        detail=f"rubrique : comptes rendus ; dépôt n° {n // 2}",
        on_behalf_of="899700000013",
    )


def bench_append_cpu(directory: Path, count: int, threads: int, *, durable: bool = True) -> float:
    """CPU of this process (``time.process_time``: user + system, so the fsyncs' own kernel work counts)
    per ``append``, from ``threads`` threads at once; the best of 3 rounds (other processes share the
    machine). ``durable=False`` is a diagnostic, not a mode of the journal: the anchor's fsync stubbed out
    and SQLite at ``synchronous=OFF``, to show what the Python and SQLite work alone costs. Returns µs per
    append."""
    import os
    import threading

    best = float("inf")
    real_syncs = {name: getattr(os, name) for name in ("fsync", "fdatasync") if hasattr(os, name)}
    with contextlib.ExitStack() as stack:
        j = stack.enter_context(AuditJournal(directory / f"cpu{threads}{'' if durable else 'x'}.sqlite3"))
        if not durable:
            j._conn.execute("PRAGMA synchronous=OFF")
            for name in real_syncs:
                setattr(os, name, lambda fd: None)
            for name, real in real_syncs.items():
                stack.callback(setattr, os, name, real)
        for n in range(20):
            j.append(deposit_event(n))

        def work(k: int) -> None:
            for n in range(k, count, threads):
                j.append(deposit_event(n))

        for _ in range(3):
            t0 = time.process_time()
            if threads == 1:
                work(0)
            else:
                pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
                for t in pool:
                    t.start()
                for t in pool:
                    t.join()
            best = min(best, (time.process_time() - t0) / count)
        assert j.verify().ok
    what = "" if durable else " WITHOUT the durable writes (diagnostic: fsyncs stubbed)"
    print(
        f"CPU per append, {threads} thread{'s at once' if threads > 1 else ''}{what}: {best * 1e6:.0f} µs "
        f"(best of 3 rounds of {count}; user + system)"
    )
    return best * 1e6


def bench_appends(directory: Path, count: int) -> None:
    with AuditJournal(directory / "appends.sqlite3") as j:
        j.append(event(0))
        start = time.perf_counter()
        for n in range(count):
            j.append(event(n))
        elapsed = time.perf_counter() - start
    each_ms = elapsed / count * 1000
    print(f"append (WAL, synchronous=FULL): {count / elapsed:,.0f} appends/s ({each_ms:.2f} ms each)")


def bench_concurrent_appends(directory: Path, count: int, threads: int) -> None:
    """``threads`` threads appending at once (the hot folder's workers, the API's pool): appends/s, wall
    time of one append as its caller sees it, and records per durable write (group commit: the records
    queued during a commit share the next one; ``main`` before it: 1.0)."""
    import threading

    anchor_writes = [0]
    waits: list[float] = []
    with AuditJournal(directory / f"concurrent{threads}.sqlite3") as j:
        j.append(event(0))
        real = j._anchor.write

        def counted(data: bytes) -> None:
            anchor_writes[0] += 1
            real(data)

        j._anchor.write = counted  # type: ignore[method-assign]
        try:

            def work(k: int) -> None:
                for n in range(k, count, threads):
                    t0 = time.perf_counter()
                    j.append(event(n))
                    waits.append(time.perf_counter() - t0)

            start = time.perf_counter()
            pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            elapsed = time.perf_counter() - start
        finally:
            j._anchor.write = real  # type: ignore[method-assign]
        assert j.verify().ok
    waits.sort()
    print(
        f"append from {threads} threads at once: {count / elapsed:,.0f} appends/s, one append as its caller "
        f"sees it p50 {waits[len(waits) // 2] * 1000:.2f} ms, {count / max(anchor_writes[0], 1):.2f} records "
        "per commit + anchor fsync"
    )


def software_signer() -> SoftwareSigner:
    """An RSA-2048 key and a self-signed certificate (what a CPS card's signature key is)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "BENCH SIGNATAIRE")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return SoftwareSigner(key, cert)


def bench_signed_appends(directory: Path, count: int, signer: SoftwareSigner) -> None:
    with AuditJournal(directory / "signed.sqlite3") as j:
        j.set_checkpoint_signer(signer, "bench")
        j.append(event(0))
        start = time.perf_counter()
        for n in range(count):
            j.append(event(n))
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        for n in range(50):
            j.append(event(n))
            j.checkpoint()
        one = (time.perf_counter() - start) / 50
    print(
        f"append with a checkpoint every {CHECKPOINT_EVERY} records (software RSA-2048 signer): "
        f"{count / elapsed:,.0f} appends/s ({elapsed / count * 1000:.2f} ms each); "
        f"append + checkpoint: {one * 1000:.2f} ms"
    )


def fill(path: Path, count: int) -> str:
    with AuditJournal(path) as j:
        journal_id = j.journal_id  # schema
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("DROP TRIGGER audit_no_update")  # nothing is updated; keeps the schema as created
    prev = GENESIS_HASH
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for seq in range(1, count + 1):
        ev = sanitize_event(event(seq))
        ts = format_timestamp(t0 + timedelta(milliseconds=seq * 250))
        digest = record_hash(seq, ts, "", ev, prev)
        rows.append(
            (seq, ts, "", ev.action, ev.outcome, ev.actor_id_nat, ev.actor_name, ev.actor_profession,
             ev.auth_mode, ev.card_serial, ev.structure_id, ev.patient_ins, ev.transaction,
             json.dumps(list(ev.document_ids)), ev.access_mode, ev.reason, ev.error_code, ev.detail,
             ev.on_behalf_of, ev.rule_id, prev, digest)
        )  # fmt: skip
        prev = digest
    conn.executemany(f"INSERT INTO audit_records ({_COLUMNS}) VALUES ({', '.join('?' * 22)})", rows)  # noqa: S608
    conn.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_records "
        "BEGIN SELECT RAISE(ABORT, 'audit journal is append-only'); END"
    )
    conn.commit()
    conn.close()
    anchor = {"seq": count, "hash": prev, "journal": journal_id}
    path.with_name(path.name + ".anchor").write_text(json.dumps(anchor))
    return prev


def bench_verify(directory: Path, count: int, signer: SoftwareSigner) -> None:
    path = directory / "big.sqlite3"
    fill(path, count)
    with AuditJournal(path) as j:
        start = time.perf_counter()
        result = j.verify()
        elapsed = time.perf_counter() - start
        assert result.ok and result.count == count, result.message_fr
        print(f"verify {count:,} records: {elapsed:.2f} s ({count / elapsed:,.0f} records/s)")
        start = time.perf_counter()
        n = j.export_fhir(io.StringIO())
        fhir = time.perf_counter() - start
        start = time.perf_counter()
        j.export_csv(io.StringIO())
        csv_s = time.perf_counter() - start
        print(f"export {n:,} records: FHIR {fhir:.2f} s, CSV {csv_s:.2f} s")
        start = time.perf_counter()
        recs = j.records(patient_ins="279035121500789")
        print(f"filter by patient over {count:,} records: {(time.perf_counter() - start) * 1000:.1f} ms "
              f"({len(recs)} hits)")  # fmt: skip
        j.set_checkpoint_signer(signer, "bench")  # one checkpoint of the head
        start = time.perf_counter()
        result = j.verify()
        elapsed = time.perf_counter() - start
        assert result.ok and result.guarantee == "signed", result.message_fr
        print(f"verify {count:,} records + signed checkpoint: {elapsed:.2f} s")


def bench_policy(count: int = 20000) -> None:
    policy = AccessPolicy()
    gp = ProfessionalIdentity("899700000013", "MEDECIN", "JEAN", "10", specialty_code="SM26")
    patient = PatientRef("279035121518989", "1.2.250.1.213.1.4.10")
    dmp = DmpState(True, authorised=True)
    start = time.perf_counter()
    for _ in range(count):
        policy.decide(
            Action.RETRIEVE, identity=gp, mode=AuthMode.DIRECTE, patient=patient, dmp=dmp, type_code="11490-0"
        )
    elapsed = time.perf_counter() - start
    print(f"policy decide (retrieve with matrix lookup): {elapsed / count * 1e6:.0f} µs per decision")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder for the journals (default: a temp dir)"
    )
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU per append (1 and 4 threads)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        bench_append_cpu(directory, min(args.appends, 500), 1)
        bench_append_cpu(directory, min(args.appends, 500), 4)
        bench_append_cpu(directory, min(args.appends, 500), 1, durable=False)
        if args.cpu_only:
            return
        signer = software_signer()
        bench_appends(directory, args.appends)
        for threads in (1, 4, 8):
            bench_concurrent_appends(directory, args.appends, threads)
        bench_signed_appends(directory, args.appends, signer)
        bench_verify(directory, args.records, signer)
    bench_policy()


if __name__ == "__main__":
    main()
