"""Mutual TLS 1.2 towards the DMP, with a key that may never leave the card or the token.

Two routes behind one function, ``make_transport`` (authentication.md §7, dmp-protocol.md §5):

- **software key** (establishment PKCS#12, tests): Python's ``ssl`` through a normal
  ``httpx.HTTPTransport``. ``ssl`` only loads keys from files, so the key is written to a temporary
  file **encrypted with a one-time random password**, loaded, and the file is deleted at once.
- **external signer** (card over PC/SC, PKCS#11 token): ``tlslite-ng``, a pure-Python TLS stack
  that accepts a key object whose ``sign()`` we implement: the CertificateVerify DigestInfo goes to
  ``Signer.sign_digest_info`` (card INTERNAL AUTHENTICATE / ``CKM_RSA_PKCS``). Plugged into httpx
  with public APIs only: an ``httpcore.NetworkBackend`` whose ``start_tls`` runs the tlslite
  handshake, an ``httpcore.ConnectionPool``, and a small ``httpx.BaseTransport``. tlslite does not
  check the server certificate: ``cryptography``'s X.509 verifier does it after the handshake.
  Bulk AES-GCM / ChaCha20 records are delegated to ``cryptography`` (pure Python takes ~1 s per MB).

Why tlslite rather than stunnel + the PKCS#11 engine: it is in-process and portable (Windows has no
``stunnel -fd`` or Unix sockets), the agent keeps the PIN and the card events, no local port is
opened, and the same code serves the card (PC/SC) and the Cryptolib (PKCS#11).

Cards sign PKCS#1 v1.5 only, and TLS 1.3 requires RSA-PSS, so the card route is pinned to TLS 1.2
with PKCS#1 client signatures and the four suites of PDT-INF-579 (``DMP_SUITES``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from ps_agent import deadline
from ps_agent.auth.errors import TlsError
from ps_agent.auth.model import Signer
from ps_agent.errors import PsAgentError

# PDT-INF-579v4 suites for LPS access (dmp-protocol.md §5), OpenSSL names, in preference order.
DMP_SUITES_OPENSSL = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-SHA384"
)
# [I] Connections kept to one DMP endpoint at most: the deposit workers each hold one while they wait for
# the DMP — the hot folder's ``ps_agent.hotfolder.DEFAULT_WORKERS`` (8) and the local API's deposit pool
# (4, ``ApiBackend(deposit_workers=…)``); fewer connections than workers make the extra workers queue for
# a connection instead of overlapping their exchanges.
MAX_CONNECTIONS = 12
# The same four suites expressed as tlslite settings (verified to offer exactly these four).
_TLSLITE_CIPHERS = ["aes256gcm", "aes128gcm", "chacha20-poly1305", "aes256"]
_TLSLITE_MACS = ["aead", "sha384"]


def make_transport(
    *,
    ca_file: str | os.PathLike[str],
    certificate: x509.Certificate,
    chain: list[x509.Certificate] | None = None,
    private_key: rsa.RSAPrivateKey | None = None,
    signer: Signer | None = None,
    verify_host: bool = True,
    timeout_s: float = 30.0,
) -> httpx.BaseTransport:
    """An httpx transport doing mutual TLS 1.2 with the DMP suites.

    Give ``private_key`` (software key: ``ssl`` route) or ``signer`` (non-exportable key: tlslite
    route). ``ca_file`` is the PEM bundle trusted for the server; ``verify_host=False`` still
    verifies the chain but not the host name (test platforms reached by IP).
    """
    ca_path = Path(ca_file)
    if not ca_path.is_file():
        raise TlsError(
            f"Le fichier des autorités de certification est introuvable : {ca_path}", code="ca_file"
        )
    if (private_key is None) == (signer is None):
        raise ValueError("give exactly one of private_key or signer")
    if private_key is not None:
        return _ssl_transport(ca_path, certificate, chain or [], private_key, verify_host)
    assert signer is not None
    return SignerTlsTransport(ca_path, signer, chain=chain, verify_host=verify_host, timeout_s=timeout_s)


# ------------------------------------------------------------------------------------- ssl route


def client_ssl_context(
    ca_file: Path,
    certificate: x509.Certificate,
    chain: list[x509.Certificate],
    private_key: rsa.RSAPrivateKey,
    verify_host: bool = True,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(DMP_SUITES_OPENSSL)
    ctx.check_hostname = verify_host
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"Le fichier des autorités de certification est illisible : {ca_file}") from exc
    password = secrets.token_hex(32)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    certs = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [certificate, *chain])
    with tempfile.TemporaryDirectory(prefix="ps-agent-tls-") as tmp:
        key_path, cert_path = Path(tmp, "k.pem"), Path(tmp, "c.pem")
        key_path.touch(mode=0o600)
        key_path.write_bytes(pem)  # encrypted with a one-time password, deleted right after loading
        cert_path.write_bytes(certs)
        ctx.load_cert_chain(str(cert_path), str(key_path), password=password)
    return ctx


def _ssl_transport(
    ca_file: Path,
    certificate: x509.Certificate,
    chain: list[x509.Certificate],
    private_key: rsa.RSAPrivateKey,
    verify_host: bool,
) -> httpx.BaseTransport:
    ctx = client_ssl_context(ca_file, certificate, chain, private_key, verify_host)
    return PoolTransport(
        httpcore.ConnectionPool(
            ssl_context=ctx,
            network_backend=_DeadlineBackend(httpcore.SyncBackend()),
            http1=True,
            http2=False,
            max_connections=MAX_CONNECTIONS,
        )
    )


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation is capped to the exchange's overall deadline
    (``ps_agent.deadline``): a trickling server fails at the deadline, not never."""

    _WRITE_SLICE = 16384

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            timeout = deadline.cap(timeout)
        except deadline.DeadlinePassed as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), self._WRITE_SLICE):  # re-capped between slices
            try:
                capped = deadline.cap(timeout)
            except deadline.DeadlinePassed as exc:
                raise httpcore.WriteTimeout(str(exc)) from exc
            self._inner.write(bytes(view[start : start + self._WRITE_SLICE]), capped)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        try:
            timeout = deadline.cap(timeout)
        except deadline.DeadlinePassed as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            timeout = deadline.cap(timeout)
        except deadline.DeadlinePassed as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        return _DeadlineStream(
            self._inner.connect_tcp(
                host, port, timeout, local_address=local_address, socket_options=socket_options
            )
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - the DMP is reached over TCP only
        raise httpcore.ConnectError("unix sockets are not used")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# --------------------------------------------------------------------------------- tlslite route


def _quiet_tlslite_import() -> None:
    """tlslite's package __init__ imports asyncore (deprecated): import it once with that warning muted."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import tlslite  # noqa: F401


def _install_fast_aead() -> None:
    """Route tlslite's AES-GCM and ChaCha20-Poly1305 records through ``cryptography`` (once)."""
    _quiet_tlslite_import()
    from tlslite import recordlayer

    if getattr(recordlayer, "_ps_agent_fast_aead", False):
        return

    class _Aead:
        def __init__(self, key: bytes, name: str, cls: Any) -> None:
            self.key = bytes(key)
            self.name = name
            self.implementation = "cryptography"
            self.isBlockCipher = False
            self.isAEAD = True
            self.nonceLength = 12
            self.tagLength = 16
            self._aead = cls(self.key)

        def seal(self, nonce: bytes, plaintext: bytes, data: bytes) -> bytearray:
            return bytearray(self._aead.encrypt(bytes(nonce), bytes(plaintext), bytes(data)))

        def open(self, nonce: bytes, ciphertext: bytes, data: bytes) -> bytearray | None:
            try:
                return bytearray(self._aead.decrypt(bytes(nonce), bytes(ciphertext), bytes(data)))
            except Exception:  # InvalidTag: tlslite expects None and sends bad_record_mac
                return None

    def create_aes_gcm(key: bytes, impl_list: Any = None) -> _Aead:
        return _Aead(key, "aes128gcm" if len(key) == 16 else "aes256gcm", AESGCM)

    def create_chacha(key: bytes, impl_list: Any = None) -> _Aead:
        return _Aead(key, "chacha20-poly1305", ChaCha20Poly1305)

    recordlayer.createAESGCM = create_aes_gcm
    recordlayer.createCHACHA20 = create_chacha
    recordlayer._ps_agent_fast_aead = True


def _signer_key(signer: Signer) -> Any:
    """A tlslite RSA key object whose private operation is the external signer."""
    _quiet_tlslite_import()
    from tlslite.utils.python_rsakey import Python_RSAKey

    public = signer.certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise TlsError("Seules les clés RSA sont prises en charge pour l'authentification TLS.")
    numbers = public.public_numbers()

    class ExternalRSAKey(Python_RSAKey):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(numbers.n, numbers.e)
            self._lock = threading.Lock()

        def hasPrivateKey(self) -> bool:
            return True

        def sign(
            self, data: bytes, padding: str = "pkcs1", hashAlg: Any = None, saltLen: Any = None
        ) -> bytearray:
            if padding.lower() != "pkcs1":
                raise TlsError("La carte ne sait signer qu'en PKCS#1 v1.5 (RSA-PSS refusé).")
            if hashAlg is not None:
                data = self.addPKCS1Prefix(data, hashAlg)
            with self._lock:  # one card / token operation at a time
                return bytearray(signer.sign_digest_info(bytes(data)))

    return ExternalRSAKey()


def _handshake_settings() -> Any:
    from tlslite.handshakesettings import HandshakeSettings

    settings = HandshakeSettings()
    settings.minVersion = (3, 3)
    settings.maxVersion = (3, 3)
    settings.cipherNames = list(_TLSLITE_CIPHERS)
    settings.macNames = list(_TLSLITE_MACS)
    settings.keyExchangeNames = ["ecdhe_rsa"]
    settings.rsaSchemes = ["pkcs1"]  # cards sign PKCS#1 v1.5 only
    settings.rsaSigHashes = ["sha256", "sha384", "sha512"]
    settings.certificate_compression_send = []
    settings.useEncryptThenMAC = True
    return settings


def verify_server_chain(
    der_chain: list[bytes], roots: list[x509.Certificate], host: str, verify_host: bool
) -> x509.Certificate:
    """Verify the server's chain against ``roots`` (and its name unless ``verify_host`` is False)."""
    if not der_chain:
        raise TlsError("Le serveur n'a présenté aucun certificat.", code="tls_no_server_cert")
    certs = [x509.load_der_x509_certificate(d) for d in der_chain]
    leaf, intermediates = certs[0], certs[1:]
    store = Store(roots)
    try:
        if verify_host:
            try:
                subject: x509.verification.Subject = x509.IPAddress(ipaddress.ip_address(host))
            except ValueError:
                subject = x509.DNSName(host)
            PolicyBuilder().store(store).build_server_verifier(subject).verify(leaf, intermediates)
        else:
            PolicyBuilder().store(store).extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
            ).build_client_verifier().verify(leaf, intermediates)
    except VerificationError as exc:
        raise TlsError(
            "Le certificat du serveur n'est pas reconnu (autorité inconnue, nom ou dates invalides) : "
            "connexion refusée.",
            code="tls_server_untrusted",
        ) from exc
    return leaf


