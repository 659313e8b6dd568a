"""Windows is the main target of GPs: ``cda`` and ``ps_agent`` must import, and their unit tests pass,
without the POSIX-only parts of Python.

Each check runs in a child interpreter whose ``sitecustomize`` (``BLOCKER`` below) makes the POSIX-only
modules unimportable (``fcntl``, ``termios``, ``pwd``…), removes the POSIX-only functions of ``os``
(``pwrite``, ``getuid``, ``fchmod``…) and the POSIX-only signals: what a Windows interpreter lacks. It
cannot turn Linux into Windows (paths, ``sys.platform`` stay Linux), it catches the calls and imports
that would crash there.

The data folder is checked on a simulated Windows too: platformdirs' Windows backend must put it under
``%LOCALAPPDATA%`` / ``%APPDATA%``, not in ``~/.local/share``.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BLOCKED_MODULES = ("fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "crypt", "spwd", "nis",
                   "syslog", "readline")  # fmt: skip
OS_POSIX_ONLY = ("pwrite", "pread", "pwritev", "preadv", "getuid", "geteuid", "getgid", "getegid",
                 "getgroups", "setuid", "setgid", "fchmod", "fchown", "chown", "lchown", "fork", "forkpty",
                 "setsid", "setpgrp", "getpgid", "killpg", "sysconf", "statvfs", "fstatvfs", "uname",
                 "mkfifo", "mknod", "nice", "sync", "openpty", "wait3", "wait4", "pipe2", "posix_fadvise",
                 "posix_fallocate", "getloadavg", "ttyname", "ctermid", "chroot", "O_NOFOLLOW",
                 "O_DIRECTORY", "O_CLOEXEC")  # fmt: skip
SIGNAL_POSIX_ONLY = ("SIGKILL", "SIGHUP", "SIGALRM", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE",
                     "SIGQUIT", "SIGSTOP", "SIGCONT", "SIGTSTP", "alarm", "setitimer", "pause",
                     "siginterrupt")  # fmt: skip

# Third-party libraries that pick their platform backend at import time (platformdirs' Unix backend uses
# os.getuid; on Windows it imports its Windows backend instead): imported before the removal.
PREIMPORTED = ("platformdirs",)

BLOCKER = f"""
import importlib, importlib.abc, os, signal, sys

BLOCKED = {BLOCKED_MODULES!r}
for _name in {PREIMPORTED!r}:
    try:
        importlib.import_module(_name)
    except ImportError:
        pass


class _PosixOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (POSIX-only, blocked by the portability test)",
                              name=name)
        return None


sys.meta_path.insert(0, _PosixOnly())
for _name in BLOCKED:
    sys.modules.pop(_name, None)
for _name in {OS_POSIX_ONLY!r}:
    if hasattr(os, _name):
        delattr(os, _name)
for _name in {SIGNAL_POSIX_ONLY!r}:
    if hasattr(signal, _name):
        delattr(signal, _name)
"""

# Unit tests that need neither pcscd nor the sandbox (its test PKI and card emulator are Linux test
# doubles): the pure library, the command line's name handling, the policy, the audit journal.
# (Left out: tests/audit/test_checkpoints.py and test_collector.py need the test PKI; test_files.py
# is the journal's own check without POSIX-only modules, with its own blocker.)
UNIT_TESTS = ("tests/cda", "tests/cli/test_names.py", "tests/access", "tests/audit",
              "--ignore=tests/audit/test_checkpoints.py", "--ignore=tests/audit/test_collector.py",
              "--ignore=tests/audit/test_files.py",
              "tests/test_typing.py", "tests/dmp/test_query_parse.py")  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env["PS_AGENT_HOME"] = str(tmp_path / "home")
    return env


def _run(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def _modules() -> list[str]:
    names = []
    for package in ("cda", "ps_agent"):
        names.append(package)
        path = [str(ROOT / package)]
        names += [
            m.name
            for m in pkgutil.walk_packages(path, prefix=f"{package}.")
            if not m.name.endswith(".__main__")
        ]  # running it is not importing it
    return sorted(names)


IMPORT_ALL = """
import importlib, json, sys
failures = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failures[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""


def _import_failures(tmp_path: Path, modules: list[str]) -> dict[str, str]:
    proc = _run(tmp_path, "-c", IMPORT_ALL, *modules, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_the_blocker_blocks(tmp_path: Path) -> None:
    """The child really lacks what Windows lacks (a blocker that blocks nothing proves nothing)."""
    code = (
        "import os, signal\n"
        "try:\n    import fcntl\nexcept ImportError:\n    print('no-fcntl')\n"
        "print(hasattr(os, 'pwrite'), hasattr(os, 'getuid'), hasattr(signal, 'SIGKILL'))\n"
    )
    proc = _run(tmp_path, "-c", code)
    assert proc.stdout.split() == ["no-fcntl", "False", "False", "False"], proc.stderr


def test_every_module_imports_without_posix_only_modules(tmp_path: Path) -> None:
    modules = _modules()
    assert len(modules) > 50
    assert _import_failures(tmp_path, modules) == {}


def _pytest_blocked(tmp_path: Path, *targets: str) -> tuple[int, str]:
    proc = _run(
        tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not pcsc and not x11",
        f"--basetemp={tmp_path / 'basetemp'}",  # pytest's per-user temp folder calls os.getuid on Linux
        *targets,
    )  # fmt: skip
    return proc.returncode, "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])


@pytest.mark.slow
def test_unit_tests_pass_without_posix_only_modules(tmp_path: Path) -> None:
    code, tail = _pytest_blocked(tmp_path, *UNIT_TESTS)
    assert code == 0, tail
    assert " passed" in tail and " failed" not in tail


# The data folder on Windows (config.py: platformdirs). platformdirs is made to pick its
# Windows backend (sys.platform "win32", folders from APPDATA / LOCALAPPDATA since ctypes' Windows API
# and winreg are absent here); the agent's data folder must then be there, not in ~/.local/share.
WINDOWS_DATA_DIR = """
import importlib.abc, json, sys


class _NoWindowsApi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("ctypes", "winreg"):
            raise ImportError(name)
        return None


saved = sys.modules.pop("ctypes", None)
sys.meta_path.insert(0, _NoWindowsApi())
sys.platform = "win32"
import platformdirs

sys.meta_path.pop(0)
if saved is not None:
    sys.modules["ctypes"] = saved
from ps_agent.config import data_dir

print(json.dumps({"backend": platformdirs.PlatformDirs.__name__, "data_dir": str(data_dir())}))
"""


def test_data_folder_follows_the_platform(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PS_AGENT_HOME", "XDG_DATA_HOME")}
    env |= {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"), "APPDATA": str(tmp_path / "roaming"),
            "LOCALAPPDATA": str(tmp_path / "local")}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", WINDOWS_DATA_DIR], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["backend"] == "Windows"
    data = Path(found["data_dir"])
    assert tmp_path / "local" in data.parents or tmp_path / "roaming" in data.parents, data
