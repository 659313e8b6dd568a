"""Deposit queue figures: CPU (this process, user + system) and wall time of the queue calls one deposit
makes on the Session path — ``find_same`` (no match), ``add(claim=True)``, ``mark_registered``,
``mark_journaled`` — for a document of the size the agent benchmark deposits (263 KB), plus the SQL
statements per deposit and what is left on disk. Each transition is durable (fsync) as in the agent.

    .venv/bin/python benchmarks/bench_queue.py [--deposits 60] [--size 269000] [--dir DIR]

``--dir``: where the queue file goes (default a temporary folder; give a folder on the disk the agent
uses: tmpfs has no fsync cost).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ps_agent.outbox import DepositQueue

PATIENT = ("279037505612309", "1.2.250.1.213.1.4.10", "QUAL")


def resource_usage() -> tuple[float, float]:
    """(user, system) CPU seconds of this process (``getrusage`` where it exists: ``os.times`` ticks are
    10 ms on Linux)."""
    try:
        import resource
    except ImportError:  # Windows
        t = os.times()
        return t.user, t.system
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(folder: Path, deposits: int, size: int) -> None:
    q = DepositQueue(folder / "outbox.sqlite3")
    statements = [0]
    ops: dict[str, list[tuple[float, float, float]]] = {
        "find_same": [],
        "add": [],
        "mark_registered": [],
        "mark_journaled": [],
    }

    def timed(name: str, fn: Callable[[], object]) -> None:
        r0, w0 = resource_usage(), time.perf_counter()
        fn()
        r1 = resource_usage()
        ops[name].append((r1[0] - r0[0], r1[1] - r0[1], time.perf_counter() - w0))

    per_deposit_statements = []
    counting = deposits + 2  # a last deposit with statements counted (the trace costs CPU: not timed)
    for n in range(deposits + 3):
        if n == counting:
            q._con.set_trace_callback(lambda _s: statements.__setitem__(0, statements[0] + 1))
        doc = (b"<ClinicalDocument>%d" % n).ljust(size, b"x") + b"</ClinicalDocument>"
        uids = (f"2.25.{n}1",)
        sha1s = (hashlib.sha1(doc).hexdigest(),)  # noqa: S324 - the XDS hash, computed by the caller
        entry_id = f"2.25.{n}0"
        before = statements[0]
        timed("find_same", lambda: q.find_same(uids, (doc,), document_sha1=sha1s))  # noqa: B023
        timed(
            "add",
            lambda: q.add(
                entry_id, PATIENT, uids, (doc,), (False, False, False), ("",),  # noqa: B023
                titles=("Lettre",), actor_id_nat="810001", claim=True, document_sha1=sha1s,  # noqa: B023
            ),
        )  # fmt: skip
        timed("mark_registered", lambda: q.mark_registered(entry_id))  # noqa: B023
        timed("mark_journaled", lambda: q.mark_journaled(entry_id))  # noqa: B023
        per_deposit_statements.append(statements[0] - before)
        if n < 2 or n == counting:  # warm-up, counted run
            for v in ops.values():
                v.pop()
    q.close()
    total_cpu = total_wall = total_mean = 0.0
    print(
        f"deposit queue, {deposits} deposits of {size // 1000} KB (median per call, mean beside it: the "
        "mean includes the periodic WAL checkpoints; CPU = user + system):"
    )
    for name, samples in ops.items():
        user = statistics.median(s[0] for s in samples)
        system = statistics.median(s[1] for s in samples)
        cpu = statistics.median(s[0] + s[1] for s in samples)
        mean = statistics.fmean(s[0] + s[1] for s in samples)
        wall = statistics.median(s[2] for s in samples)
        total_cpu += cpu
        total_mean += mean
        total_wall += wall
        print(
            f"  {name:16s} CPU {cpu * 1000:6.3f} ms (user {user * 1000:6.3f}, system {system * 1000:6.3f};"
            f" mean {mean * 1000:6.3f})   wall {wall * 1000:7.3f} ms"
        )
    print(
        f"  {'per deposit':16s} CPU {total_cpu * 1000:6.3f} ms (mean {total_mean * 1000:6.3f})"
        f"   wall {total_wall * 1000:7.3f} ms"
    )
    print(f"  SQL statements per deposit: {per_deposit_statements[-1]}")
    print(f"  left on disk after {deposits + 3} registered deposits: {_disk_bytes(folder) // 1024} KB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deposits", type=int, default=60)
    ap.add_argument("--size", type=int, default=269_000, help="document bytes (263 KB as in bench_agent)")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            run(Path(tmp), args.deposits, args.size)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args.deposits, args.size)


if __name__ == "__main__":
    main()
