"""The hot folder's OWN CPU per item, without the network or the agent's deposit (prints figures, asserts
nothing): COUNT dropped PDF + sidecar pairs handled with a stand-in backend whose deposit settles at once
(REGISTERED), first by ``HotFolder.process`` called in turn on one thread, then by the hot folder started
with WORKERS threads (its watcher, rescans every 0.5 s as in bench_hotfolder.py, hand-offs). What is left is
the hot folder's work per item: claiming the files, reading and checking the sidecar and the PDF, building
the level-1 CDA, the ledger, moving the files, the receipt. CPU of the whole process, user and system (the
fsyncs, renames and creations are system time), per round.

    .venv/bin/python benchmarks/bench_hotfolder_steps.py [--count 300] [--rounds 3] [--workers 8] [--profile]

``--profile`` prints the Python calls per item (a figure the machine's load does not change) and the top
functions of one more round (cProfile on thread CPU time; ``SORT=tottime`` or ``SORT=ncalls`` to reorder).
A/B against another checkout: copy this file elsewhere and run it with ``PYTHONPATH`` set to that checkout.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ps_agent.events import QUEUE_CHANGED, Events  # noqa: E402
from ps_agent.hotfolder import DEFAULT_WORKERS, HotFolder  # noqa: E402
from ps_agent.outbox import EntryState, QueuedDeposit  # noqa: E402
from tests.fixtures.integration import author_json, patient_json, pdf  # noqa: E402


class _Handle:
    def __init__(self, backend: _Backend, ref: Any) -> None:
        self.backend, self.ref = backend, ref

    def deposit(self, doc: bytes, **_: Any) -> Any:
        b = self.backend
        b.n += 1
        entry = QueuedDeposit(
            id=f"1.2.3.{b.n}", patient_ins=self.ref.ins, patient_oid=self.ref.oid, ins_status="QUAL",
            document_uids=(f"2.25.{b.n}",), documents=(), visibility=(False, False, False), replaces=("",),
            replaces_entry_uuids=("",), titles=("Compte rendu",), actor_id_nat="x", on_behalf_of="",
            created="", updated="", state=EntryState.REGISTERED,
        )  # fmt: skip
        b.entries[entry.id] = entry
        b.services.events.emit(QUEUE_CHANGED, entry)
        return SimpleNamespace(value=entry)


class _Backend:
    """Only what the hot folder asks of ``ApiBackend``: the session's deposit settles at once."""

    def __init__(self) -> None:
        self.n = 0
        self.entries: dict[str, QueuedDeposit] = {}
        queue = SimpleNamespace(get=self.entries.get, entries=lambda *a: list(self.entries.values()))
        self.services = SimpleNamespace(events=Events(), queue=queue)

    def session(self) -> Any:
        return SimpleNamespace(patient=lambda ref: _Handle(self, ref))


def sidecar(title: str) -> dict[str, object]:
    from sandbox.demo import DEMO_ADULT

    return {"patient": patient_json(DEMO_ADULT), "type_code": "11490-0", "title": title,
            "author": author_json("gp"), "MASQUE_PS": "N", "INVISIBLE_PATIENT": "N",
            "INVISIBLE_REP_LEGAUX": "N"}  # fmt: skip


def one_round(
    base: Path, count: int, tag: str, prof: cProfile.Profile | None, workers: int = 0
) -> tuple[float, float]:
    """CPU ms per item (user, system): ``process`` called in turn on this thread, or with ``workers`` the
    hot folder started (its watcher, rescans and worker threads) until every item is finished."""
    root = base / tag
    backend = _Backend()
    folder = HotFolder(root, backend, workers=max(workers, 1), rescan_interval_s=0.5)  # type: ignore[arg-type]
    disconnect = None
    if not workers:  # what ``start`` does, without its threads
        disconnect = backend.services.events.connect(QUEUE_CHANGED, folder._on_queue_changed)
    for i in range(count):
        name = f"cr{i:05d}"
        (root / "inbox" / f"{name}.pdf").write_bytes(pdf(f"CR {tag} {i}"))
        (root / "inbox" / f"{name}.json").write_text(json.dumps(sidecar(f"CR {tag} {i}")), "utf-8")
    stems = folder.complete_items()
    finished = itertools.count(1)
    all_finished = threading.Event()

    def on_finished(name: str, outcome: str) -> None:
        if next(finished) >= count:
            all_finished.set()

    folder.on_finished = on_finished
    if prof is not None:
        prof.enable()
    t0 = os.times()
    if workers:
        folder.start()
        all_finished.wait(600)
    else:
        for stem in stems:
            folder.process(stem)
    t1 = os.times()
    if prof is not None:
        prof.disable()
    done = len(list(folder.done.glob("*.receipt.json")))
    if done != count:
        print(f"   ! {done} receipts of {count}")
    if disconnect is None:
        folder.stop()
    else:
        disconnect()
        folder.ledger.close()
    return (t1.user - t0.user) / count * 1000, (t1.system - t0.system) / count * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        one_round(base, 20, "warm", None)
        for workers in (0, args.workers):
            figures = [
                one_round(base, args.count, f"r{workers}-{r}", None, workers) for r in range(args.rounds)
            ]
            total = [u + s for u, s in figures]
            how = f"{workers} workers started" if workers else "process() on one thread"
            print(f"hot folder's own CPU per item ({args.count} items, {how}, no network), user + system "
                  "per round: " + ", ".join(f"{u:.2f} + {s:.2f}" for u, s in figures)
                  + f" ms  (min total {min(total):.2f} ms)")  # fmt: skip
        if args.profile:
            prof = cProfile.Profile(time.thread_time)
            one_round(base, args.count, "prof", prof)
            stats = pstats.Stats(prof)
            # a figure the machine's load does not change: the Python calls made per item
            print(f"Python function calls per item: {stats.total_calls / args.count:.0f}")  # type: ignore[attr-defined]
            stats.sort_stats(os.environ.get("SORT", "cumulative")).print_stats(45)


if __name__ == "__main__":
    main()
