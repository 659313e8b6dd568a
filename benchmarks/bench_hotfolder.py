"""Hot-folder and local-API benchmark (issue 12): prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_hotfolder.py [--count 1000] [--patients 1] [--workers 8]
        [--latency-ms 0]

    # the same bench against another checkout's code (its PYTHONPATH wins over this file's folder):
    cd /work/base && PYTHONPATH=$PWD .venv/bin/python /path/to/bench_hotfolder.py --patients 250

1. A hot folder of COUNT single-page PDF reports in AIR mode (establishment keys of the test PKI):
   documents per second from the start of the hot folder (files all dropped before) to the last receipt,
   beside the rate at which a bare client gets the same sandbox to accept the same number of documents in
   the same run. Goal: ratio ≥ 0.7. How each side is measured:
   - bare client: every submission is built, signed (XAdES, VIHF) and serialised BEFORE the clock starts
     (``DmpClient.prepare``: the same bytes the agent would send), then POSTed on WORKERS threads over the
     agent's own httpx client (same TLS set-up, up to WORKERS connections), each answer checked for
     success; it runs before AND after the hot folder (the machine's load drifts: the ratio uses the mean
     of the two, both are printed);
   - hot folder: ``HotFolder(workers=WORKERS)``: at most WORKERS deposits in flight, each worker reading,
     building (CDA level 1 from the PDF + sidecar), signing and sending its item, receipts written;
   - same sandbox process (``python -m sandbox serve``, its own process as a real DMP is remote), same
     single-page PDF (``tests.fixtures.integration.pdf``), same patients, same AIR credentials.
   PATIENTS: the documents are spread round-robin over that many patients, each with an active DMP
   (``--patients 1``: every document for the demo adult, as before; more: the demo adult and PATIENTS - 1
   generated patients with valid NIR keys, opened in the sandbox's store by ``Store.create_patient``
   before the sandbox starts). The bare client posts its pre-built submissions for the same patients in
   the same proportions, so both sides give the sandbox the same work; the agent's TD0.2 per new patient
   (a precondition of a deposit, DEP-03, asked once per patient per ``STATUS_TTL_S``) is the agent's work
   and stays in its figure. A hospital's batch is for many patients (``--patients 250``: 4 documents each).
   Also the agent's own deposit rate on the same threads without the hot folder, to tell the two costs
   apart, and the CPU per document of the agent's process and of the sandbox's process in each phase
   (when both sides are CPU-bound on their own core, the ratio is about sandbox CPU / agent CPU).
2. API latency of an accepted deposit request (POST /v1/deposits → 202), p50 and p99.
3. The agent's resident memory during the batch (sampled; flat, not growing with the count).

The sandbox runs in its own process (``python -m sandbox serve``), as a real DMP is remote.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# after PYTHONPATH's entries: this file can measure another checkout's code (PYTHONPATH=that checkout)
sys.path.append(str(ROOT))

import httpx  # noqa: E402

from ps_agent.api import ApiBackend, ApiServer, create_app, load_or_create_token  # noqa: E402
from ps_agent.auth.model import AuthMode  # noqa: E402
from ps_agent.config import AgentConfig, Environment  # noqa: E402
from ps_agent.dmp.ebrim import DepositItem  # noqa: E402
from ps_agent.dmp.metadata import entry_from_cda  # noqa: E402
from ps_agent.dmp.model import Visibility  # noqa: E402
from ps_agent.hotfolder import DEFAULT_WORKERS, HotFolder  # noqa: E402
from ps_agent.hotfolder.ledger import DONE  # noqa: E402
from ps_agent.services import Services  # noqa: E402
from tests.fixtures.integration import author_json, credentials, patient_json, pdf  # noqa: E402
from tests.fixtures.sandbox_process import demo_sandbox_process  # noqa: E402


def rss_mib() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):  # not Linux: peak instead of current (0 on Windows)
        try:
            import resource
        except ImportError:
            return 0.0
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def load_average() -> str:
    """The machine's 1/5/15-minute load (the figures move with it on a shared machine); "?" on Windows."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "?"


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far; 0 where /proc is missing (not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class Cpu:
    """CPU per document of this process (the agent) and of the sandbox's process over one phase."""

    sandbox_pid = 0

    @classmethod
    def set_sandbox_pid(cls, pid: int) -> None:
        cls.sandbox_pid = pid

    def __init__(self) -> None:
        self.agent0, self.sandbox0 = time.process_time(), proc_cpu_s(self.sandbox_pid)

    def per_doc_ms(self, n: int) -> tuple[float, float]:
        return ((time.process_time() - self.agent0) / n * 1000,
                (proc_cpu_s(self.sandbox_pid) - self.sandbox0) / n * 1000)  # fmt: skip


def sidecar(p: object, title: str) -> dict[str, object]:
    return {"patient": patient_json(p), "type_code": "11490-0", "title": title, "author": author_json("gp"),
            "MASQUE_PS": "N", "INVISIBLE_PATIENT": "N", "INVISIBLE_REP_LEGAUX": "N"}  # fmt: skip


def show(c: tuple[float, float]) -> str:
    return f"agent {c[0]:.1f}, sandbox {c[1]:.1f}"


def bare_rate(
    services: Services,
    session: object,
    patients: list[Any],
    count: int,
    workers: int,
    tag: str,
    *,
    status_first: bool = False,
) -> tuple[float, tuple[float, float]]:
    """Pre-built submissions POSTed on ``workers`` threads: the sandbox's acceptance rate alone (and the
    CPU per document of the poster and of the sandbox while it lasts). Document i is for patient
    ``i % len(patients)``, as in the hot folder. ``status_first``: the first document of each patient is
    preceded, on the same thread, by a pre-built TD0.2 for that patient (DEP-03: the DMP's status is a
    precondition of a deposit for any client, not agent work)."""
    from cda import build
    from ps_agent.dmp import hl7
    from ps_agent.dmp.client import CallContext
    from tests.e2e import docs

    client = session.client  # type: ignore[attr-defined]
    url = services.config.environment.url("repository")
    status_url = services.config.environment.url("patients")
    prepared: list[list[tuple[str, str, bytes]]] = []
    for i in range(count):
        p = patients[i % len(patients)]
        data = build.level1(type_code="11490-0", content=pdf(f"Bare {tag} {i}"), title=f"Bare {tag} {i}",
                            patient=docs.patient_input(p), author=docs.author_input("gp"),
                            media_type="application/pdf")  # fmt: skip
        entry, _ = entry_from_cda(data, (p.ins, p.oid), Visibility())  # type: ignore[attr-defined]
        ss = replace(client.submission_set(entry.patient_id), authors=(entry.authors[0],))
        body, parts = client.build_deposit(ss, [DepositItem(entry, data)])
        ctype, payload, _ = client.prepare(
            "TD2.1", "repository", body, CallContext(entry.patient_id), mtom_parts=parts
        )
        requests = [(url, ctype, payload)]
        if status_first and i < len(patients):
            ctype, payload, _ = client.prepare(
                "TD0.2", "patients", hl7.build_request(entry.patient_id, client._lps),
                CallContext(entry.patient_id),
            )  # fmt: skip
            requests.insert(0, (status_url, ctype, payload))
        prepared.append(requests)

    def post(item: list[tuple[str, str, bytes]]) -> None:
        for to, ctype, payload in item:
            r = client._http.post(to, content=payload, headers={"Content-Type": ctype})
            assert r.status_code == 200 and b"Failure" not in r.content and b"Fault>" not in r.content, (
                r.text[:300]
            )

    post(prepared[0])
    cpu = Cpu()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, prepared[1:]))
    return (count - 1) / (time.perf_counter() - t0), cpu.per_doc_ms(count - 1)


