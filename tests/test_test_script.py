"""installer/test.sh never stops a pcscd it did not start, outside CI (installer/pcscd-vpcd.sh).

The decision is run with stand-ins for ``pgrep``, ``ss`` and ``pkill`` first on the PATH: a pcscd
"runs" until the fake ``pkill`` records that it was asked to stop it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fake_bin(tmp_path: Path, *, vpcd_listening: bool, pcscd_running: bool = True) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    killed = tmp_path / "killed"
    scripts = {
        "pgrep": f'[ "{int(pcscd_running)}" = 1 ] && [ ! -e "{killed}" ]',
        "pkill": f'echo "$@" >> "{killed}"',
        "ss": "echo 'LISTEN 0 5 0.0.0.0:35963 0.0.0.0:*'" if vpcd_listening else "echo 'State Recv-Q'",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        path.chmod(0o755)
    return bin_dir


def _settle(tmp_path: Path, bin_dir: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        ["bash", "-c", "source installer/pcscd-vpcd.sh && settle_foreign_pcscd"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_outside_ci_a_foreign_pcscd_is_left_alone_with_a_hint(tmp_path: Path) -> None:
    proc = _settle(tmp_path, _fake_bin(tmp_path, vpcd_listening=False), ci=False)
    assert proc.returncode == 1
    assert not (tmp_path / "killed").exists()
    assert "n'est pas arrêté" in proc.stderr and "it is not stopped" in proc.stderr


def test_in_ci_a_pcscd_without_vpcd_is_restarted(tmp_path: Path) -> None:
    proc = _settle(tmp_path, _fake_bin(tmp_path, vpcd_listening=False), ci=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "killed").read_text().split() == ["-x", "pcscd"]


@pytest.mark.parametrize("ci", [False, True])
@pytest.mark.parametrize(("running", "listening"), [(True, True), (False, False)])
def test_a_pcscd_with_vpcd_or_none_is_never_touched(tmp_path: Path, ci: bool, running: bool, listening: bool):
    proc = _settle(tmp_path, _fake_bin(tmp_path, vpcd_listening=listening, pcscd_running=running), ci=ci)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "killed").exists()
