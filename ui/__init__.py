"""PySide6 user interface: a thin client of ps_agent's public API (never the network or the card).

Two resident-memory cuts for the window's process (``benchmarks/bench_ui.py``, figure 3), made here so that
they precede every other import of ``python -m ui``:

- httpx's ``__init__`` imports its command-line client (``httpx._main``: click, rich, pygments) whenever
  those are installed — they are wherever uvicorn or schemathesis are — and the window never runs it. A
  ``None`` entry in ``sys.modules`` makes that import fail, and httpx defines its stub ``main`` instead.
- PySide6's import hook (``shibokensupport.feature``, for ``from __feature__ import …``) reads the source of
  every module imported after PySide6 with ``inspect.getsource`` to look for "PySide6", which leaves each
  file's lines in ``linecache`` for the life of the process (~90,000 lines, ~9 MB at idle). The wrapper
  below lets it scan as before (its answer is kept in its own table) and drops what the scan alone added to
  ``linecache`` (a pure cache: a traceback re-reads its lines), and skips the scan for the standard library
  and the Qt-free core (``_QT_FREE``) and for this package (``_QT_USERS``). Guarded: without that private
  function (another PySide6), nothing is changed.
"""

import linecache
import sys
from collections.abc import Callable
from typing import Any

import PySide6.QtCore  # noqa: F401  (installs the import hook wrapped below)

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"


# Packages whose modules never use PySide6, so that the hook's source scan is skipped for them (≈ 0.15 ms a
# module, ≈ 40 ms a start): the standard library, and the Qt-free core (tests/test_architecture.py enforces
# that ps_agent and cda never import PySide6). Their answer (-1, "ignore this module" for ``__feature__``)
# is the one the scan gives for a module that does not name PySide6; a module that only names it in a
# comment would have got 0 ("no feature"): the same behaviour, since no module selects a feature.
_QT_FREE = frozenset(sys.stdlib_module_names) | {"ps_agent", "cda"}
# This package's own modules: the window's, whose answer is 0 ("uses PySide6, no feature") without reading
# their source (≈ 0.3 ms each, ≈ 6 ms a start); the few that do not name PySide6 (labels) would have got
# -1, the same behaviour as long as no module selects a feature.
_QT_USERS = frozenset({"ui"})


def _scan_without_caching(scan: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def uses_pyside(module: Any) -> bool:
        package = str(getattr(module, "__name__", "")).partition(".")[0]
        if package in _QT_FREE:
            return False
        if package in _QT_USERS:
            return True
        before = set(linecache.cache)
        try:
            return scan(module)
        finally:
            for key in set(linecache.cache) - before:
                linecache.cache.pop(key, None)

    uses_pyside.__wrapped__ = scan  # type: ignore[attr-defined]
    return uses_pyside


_feature = sys.modules.get("shibokensupport.feature")
_scan = getattr(_feature, "_mod_uses_pyside", None)
if callable(_scan) and not hasattr(_scan, "__wrapped__"):
    _feature._mod_uses_pyside = _scan_without_caching(_scan)  # type: ignore[union-attr]