def agent_rate(
    session: object, patients: list[Any], count: int, workers: int
) -> tuple[float, tuple[float, float]]:
    """The agent's own deposits (``PatientHandle.deposit`` of built CDAs) on ``workers`` threads, no hot
    folder: splits the hot folder's cost from the agent's (queue, journal, signatures). Document i for
    patient ``i % len(patients)`` (the caller gives as many patients as keep the hot folder's documents per
    patient), each handle asked for per document as the hot folder does."""
    from cda import build
    from ps_agent.access.policy import PatientRef
    from ps_agent.context import Context
    from tests.e2e import docs

    def deposit(i_cda: tuple[int, bytes]) -> None:
        p = patients[i_cda[0] % len(patients)]
        h = session.patient(PatientRef(p.ins, p.oid, "QUAL"))  # type: ignore[attr-defined]
        h.deposit(i_cda[1], ctx=Context(background=True))

    cdas = [(i, build.level1(type_code="11490-0", content=pdf(f"Agent {i}"), title=f"Agent {i}",
                             patient=docs.patient_input(patients[i % len(patients)]),
                             author=docs.author_input("gp"), media_type="application/pdf"))
            for i in range(count)]  # fmt: skip
    deposit(cdas[0])
    cpu = Cpu()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(deposit, cdas[1:]))
    return (count - 1) / (time.perf_counter() - t0), cpu.per_doc_ms(count - 1)


