"""Desktop window benchmark (issue 11 "Speed"): prints figures, asserts nothing; the goals are printed
beside them and the start-up ratio is measured side by side in the same run.

    .venv/bin/python benchmarks/bench_ui.py [--runs N] [--count N] [--latency-ms N]

``QT_QPA_PLATFORM=offscreen`` unless set otherwise.

1. process start → window shown: ``python -m ui --smoke`` (builds everything, shows the window, quits at
   once painted) vs a minimal PySide6 script (a QMainWindow with a label), each spawned ``--runs`` times,
   interleaved; both print ``shown <time.time_ns()> <CPU s>`` on the event loop right after their window's
   first paint (``ui.app.FirstPaint``, ``--print-shown``), timed from just before the spawn; the children
   run with their bytecode cached (as installed). Medians and ratio; the CPU seconds each had used by then
   are printed beside (their ratio depends far less on the machine's other load).              goal ≤ 3×
2. rubric list filled for a patient with ``--count`` documents (2,000 varied TD3.1 entries parsed by
   ``ebrim.parse_document_entries``), in the real window: what the window does when the list arrives
   (``DocumentTableModel.set_entries``, ``RubricList.set_counts``, ``FilterBar.set_types``, the sorted
   proxy, column widths) then the pending events (layout, paint) processed. Median.            goal ≤ 300 ms
3. resident memory (VmRSS) at idle: the window open on a demo patient (status, list, one document
   shown), the event loop settled for 1 s.                                                      goal ≤ 150 MB
4. longest event-loop stall during a consultation with the sandbox answering ``--latency-ms`` (3 s) late:
   a 10 ms QTimer heartbeat measures the largest gap while opening the patient → « Valider l'identité »
   → DMP status → list → open a document.                           goal ≤ 100 ms (``labels.MAX_STALL_MS``)
   (measured here only: the tests assert that the blocking steps run off the GUI thread, not this time)

The sandbox (demo data) runs in its own process (``python -m sandbox serve --demo``), as a real DMP is
remote; figures 2-4 are taken in a window process of their own (this script with ``--window-child``: the
start-up spawns and the benchmark's imports stay in the parent), over a session with the GP card profile's
software keys and the INSi stand-in of tests/fixtures/ui_session.py (no pytest); it imports what
``python -m ui`` imports (the card watch's modules included), so figure 3 is the window's own memory plus
only those stand-ins.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.fixtures.sandbox_process import demo_sandbox_process  # noqa: E402

# The minimal side marks "shown" exactly as ``ui.app.FirstPaint`` does: on the event loop right after the
# window's first paint.
MINIMAL = """
import time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow


class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            obj.removeEventFilter(self)
            QTimer.singleShot(0, shown)
        return False


def shown():
    print(f"shown {time.time_ns()} {time.process_time():.4f}", flush=True)
    app.quit()


