"""Hot-folder fixtures: the real sandbox DMP, an establishment (AIR) session of the test PKI, and a
``HotFolder`` over a real folder and real SQLite files; ``restart()`` closes everything and reopens it on
the same folder and home (a restart of the service)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ps_agent.api import ApiBackend
from ps_agent.auth.model import AuthMode
from ps_agent.hotfolder import HotFolder
from ps_agent.services import Services
from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import (
    agent_config,
    author_json,
    credentials,
    patient_json,
    pdf,
    running_sandbox,
)


@pytest.fixture(scope="module")
def dmp(tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    with running_sandbox(tmp_path_factory.mktemp("hf-sandbox"), test_pki) as running:
        yield running


class Rig:
    def __init__(self, dmp: Any, test_pki: Any, base: Path, *, done: Path | None = None) -> None:
        self.dmp, self.pki, self.base = dmp, test_pki, base
        self.root = base / "depot"
        self.done = done if done is not None else self.root / "done"  # the hotfolder.done setting
        self.open()

    def open(self) -> None:
        self.services = Services(agent_config(self.dmp, self.pki, self.base / "home"))
        self.session = self.services.open_session(
            credentials(self.pki, "secretary", AuthMode.INDIRECTE_RENFORCEE)
        )
        self.backend = ApiBackend(self.services, lambda: self.session)
        done = None if self.done == self.root / "done" else self.done
        self.folder = HotFolder(self.root, self.backend, done=done, rescan_interval_s=0.2)

    def close(self) -> None:
        self.folder.stop()
        self.backend.close()
        self.session.close()
        self.services.close()

    def restart(self) -> None:
        self.close()
        self.open()

    # ---------------------------------------------------------------- dropping files
    def drop(self, name: str, content: bytes | None = None, sidecar: dict[str, Any] | None = None,
             *, title: str | None = None) -> bytes:  # fmt: skip
        """Write NAME.pdf then NAME.json, each under a temporary name then renamed (the convention)."""
        content = content if content is not None else pdf(title or name)
        inbox = self.root / "inbox"
        tmp = inbox / f".{name}.pdf.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, inbox / f"{name}.pdf")
        meta = sidecar if sidecar is not None else sidecar_for(title or f"Compte rendu {name}")
        tmp = inbox / f".{name}.json.tmp"
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, inbox / f"{name}.json")
        return content

    def wait_for(self, pred: Callable[[], bool], timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise AssertionError("condition not met before the deadline")
            time.sleep(0.05)

    def receipts(self) -> dict[str, dict[str, Any]]:
        return {p.name[: -len(".receipt.json")]: json.loads(p.read_text(encoding="utf-8"))
                for p in self.done.glob("*.receipt.json")}  # fmt: skip

    def errors(self) -> dict[str, dict[str, Any]]:
        return {p.name[: -len(".error.json")]: json.loads(p.read_text(encoding="utf-8"))
                for p in (self.root / "rejected").glob("*.error.json")}  # fmt: skip


def sidecar_for(title: str, **over: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "patient": patient_json(DEMO_ADULT),
        "type_code": "11490-0",
        "title": title,
        "author": author_json("gp"),
        "MASQUE_PS": "N",
        "INVISIBLE_PATIENT": "N",
        "INVISIBLE_REP_LEGAUX": "N",
    }
    meta.update(over)
    return meta


@pytest.fixture
def rig(dmp: Any, test_pki: Any, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(dmp, test_pki, tmp_path)
    yield r
    r.close()
