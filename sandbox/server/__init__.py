"""The sandbox DMP server layer: HTTPS on loopback, SOAP 1.2/WS-Addressing, MTOM/XOP, VIHF checks, faults.

``start(data_dir, pki)`` serves the five DMP services in background threads and returns a
:class:`RunningSandbox`. The domain layer (``sandbox.dmp``: store, transactions, access rules, traces) sits
behind the seam in :mod:`sandbox.server.context`.

Exceptions: :class:`sandbox.errors.SandboxError` (root) ← :class:`SandboxServerError` (cannot start: non
loopback host, port in use, missing PKI files) and :class:`sandbox.server.context.SoapFault` (a refusal).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.errors import SandboxError
from sandbox.server.certs import TrustStore
from sandbox.server.context import Caller, Service, SoapFault, SoapRequest, SoapResponse
from sandbox.server.faults import FaultConfig, FaultConfigError, FaultInjector
from sandbox.server.http import MAX_REQUEST_BYTES, SandboxHTTPServer, ServerLimits, make_tls_context
from sandbox.server.soap import BASE_PATH
from sandbox.server.vihf import VihfVerifier

if TYPE_CHECKING:
    from sandbox.pki import TestPki

__all__ = [
    "Caller",
    "FaultConfig",
    "FaultConfigError",
    "FaultInjector",
    "RunningSandbox",
    "SandboxServerError",
    "ServerLimits",
    "SoapFault",
    "SoapRequest",
    "SoapResponse",
    "start",
]


class SandboxServerError(SandboxError):
    """The sandbox server cannot start (bad host, port in use, missing PKI files)."""


@dataclass
class RunningSandbox:
    """A sandbox serving in background threads. ``faults`` can be reconfigured while it runs."""

    host: str
    port: int
    data_dir: Path
    store: Any  # sandbox.dmp.store.Store
    service: Any  # sandbox.dmp.service.DmpService
    faults: FaultInjector
    pki: Any
    _server: SandboxHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{BASE_PATH}"

    def url(self, service: str) -> str:
        return self.base_url + service

    @property
    def admin_faults_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/si-dmp-server/admin/faults"

    @property
    def requests_served(self) -> int:
        return self._server.requests_served

    def set_faults(self, config: FaultConfig) -> None:
        self.faults.configure(config)

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.close_connections()  # open keep-alive connections end now, not at their idle timeout
        self._server.server_close()  # joins the connection threads
        close = getattr(self.store, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SandboxServerError(
            f"Adresse d'écoute refusée : « {host} » (le bac à sable n'écoute que sur la boucle locale)."
        ) from None
    if not ip.is_loopback:
        raise SandboxServerError(
            f"Adresse d'écoute refusée : {host} n'est pas une adresse de boucle locale (127.0.0.1, ::1)."
        )


def _default_service(data_dir: Path, pki: Any) -> tuple[Any, Any]:
    from sandbox.dmp.service import DmpService
    from sandbox.dmp.store import Store

    store = Store(data_dir)
    # the XAdES signature of a deposit is checked against the same test PKI as the VIHF
    return store, DmpService(store, trusted_certs=[*pki.roots, *pki.intermediates])


def start(
    data_dir: Path,
    pki: TestPki,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultConfig | None = None,
    service: Service | None = None,
    store: Any = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    limits: ServerLimits | None = None,
) -> RunningSandbox:
    """Start the sandbox on ``host:port`` (port 0 = any free port) and return once it accepts connections.

    ``service``/``store`` default to the domain layer's ``DmpService(Store(data_dir))``; tests of the server
    layer alone may pass a stand-in service."""
    _check_loopback(host)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for p in (pki.server_cert, pki.server_key, pki.ca_bundle):
        if not Path(p).is_file():
            raise SandboxServerError(f"Fichier de l'IGC de test introuvable : {p}.")
    if service is None:
        store, service = _default_service(data_dir, pki)
    tls = make_tls_context(str(pki.server_cert), str(pki.server_key), str(pki.ca_bundle))
    verifier = VihfVerifier(TrustStore(pki.roots, pki.intermediates))
    injector = FaultInjector(faults)
    if host == "localhost":
        host = "127.0.0.1"
    server_cls = SandboxHTTPServer
    if ":" in host:
        server_cls = type("SandboxHTTPServer6", (SandboxHTTPServer,), {"address_family": socket.AF_INET6})
    try:
        server = server_cls(
            (host, port),
            tls=tls,
            service=service,
            verifier=verifier,
            faults=injector,
            limits=replace(limits or ServerLimits(), max_request_bytes=max_request_bytes)
            if max_request_bytes != MAX_REQUEST_BYTES
            else limits,
        )
    except OSError as exc:
        raise SandboxServerError(f"Impossible d'écouter sur {host}:{port} : {exc.strerror or exc}.") from None
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.2},
        daemon=True,
        name=f"sandbox-{server.server_address[1]}",
    )
    thread.start()
    return RunningSandbox(
        host=host,
        port=server.server_address[1],
        data_dir=data_dir,
        store=store,
        service=service,
        faults=injector,
        pki=pki,
        _server=server,
        _thread=thread,
    )
