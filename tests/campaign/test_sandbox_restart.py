"""The campaign's sandbox restart on the same port survives that port being briefly taken.

A CI run failed when the restarted sandbox found its former port (or INSi's P+1) handed meanwhile to another
socket: ``SandboxProcess.start`` now retries for a while, and the campaign starts no INSi."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from tests.fixtures.campaign import SandboxProcess


def test_a_restart_waits_for_its_port_to_be_free(test_pki: Any, tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = int(holder.getsockname()[1])
    sandbox = SandboxProcess(tmp_path / "data", test_pki.directory, tmp_path / "logs")
    sandbox.port = port  # as after a first start: the restart asks for the same port

    def free_after_first_refusal() -> None:  # the port is given back once a first try met it taken
        while sandbox.starts < 2 and not stop.wait(0.05):
            pass
        holder.close()

    stop = threading.Event()
    threading.Thread(target=free_after_first_refusal, daemon=True).start()
    try:
        sandbox.start(None, deadline_s=60.0)
        assert sandbox.port == port
        assert sandbox.starts >= 2, "the first try must have met the taken port"
        assert "--no-insi" in sandbox.proc.args  # type: ignore[union-attr]
    finally:
        stop.set()
        sandbox.stop()
        holder.close()
