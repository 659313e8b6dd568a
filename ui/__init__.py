"""PySide6 user interface: a thin client of ps_agent's public API (never the network or the card)."""

import sys

# httpx's ``__init__`` imports its command-line client (``httpx._main``: click, rich, pygments) whenever
# those are installed — they are in any environment with uvicorn or schemathesis — and the window never runs
# it: ~8 MB resident for nothing (benchmarks/bench_ui.py, figure 3). A ``None`` entry makes that import fail,
# and httpx then defines its stub ``main`` instead. Set before httpx is first imported (the window imports
# it on its preload thread, after the first paint); a no-op when httpx is already there.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"