app = QApplication([])
w = QMainWindow()
w.setCentralWidget(QLabel("Bonjour"))
mark = FirstPaint(w)
w.installEventFilter(mark)
w.show()
app.exec()
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def rss_mb() -> float:
    """VmRSS of this process in MB (Linux /proc; psutil elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil  # type: ignore[import-untyped]

    return float(psutil.Process().memory_info().rss) / 2**20


# ---------------------------------------------------------------------------------------- 1. start-up
def bench_startup(runs: int, home: Path) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seconds from spawn to the first paint of the window (the child prints ``shown <time_ns> <CPU s>``
    right after it), ``runs`` starts of each side, interleaved; and the CPU seconds the child had used
    by then (all its threads: far less sensitive than wall time to the machine's other load)."""
    # Byte-compiled modules as an installed agent has them (pip compiles at install): a
    # PYTHONDONTWRITEBYTECODE environment would recompile every ui/, ps_agent/ and cda/ module at each start,
    # which the minimal side (PySide6 only) never pays. The caches go to a temporary folder, not the tree.
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(home.parent / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    ours = [sys.executable, "-m", "ui", "--smoke", "--print-shown", "--home", str(home)]
    ours += ["--instance", f"bench-{os.getpid()}"]
    minimal = [sys.executable, "-c", MINIMAL]
    times: dict[str, list[float]] = {"ui": [], "minimal": []}
    cpu: dict[str, list[float]] = {"ui": [], "minimal": []}
    for i in range(runs + 1):  # the first pair warms the file cache, writes the bytecode: not counted
        for name, cmd in (("ui", ours), ("minimal", minimal)):
            t0 = time.time_ns()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=120)
            if proc.returncode != 0:
                raise SystemExit(f"{name} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
            marks = [line for line in proc.stdout.decode().splitlines() if line.startswith("shown ")]
            if not marks:
                raise SystemExit(f"{name} printed no 'shown' mark: {proc.stdout.decode()[-500:]}")
            if i:
                times[name].append((int(marks[0].split()[1]) - t0) / 1e9)
                cpu[name].append(float(marks[0].split()[2]))
    return times["ui"], times["minimal"], cpu["ui"], cpu["minimal"]


# ---------------------------------------------------------------------------------------- sandbox
# ---------------------------------------------------------------------------------------- window
def wait_until(app: Any, cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timeout: {what}")
        app.processEvents()
        time.sleep(0.002)


def wait_signal(app: Any, signal: Any, start: Callable[[], Any], timeout: float, what: str) -> Any:
    got: list[Any] = []
    signal.connect(lambda *a: got.append(a))
    start()
    wait_until(app, lambda: bool(got), timeout, what)
    return got[0]


def consultation(app: Any, w: Any, latency_s: float) -> tuple[float, float]:
    """Open the demo adult → « Valider l'identité » (CNI) → status → list → first document shown.
    Returns (longest stall, seconds of the consultation)."""
    from PySide6.QtWidgets import QInputDialog

    from sandbox import demo
    from tests.fixtures.gui_thread import Heartbeat
    from tests.fixtures.ui_session import demo_identity

    slow = 20 + 4 * latency_s
    with Heartbeat() as beat:  # a 10 ms timer: its longest gap is the longest stall
        t0 = time.perf_counter()
        w.open_form.fill(demo_identity(demo.DEMO_ADULT))
        wait_signal(app, w.patient_opened, w.open_form.open_btn.click, slow, "patient opened")
        QInputDialog.getItem = lambda *a, **k: ("Carte nationale d'identité", True)  # type: ignore[method-assign]
        listed = wait_signal(app, w.documents_listed, w.identity_bar.validate_btn.click, 3 * slow, "list")
        entries = list(listed[0].entries)
        if not entries:
            raise SystemExit("the demo patient has no document")
        wait_signal(app, w.document_shown, lambda: w.open_document(entries[0]), slow, "document shown")
        elapsed = time.perf_counter() - t0
    return beat.longest / 1000, elapsed


def fill_times(app: Any, w: Any, count: int, rounds: int) -> list[float]:
    """What ``MainWindow.list_documents``'s answer callback does with ``count`` entries, then the
    events it posted (layout, repaint of the sorted view) processed."""
    from ps_agent.dmp import ebrim
    from ps_agent.dmp.model import PatientId
    from ps_agent.dmp.xmlns import RIM, q
    from sandbox import demo
    from tests.fixtures import td31
    from ui.documents import fit_columns
    from ui.main_window import COLUMN_SIZE_SAMPLE_ROWS

    patient = PatientId(demo.DEMO_ADULT.ins, demo.DEMO_ADULT.oid)
    rol = td31.answer_element(td31.varied_entries(patient, count)).find(f".//{q(RIM, 'RegistryObjectList')}")
    assert rol is not None
    entries = ebrim.parse_document_entries(rol)
    assert len(entries) == count, len(entries)
    out = []
    steps: dict[str, list[float]] = {}
    for _ in range(rounds):
        w.doc_model.set_entries([])
        w.rubrics.set_counts([])
        app.processEvents()
        marks = [time.perf_counter()]
        w.doc_model.set_entries(entries, new_since=None)
        marks.append(time.perf_counter())
        w.rubrics.set_counts(entries)
        marks.append(time.perf_counter())
        w.filters.set_types(entries)
        marks.append(time.perf_counter())
        fit_columns(w.doc_table, COLUMN_SIZE_SAMPLE_ROWS, 320)
        marks.append(time.perf_counter())
        app.processEvents()
        marks.append(time.perf_counter())
        out.append(marks[-1] - marks[0])
        names = ("set_entries + sorted proxy", "rubric counts", "type filter", "column widths", "events")
        for name, a, b in zip(names, marks, marks[1:], strict=False):
            steps.setdefault(name, []).append(b - a)
        assert w.doc_proxy.rowCount() == count
    print("   medians per step: " + ", ".join(f"{k} {ms(statistics.median(v))}" for k, v in steps.items()))
    return out


def window_figures(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """Figures 4, 3, 2 in this process: the window's own (spawned by ``main`` with ``--window-child``), so
    that what it carries is what ``python -m ui`` carries — PySide6, the core, the card watch's modules —
    plus only the glue that stands for the card and INSi (the card profile's software keys, the INSi
    stand-in: ``sandbox.pki``/``profiles``/``demo`` and ``tests.fixtures.ui_session``, no pytest)."""
    importlib.import_module("ui")  # first, as in ``python -m ui``: ``ui/__init__`` precedes every import
    from PySide6.QtWidgets import QApplication

    import ps_agent.card.monitor  # noqa: F401  (imported by ``python -m ui`` at start: the card watch)
    from ps_agent.config import AgentConfig, Environment
    from ps_agent.services import Services
    from sandbox import pki
    from tests.fixtures.ui_session import InsiStandIn, software_credentials
    from ui.app import make_window, preload_core
    from ui.labels import MAX_STALL_MS

    rows: list[tuple[str, str, str]] = []
    home = Path(args.home)
    test_pki = pki.load_or_create(Path(args.pki))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    env = Environment("sandbox", args.base_url, ca_file=str(test_pki.ca_bundle))
    services = Services(AgentConfig(env, home, deposit_retries=0))
    w = make_window(services, identity_source=InsiStandIn(), auto_pin_dialog=False, segur_notice=False)
    w.show()
    preload_core().join()  # what `python -m ui` does once its window is painted, with the other pages
    w.build_pages_later()  # built in idle turns (MainWindow.build_pages_later)
    wait_until(app, lambda: all(w.tabs.built(i) for i in range(w.tabs.count())), 30, "pages built")
    w.controller.use_session(services.open_session(software_credentials(test_pki, "gp")))
    app.processEvents()
    stall, took = consultation(app, w, args.latency_ms / 1000)
    print(
        f"4. consultation (open → validate → status → list → document), sandbox {args.latency_ms} ms "
        f"late: {took:.1f} s, longest event-loop stall {ms(stall)}",
        flush=True,
    )
    settle = time.monotonic() + 1.0
    while time.monotonic() < settle:
        app.processEvents()
        time.sleep(0.01)
    rss = rss_mb()
    glue = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("sandbox", "tests", "pytest")})
    print(
        f"3. resident memory at idle, window open on the demo patient: {rss:.0f} MB "
        f"(window process; besides the window's own modules it holds only the card/INSi stand-ins' "
        f"{', '.join(glue)})",
        flush=True,
    )
    fills = fill_times(app, w, args.count, 5)
    fill = statistics.median(fills)
    print(f"2. {args.count} documents into the list: median {ms(fill)} ({', '.join(ms(f) for f in fills)})")
    rows.append((f"rubric list filled, {args.count} documents", ms(fill), "≤ 300 ms"))
    rows.append(("resident memory at idle (patient open)", f"{rss:.0f} MB", "≤ 150 MB"))
    stall_row = f"longest event-loop stall, sandbox {args.latency_ms / 1000:g} s late"
    rows.append((stall_row, ms(stall), f"≤ {MAX_STALL_MS} ms"))
    w.controller.close()
    services.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7, help="process starts of each side (figure 1)")
    ap.add_argument("--count", type=int, default=2000, help="documents of the patient (figure 2)")
    ap.add_argument("--latency-ms", type=int, default=3000, help="sandbox latency (figure 4)")
    ap.add_argument("--startup-only", action="store_true", help="figure 1 only")
    ap.add_argument("--window-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--base-url", help=argparse.SUPPRESS)
    ap.add_argument("--pki", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.window_child:
        print("ROWS " + json.dumps(window_figures(args)), flush=True)
        return

    from sandbox import pki

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        tmpd = Path(tmp)
        uis, mins, cpu_uis, cpu_mins = bench_startup(args.runs, tmpd / "smoke-home")
        t_ui, t_min = statistics.median(uis), statistics.median(mins)
        c_ui, c_min = statistics.median(cpu_uis), statistics.median(cpu_mins)
        print(
            f"1. spawn → window painted, medians of {args.runs}: python -m ui {ms(t_ui)} "
            f"({', '.join(ms(t) for t in uis)}) / minimal PySide6 window {ms(t_min)} "
            f"({', '.join(ms(t) for t in mins)}); CPU used by then {ms(c_ui)} / {ms(c_min)} "
            f"= {c_ui / c_min:.2f}×"
        )
        rows.append(("process start → window shown (/ minimal window)", f"{t_ui / t_min:.2f}×", "≤ 3×"))
        if args.startup_only:
            print(f"ratio {t_ui / t_min:.2f}× (goal ≤ 3×)")
            return

        pki.load_or_create(tmpd / "pki")
        with demo_sandbox_process(tmpd / "data", tmpd / "pki", args.latency_ms) as base_url:
            # figures 2-4 in a process of their own: this one has spawned the start-ups and holds the
            # benchmark's own imports, which the window a user runs does not
            cmd = [sys.executable, str(Path(__file__).resolve()), "--window-child", "--base-url", base_url,
                   "--pki", str(tmpd / "pki"), "--home", str(tmpd / "home"), "--count", str(args.count),
                   "--latency-ms", str(args.latency_ms)]  # fmt: skip
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            child = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=600)
            for line in child.stdout.splitlines():
                if line.startswith("ROWS "):
                    rows += [tuple(r) for r in json.loads(line[5:])]
                else:
                    print(line)
            if child.returncode != 0:
                raise SystemExit(f"the window process exited {child.returncode}")
    print()
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':>10}  goal")
    for figure, measured, goal in rows:
        print(f"{figure:<{width}}  {measured:>10}  {goal}")


if __name__ == "__main__":
    main()
