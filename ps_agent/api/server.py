"""Run the API with uvicorn on the loopback interface only, in a thread of the agent's process."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

from ps_agent.api.settings import DEFAULT_PORT, is_loopback
from ps_agent.errors import ConfigurationError


class ApiServer:
    """``start()`` binds 127.0.0.1:port (refuses any non-loopback host) and serves in a daemon thread;
    ``stop()`` ends it cleanly (in-flight requests finish). ``port=0`` picks a free port (tests)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        if not is_loopback(host):
            raise ConfigurationError(
                f"L'API locale n'écoute que sur la boucle locale (127.0.0.1) : « {host} » est refusé.",
                code="API_NOT_LOOPBACK",
            )
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.socket: socket.socket | None = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no port stealing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"Le port {self.port} de l'API locale est déjà utilisé ({exc.strerror}).",
                code="API_PORT_BUSY",
            ) from exc
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    @property
    def address(self) -> tuple[str, int]:
        assert self.socket is not None
        host, port = self.socket.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def start(self, timeout: float = 10.0) -> None:
        self.socket = self._bind()
        if not is_loopback(self.address[0]):  # belt and braces: what the OS really bound
            self.socket.close()
            raise ConfigurationError(
                "L'API locale n'est pas liée à la boucle locale.", code="API_NOT_LOOPBACK"
            )
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=10
        )
        self._server = uvicorn.Server(config)
        sock = self.socket

        def run() -> None:
            assert self._server is not None
            asyncio.run(self._server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=run, name="api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigurationError("L'API locale n'a pas pu démarrer.", code="API_START")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self.socket is not None:
            self.socket.close()
