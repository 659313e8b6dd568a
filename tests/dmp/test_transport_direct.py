"""``post_bounded(transport=...)``: the request handed straight to the transport the client was built
with (``DmpClient``'s path) keeps what ``httpx.Client.send`` gave: every connection goes back to the pool
(many requests, one connection), a connection dropped at the size cap is not reused, a ``Set-Cookie``
reaches the client's jar, a closed client refuses to send, errors keep their types."""

from __future__ import annotations

import ssl
import threading

import httpx
import pytest

from ps_agent.dmp.errors import ResponseTooLarge, TransportError
from ps_agent.dmp.transport import RawResponse, post_bounded
from sandbox.pki import TestPki
from tests.fixtures.hostile import HostileRequest, hostile_server, software_credentials

ROUTES = pytest.mark.parametrize("external_tls", [False, True], ids=["ssl", "tlslite-signer"])


class _Counting:
    """A server behaviour answering ``ok`` (or a large body for a request whose body says ``big``), and
    counting the TLS connections it served requests on."""

    def __init__(self, extra_headers: str = "") -> None:
        self.connections: set[int] = set()
        self.requests = 0
        self._lock = threading.Lock()
        self._extra = extra_headers

    def __call__(self, conn: ssl.SSLSocket, request: HostileRequest) -> None:
        with self._lock:
            self.connections.add(id(conn))
            self.requests += 1
        body = b"x" * 5000 if request.body == b"big" else b"ok"
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n{self._extra}\r\n"
        )
        conn.sendall(head.encode() + body)


def _client(pki: TestPki, external_tls: bool) -> tuple[httpx.Client, httpx.BaseTransport]:
    transport = software_credentials(pki, external_tls=external_tls).tls_transport(ca_file=pki.ca_bundle)
    return httpx.Client(transport=transport, timeout=5.0), transport


def _pool_of(transport: httpx.BaseTransport) -> object:
    """The ``httpcore.ConnectionPool`` under the credentials' transport (a session check may wrap it)."""
    inner = getattr(transport, "_inner", transport)
    return inner._pool  # type: ignore[attr-defined]


def _post(
    http: httpx.Client, transport: httpx.BaseTransport, url: str, body: bytes, **kw: int
) -> RawResponse:
    return post_bounded(
        http, httpx.URL(url), content=body, content_type="text/plain", transport=transport, **kw
    )  # type: ignore[arg-type]


@ROUTES
def test_many_requests_reuse_one_pooled_connection(test_pki: TestPki, external_tls: bool) -> None:
    served = _Counting()
    with hostile_server(test_pki, served) as url:
        http, transport = _client(test_pki, external_tls)
        with http:
            for _ in range(300):
                answer = _post(http, transport, url, b"hello")
                assert (answer.status_code, answer.content) == (200, b"ok")
            pool = _pool_of(transport)
            assert len(pool.connections) == 1  # type: ignore[attr-defined]
            assert all(c.is_idle() for c in pool.connections)  # type: ignore[attr-defined]
    assert served.requests == 300
    assert len(served.connections) == 1


@ROUTES
def test_a_connection_dropped_at_the_cap_is_not_reused(test_pki: TestPki, external_tls: bool) -> None:
    served = _Counting()
    with hostile_server(test_pki, served) as url:
        http, transport = _client(test_pki, external_tls)
        with http:
            assert _post(http, transport, url, b"hello").content == b"ok"
            with pytest.raises(ResponseTooLarge) as caught:
                _post(http, transport, url, b"big", max_response_bytes=1000)
            assert caught.value.message_fr
            for _ in range(20):
                assert _post(http, transport, url, b"hello").content == b"ok"
            pool = _pool_of(transport)
            assert len(pool.connections) == 1  # type: ignore[attr-defined]
            assert all(c.is_idle() for c in pool.connections)  # type: ignore[attr-defined]
    assert len(served.connections) == 2  # the first one closed at the cap, then one for the rest


def test_a_cookie_set_by_the_server_reaches_the_clients_jar(test_pki: TestPki) -> None:
    served = _Counting("Set-Cookie: lb=node2; Path=/\r\n")
    with hostile_server(test_pki, served) as url:
        http, transport = _client(test_pki, False)
        with http:
            _post(http, transport, url, b"hello")
            assert http.cookies.get("lb") == "node2"


def test_a_closed_client_does_not_send(test_pki: TestPki) -> None:
    served = _Counting()
    with hostile_server(test_pki, served) as url:
        http, transport = _client(test_pki, False)
        http.close()
        with pytest.raises(RuntimeError):
            _post(http, transport, url, b"hello")
    assert served.requests == 0


def test_a_refused_connection_is_a_typed_transport_error(test_pki: TestPki) -> None:
    http, transport = _client(test_pki, False)
    with http, pytest.raises(TransportError) as caught:
        _post(http, transport, "https://127.0.0.1:9/si-dmp-server/v2/services/", b"hello")
    assert "injoignable" in caught.value.message_fr