def spread_patients(n: int) -> list[Any]:
    """The demo adult and ``n - 1`` fictitious patients (test INS OID, valid NIR keys, traits matching the
    NIR: sex, year and month of birth; born in Paris 20e, a commune no demo patient has, so never one
    of them), distinct from one another for n up to ≈ 700,000."""
    from cda.ins import nir_key
    from sandbox import demo

    out: list[Any] = [demo.DEMO_ADULT]
    for i in range(n - 1):
        sex = 1 + i % 2
        rest = i // 999
        yy, mm = 40 + (rest // 12) % 60, rest % 12 + 1
        first13 = f"{sex}{yy:02d}{mm:02d}75120{i % 999 + 1:03d}"
        out.append(demo.DemoPatient(
            f"{first13}{nir_key(first13):02d}", demo.TEST_INS_OID, f"BANC-PATIENT-{i + 1}", "ALEX",
            f"19{yy:02d}{mm:02d}15", "M" if sex == 1 else "F", "75120",
        ))  # fmt: skip
    return out


def open_dmps(data_dir: Path, patients: list[Any]) -> None:
    """An active DMP for each patient in the sandbox's store (before the sandbox starts on ``data_dir``;
    the demo patients are left to its ``--demo`` seed)."""
    from sandbox import demo
    from sandbox.dmp.store import Store

    demo_ins = {d.ins for d in demo.DEMO_PATIENTS}
    store = Store(data_dir)
    try:
        for p in patients:
            if p.ins not in demo_ins:
                store.create_patient(p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex,
                                     p.birth_place)  # fmt: skip
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    # the hot folder's default; the bare client posts on as many threads (and the same connection pool)
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--api-requests", type=int, default=200)
    ap.add_argument("--latency-ms", type=int, default=0)
    # 1: every document for one patient (the figure of earlier runs); a hospital's batch is for many
    ap.add_argument("--patients", type=int, default=1, help="documents spread round-robin over N patients")
    args = ap.parse_args()
    if not 1 <= args.patients <= args.count:
        ap.error("--patients: between 1 and --count")
    from sandbox import demo, pki

    p = demo.DEMO_ADULT
    patients = spread_patients(args.patients)
    # the agent's own deposits (fewer documents): as many documents per patient as in the hot folder
    own_count = min(args.count, 300)
    own_patients = patients[: max(1, round(own_count * args.patients / args.count))]
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        test_pki = pki.load_or_create(tmpd / "pki")
        open_dmps(tmpd / "data", patients)
        with demo_sandbox_process(
            tmpd / "data", tmpd / "pki", args.latency_ms, on_start=Cpu.set_sandbox_pid
        ) as base_url:
            env = Environment("sandbox", base_url, ca_file=str(test_pki.ca_bundle))
            services = Services(AgentConfig(env, tmpd / "home"))
            air = credentials(test_pki, "secretary", AuthMode.INDIRECTE_RENFORCEE)
            session = services.open_session(air)
            backend = ApiBackend(services, lambda: session, deposit_workers=args.workers)

            bare1, bare1_cpu = bare_rate(services, session, patients, args.count, args.workers, "a")
            many = args.patients > 1
            bare_args = (services, session, patients, args.count, args.workers)
            if many:  # the bare client asking each patient's TD0.2 first, as any client must (DEP-03)
                bare1s, _ = bare_rate(*bare_args, "c", status_first=True)
            # on a session of its own: the hot folder's session meets every patient new (TD0.2 included)
            own_session = services.open_session(air)
            agent, agent_cpu = agent_rate(own_session, own_patients, own_count, args.workers)
            own_session.close()

            root = tmpd / "depot"
            folder = HotFolder(root, backend, workers=args.workers, rescan_interval_s=0.5)
            for i in range(args.count):  # dropped before the start: the batch is all there
                name = f"cr{i:05d}"
                (root / "inbox" / f"{name}.pdf").write_bytes(pdf(f"CR {i}"))
                sc = sidecar(patients[i % args.patients], f"CR banc {i}")
                (root / "inbox" / f"{name}.json").write_text(json.dumps(sc), "utf-8")
            rss: list[float] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.5):
                    rss.append(rss_mib())

            sampler = threading.Thread(target=sample, daemon=True)
            # the end of the batch is signalled by the hot folder's own callback (polling the ledger with
            # count(*) every 50 ms cost the agent's process ≈ 1 % of its GIL time, growing with the batch)
            finished = itertools.count(1)  # next() is atomic: the workers call on_finished at once
            all_finished = threading.Event()

            def on_finished(name: str, outcome: str) -> None:
                if next(finished) >= args.count:
                    all_finished.set()

            folder.on_finished = on_finished
            rss.append(rss_mib())
            cpu = Cpu()
            t0 = time.perf_counter()
            sampler.start()
            folder.start()
            while not all_finished.wait(5.0) and folder.ledger.count(DONE) < args.count:
                pass  # a slow check every 5 s in case an outcome were not signalled
            elapsed = time.perf_counter() - t0
            done_count = folder.ledger.count(DONE)
            assert done_count == args.count, f"{done_count} of {args.count} registered"
            hot_cpu = cpu.per_doc_ms(args.count)
            stop.set()
            folder.stop()
            bare2, bare2_cpu = bare_rate(services, session, patients, args.count, args.workers, "b")
            bare = (bare1 + bare2) / 2
            if many:
                bare2s, _ = bare_rate(*bare_args, "d", status_first=True)
            rate = args.count / elapsed
            print(f"0. patients: {args.patients} (documents round-robin, ≈ {args.count / args.patients:g} "
                  f"each; every patient new to the hot folder's session: one TD0.2 each in its figure); "
                  f"load average at the end: {load_average()}; code measured: "
                  f"{Path(sys.modules['ps_agent'].__file__ or '').parents[1]}")  # fmt: skip
            print(f"1. hot folder, {args.count} single-page PDFs, AIR mode, {args.workers} workers: "
                  f"{rate:.1f} documents/s  |  bare client (pre-built submissions), before / after: "
                  f"{bare1:.1f} / {bare2:.1f} documents/s  |  ratio {rate / bare:.2f} (goal ≥ 0.7)"
                  )  # fmt: skip
            if many:
                print(f"   bare client asking each patient's TD0.2 before its first deposit (DEP-03, any "
                      f"client must), before / after: {bare1s:.1f} / {bare2s:.1f} documents/s  |  ratio "
                      f"{rate / ((bare1s + bare2s) / 2):.2f}")  # fmt: skip
            print(f"   the agent's own deposits, same threads, no hot folder: {agent:.1f} documents/s "
                  f"(ratio {agent / bare:.2f}); the difference is the hot folder's own work")  # fmt: skip
            print(f"   CPU ms per document — hot folder: {show(hot_cpu)}; agent's own deposits: "
                  f"{show(agent_cpu)}; bare client: {show(bare1_cpu)} / {show(bare2_cpu)}")  # fmt: skip
            if hot_cpu[0] and agent_cpu[0]:
                print(f"   sandbox CPU / agent CPU per document (the ratio when both are CPU-bound, each on "
                      f"its own core): hot folder {hot_cpu[1] / hot_cpu[0]:.2f}, agent's own deposits "
                      f"{agent_cpu[1] / agent_cpu[0]:.2f}")  # fmt: skip

            token = load_or_create_token(tmpd / "config")
            server = ApiServer(create_app(backend, token), port=0)
            server.start()
            lat = []
            body_pdf = base64.b64encode(pdf("API")).decode()
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
                for i in range(args.api_requests):
                    body = {"patient": patient_json(p), "pdf_base64": body_pdf, "type_code": "11490-0",
                            "title": f"API {i}", "author": author_json("gp")}  # fmt: skip
                    t = time.perf_counter()
                    r = c.post("/v1/deposits", json=body)
                    lat.append(time.perf_counter() - t)
                    assert r.status_code == 202, r.text
            server.stop()
            backend.close()
            q = statistics.quantiles(lat, n=100)
            print(f"2. API accepted deposit (202) latency over {len(lat)} requests: "
                  f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")  # fmt: skip
            n = len(rss)
            marks = [rss[0], rss[n // 4], rss[n // 2], rss[3 * n // 4], rss[-1]]
            print("3. resident memory during the batch (start, 25 %, 50 %, 75 %, end): "
                  + ", ".join(f"{m:.0f}" for m in marks) + " MiB")  # fmt: skip
            session.close()
            services.close()


if __name__ == "__main__":
    main()