def load_roots(ca_file: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(ca_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"Le fichier des autorités de certification est illisible : {ca_file}") from exc


class _DeadlineSocket:
    """The socket tlslite reads and writes through: one TLS read may take many ``recv`` calls (a record
    trickled byte by byte), so each call gets the time left before the operation's deadline
    (``op_deadline``, set by the stream from its timeout capped to the exchange's deadline)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.op_deadline: float | None = None

    def _arm(self) -> None:
        if self.op_deadline is not None:
            left = self.op_deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            self._sock.settimeout(left)

    def recv(self, bufsize: int, *args: Any) -> bytes:
        self._arm()
        return self._sock.recv(bufsize, *args)

    def send(self, data: Any, *args: Any) -> int:
        self._arm()
        return self._sock.send(data, *args)

    def sendall(self, data: Any, *args: Any) -> None:
        view = memoryview(data)
        while view:
            sent = self.send(view)
            view = view[sent:]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _op_deadline(timeout: float | None) -> float | None:
    """Absolute deadline of one stream operation: its timeout capped to the exchange's deadline."""
    capped = deadline.cap(timeout)  # DeadlinePassed is a TimeoutError
    return None if capped is None else time.monotonic() + capped


class _TlsliteStream(httpcore.NetworkStream):
    def __init__(self, sock: socket.socket, conn: Any = None, io: _DeadlineSocket | None = None) -> None:
        self._sock = sock
        self._conn = conn
        self._io = io if io is not None else _DeadlineSocket(sock)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._io.op_deadline = _op_deadline(timeout)
            self._sock.settimeout(timeout)
            if self._conn is None:
                return self._io.recv(max_bytes)
            return bytes(self._conn.recv(max_bytes))
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc
        except Exception as exc:  # tlslite alerts / abrupt close
            raise httpcore.ReadError(f"TLS: {exc!r}") from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._io.op_deadline = _op_deadline(timeout)
            self._sock.settimeout(timeout)
            if self._conn is None:
                self._io.sendall(buffer)
            else:
                self._conn.sendall(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc
        except Exception as exc:
            raise httpcore.WriteError(f"TLS: {exc!r}") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        raise NotImplementedError  # replaced by _PlainStream.start_tls

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            import select

            try:
                readable, _, _ = select.select([self._sock], [], [], 0)
            except (OSError, ValueError):
                return True
            return bool(readable)
        if info == "socket":
            return self._sock
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "client_addr":
            return self._sock.getsockname()
        return None


class _PlainStream(_TlsliteStream):
    def __init__(self, sock: socket.socket, backend: _TlsliteBackend) -> None:
        super().__init__(sock)
        self._backend = backend

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return self._backend.handshake(self._sock, server_hostname or "", timeout)


class _TlsliteBackend(httpcore.NetworkBackend):
    def __init__(
        self, signer: Signer, chain: list[x509.Certificate], roots: list[x509.Certificate], verify_host: bool
    ) -> None:
        _quiet_tlslite_import()
        from tlslite.x509 import X509
        from tlslite.x509certchain import X509CertChain

        _install_fast_aead()
        self._signer = signer
        self._roots = roots
        self._verify_host = verify_host
        certs = [signer.certificate, *chain]
        x509s = []
        for cert in certs:
            item = X509()
            item.parseBinary(bytearray(cert.public_bytes(serialization.Encoding.DER)))
            x509s.append(item)
        self._cert_chain = X509CertChain(x509s)
        self._key = _signer_key(signer)
        self._settings = _handshake_settings()
        self.server_certificates: list[x509.Certificate] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            sock = socket.create_connection((host, port), deadline.cap(timeout))
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _PlainStream(sock, self)

    def handshake(self, sock: socket.socket, host: str, timeout: float | None) -> httpcore.NetworkStream:
        from tlslite.tlsconnection import TLSConnection

        io = _DeadlineSocket(sock)
        try:
            io.op_deadline = _op_deadline(timeout)  # the whole handshake, within the exchange's deadline
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        conn = TLSConnection(io)
        sock.settimeout(timeout)
        try:
            sni: str | None = host
            try:
                ipaddress.ip_address(host)
                sni = None  # tlslite refuses an IP address as SNI
            except ValueError:
                pass
            conn.handshakeClientCert(self._cert_chain, self._key, settings=self._settings, serverName=sni)
        except PsAgentError:
            with contextlib.suppress(Exception):
                sock.close()
            raise
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except Exception as exc:  # TLSRemoteAlert, TLSLocalAlert, TLSAbruptCloseError, OSError
            sock.close()
            raise TlsError(
                f"La connexion sécurisée (TLS) avec le serveur a échoué : {exc}", code="tls_handshake"
            ) from exc
        chain = conn.session.serverCertChain
        der = [bytes(c.writeBytes()) for c in chain.x509List] if chain else []
        try:
            verify_server_chain(der, self._roots, host, self._verify_host)
        except TlsError:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return _TlsliteStream(sock, conn, io)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _map_errors():
            yield from self._stream

    def close(self) -> None:
        if hasattr(self._stream, "close"):
            self._stream.close()


_ERRORS: list[tuple[type[Exception], type[Exception]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
]


@contextlib.contextmanager
def _map_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class PoolTransport(httpx.BaseTransport):
    """httpx transport over an ``httpcore.ConnectionPool`` (public APIs only), httpx errors mapped."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _map_errors():
            resp = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=_ResponseStream(resp.stream),
            extensions=resp.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class SignerTlsTransport(PoolTransport):
    """httpx transport: mutual TLS 1.2 (tlslite-ng) whose client key is an external ``Signer``.

    Keep one transport per session: connections are kept alive, and every new connection costs one
    card signature.
    """

    def __init__(
        self,
        ca_file: Path,
        signer: Signer,
        *,
        chain: list[x509.Certificate] | None = None,
        verify_host: bool = True,
        timeout_s: float = 30.0,
    ) -> None:
        roots = load_roots(ca_file)
        self._backend = _TlsliteBackend(
            signer, chain if chain is not None else signer.chain, roots, verify_host
        )
        # httpcore wants an SSLContext even though tlslite does the TLS: give a cheap one.
        super().__init__(
            httpcore.ConnectionPool(
                ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
                network_backend=self._backend,
                http1=True,
                http2=False,
                max_connections=MAX_CONNECTIONS,
            )
        )


class SessionBoundTransport(httpx.BaseTransport):
    """Wraps a transport so every request first checks (and refreshes) its session.

    ``check`` raises (``SessionClosed``) once the card left: no request goes out under a
    professional's identity after the session ended, even over a kept-alive connection.
    """

    def __init__(self, inner: httpx.BaseTransport, check: Callable[[], None]) -> None:
        self._inner = inner
        self._check = check

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._check()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
