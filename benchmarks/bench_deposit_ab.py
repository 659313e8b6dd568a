"""Figure 1 of bench_agent.py (agent CPU per deposit through ``session.patient(ref).deposit``, the DMP
answering in-process, and the floor beside it) for TWO checkouts at once, alternated deposit by deposit:
on a shared machine the load swings by ±30 % within a minute, so two runs one after the other compare
the load as much as the code; here each deposit of one checkout has its twin of the other a few
milliseconds away, and the paired difference is printed beside each side's median.

    .venv/bin/python benchmarks/bench_deposit_ab.py [--deposits 120] CHECKOUT_A CHECKOUT_B

Each checkout runs in its own process (its own sandbox, agent home and interpreter; this script with the
checkout as working folder and first on ``sys.path``, so a checkout without this file can be compared);
the order within a pair alternates.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(count: int) -> None:
    """One deposit per line read on stdin; prints "agent_cpu floor_cpu" (seconds) for each."""
    sys.path.insert(0, os.getcwd())
    import benchmarks.bench_agent as bench
    from cda.xml import safe_parse
    from ps_agent.access.policy import PatientRef
    from ps_agent.agent import Agent
    from ps_agent.config import AgentConfig, Environment
    from sandbox import demo, pki
    from tests.e2e import docs
    from tests.fixtures.integration import credentials
    from tests.fixtures.sandbox_process import demo_sandbox_process

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        test_pki = pki.load_or_create(tmpd / "pki")
        with demo_sandbox_process(tmpd / "data", tmpd / "pki") as base_url:
            creds = credentials(test_pki, "gp")
            env = Environment("sandbox", base_url, ca_file=str(test_pki.ca_bundle))
            transport = bench.BenchTransport(
                creds.tls_transport(ca_file=env.ca_file, verify_host=env.verify_host)
            )
            signer = creds.vihf_signer()
            signed_info = b"<ds:SignedInfo>" + b"x" * 1000 + b"</ds:SignedInfo>"
            with Agent(creds, AgentConfig(env, tmpd / "home"), transport=transport) as agent:
                adult = PatientRef(demo.DEMO_ADULT.ins, demo.DEMO_ADULT.oid)
                letters = [
                    docs.letter(demo.DEMO_ADULT, "gp", title=f"AB {i}", size=200_000)
                    for i in range(count + 1)
                ]
                handle = agent.session.patient(adult)
                handle.deposit(letters[0])  # warm-up: TD0.2 asked once, caches filled
                transport.instant_deposit = True
                print("ready", flush=True)
                for data in letters[1:]:
                    sys.stdin.readline()
                    before = transport.own_cpu
                    t0 = time.process_time()
                    handle.deposit(data)
                    agent_cpu = time.process_time() - t0 - (transport.own_cpu - before)
                    t0 = time.process_time()
                    safe_parse(data)
                    hashlib.sha256(data).digest()
                    signer.sign(signed_info)
                    signer.sign(signed_info + b" ")
                    print(f"{agent_cpu} {time.process_time() - t0}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deposits", type=int, default=120)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("checkouts", nargs="*")
    args = ap.parse_args()
    if args.worker:
        worker(args.deposits)
        return
    if len(args.checkouts) != 2:
        ap.error("two checkouts are needed")
    trees = [str(Path(t).resolve()) for t in args.checkouts]
    procs = []
    for i, tree in enumerate(trees):
        env = {**os.environ, "PYTHONPATH": tree, "PYTHONPYCACHEPREFIX": f"{tempfile.gettempdir()}/ab-pyc-{i}"}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),  # this script, the checkout first on sys.path
                    "--worker",
                    "--deposits",
                    str(args.deposits),
                ],
                cwd=tree,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        line = p.stdout.readline().strip() if p.stdout else ""
        if line != "ready":
            raise SystemExit(f"a worker did not start: {line!r}")
    agent: list[list[float]] = [[], []]
    floor: list[list[float]] = [[], []]
    for k in range(args.deposits):
        for i in (0, 1) if k % 2 == 0 else (1, 0):
            p = procs[i]
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            a, f = map(float, p.stdout.readline().split())
            agent[i].append(a)
            floor[i].append(f)
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    for i, tree in enumerate(trees):
        a, f = statistics.median(agent[i]), statistics.median(floor[i])
        print(f"{tree}: agent CPU per deposit {a * 1000:.2f} ms / floor {f * 1000:.2f} ms = {a / f:.2f}")
    diff = [b - a for a, b in zip(agent[0], agent[1], strict=True)]
    print(
        f"paired difference (second - first), {args.deposits} pairs: "
        f"median {statistics.median(diff) * 1000:+.2f} ms, mean {statistics.mean(diff) * 1000:+.2f} ms"
    )


if __name__ == "__main__":
    main()
