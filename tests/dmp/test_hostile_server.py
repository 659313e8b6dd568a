"""The DMP client against a hostile server over real mutual TLS, on both TLS routes (Python ``ssl`` with a
software key; tlslite-ng with an external signer, the card/PKCS#11 route): one overall deadline per
exchange, a response size cap, bounded faults, RelatesTo checked on faults, duplicate MTOM Content-IDs
refused. Every error is typed and has a French message."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator

import pytest

from ps_agent.config import LPS, Environment
from ps_agent.dmp.client import DmpClient
from ps_agent.dmp.errors import (
    DmpDeadlineExceeded,
    DmpTimeout,
    ProtocolError,
    ResponseTooLarge,
    SoapFault,
    TransportError,
)
from ps_agent.dmp.model import PatientId
from ps_agent.dmp.transport import DEFAULT_DEADLINE_S, DEFAULT_MAX_RESPONSE_BYTES
from sandbox.pki import TestPki
from tests.fixtures.hostile import (
    Behaviour,
    HostileRequest,
    hostile_server,
    http_answer,
    soap,
    software_credentials,
    trickle,
)

PATIENT = PatientId("279035121518989", "1.2.250.1.213.1.4.10")
ROUTES = pytest.mark.parametrize("external_tls", [False, True], ids=["ssl", "tlslite-signer"])


def _client(
    pki: TestPki, url: str, *, external_tls: bool, deadline_s: float = 10.0, max_bytes: int | None = None
) -> DmpClient:
    env = Environment("hostile", url, ca_file=str(pki.ca_bundle), timeout_s=5.0)
    return DmpClient(
        software_credentials(pki, external_tls=external_tls),
        env,
        LPS,
        deadline_s=deadline_s,
        max_response_bytes=max_bytes,
    )


@pytest.fixture
def run(test_pki: TestPki) -> Iterator:
    """run(behaviour, external_tls, **client options) -> (exception raised by a TD0.2 call, seconds)."""

    def _run(behaviour: Behaviour, external_tls: bool, **options: object) -> tuple[BaseException, float]:
        with hostile_server(test_pki, behaviour) as url:
            client = _client(test_pki, url, external_tls=external_tls, **options)  # type: ignore[arg-type]
            try:
                start = time.monotonic()
                with pytest.raises(Exception) as info:
                    client.status(PATIENT)
                return info.value, time.monotonic() - start
            finally:
                client.close()

    yield _run


def _french(exc: BaseException) -> str:
    message = getattr(exc, "message_fr", "")
    assert message and any(c in message for c in "éèàêç"), message
    return message


# ------------------------------------------------------------------------------------------- deadline
# The server trickles for ~6 s one byte every 0.3 s: no single read ever waits long enough to trip the
# 5 s per-read timeout. The exchange's deadline is 1.5 s: the call must end long before the trickle does.
TRICKLE_INTERVAL = 0.3
TRICKLE_BYTES = 20
DEADLINE = 1.5


def _trickled_body(conn: ssl.SSLSocket, request: HostileRequest) -> None:
    body = soap("<x/>", relates_to=request.message_id)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\n"
        + f"Content-Length: {len(body) + TRICKLE_BYTES}\r\n\r\n".encode()
    )
    trickle(b" " * TRICKLE_BYTES, conn, request, TRICKLE_INTERVAL)
    conn.sendall(body)


def _trickled_headers(conn: ssl.SSLSocket, request: HostileRequest) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    trickle(b"a" * TRICKLE_BYTES, conn, request, TRICKLE_INTERVAL)
    conn.sendall(b"\r\n" + http_answer(soap("<x/>", relates_to=request.message_id)).split(b"\r\n", 1)[1])


@ROUTES
@pytest.mark.parametrize("behaviour", [_trickled_body, _trickled_headers], ids=["body", "headers"])
def test_a_trickling_server_fails_at_the_overall_deadline(
    run, external_tls: bool, behaviour: Behaviour
) -> None:
    exc, elapsed = run(behaviour, external_tls, deadline_s=DEADLINE)
    assert isinstance(exc, DmpDeadlineExceeded), repr(exc)
    assert isinstance(exc, TransportError) and exc.retryable and exc.code == "DEADLINE_EXCEEDED"
    assert "délai maximal" in _french(exc)
    # ends at the deadline (+ one trickle interval and scheduling), not when the trickle would end (6 s)
    assert elapsed < TRICKLE_INTERVAL * TRICKLE_BYTES * 0.6, elapsed


@ROUTES
def test_one_byte_every_two_seconds_ends_at_the_deadline(run, external_tls: bool) -> None:
    """The issue's case literally: one byte every 2 s (under the 5 s per-read timeout) for 40 s."""

    def two_seconds(conn: ssl.SSLSocket, request: HostileRequest) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 100\r\n\r\n")
        trickle(b" " * 20, conn, request, 2.0)

    exc, elapsed = run(two_seconds, external_tls, deadline_s=3.0)
    assert isinstance(exc, DmpDeadlineExceeded), repr(exc)
    assert 2.5 < elapsed < 6.0, elapsed


@ROUTES
def test_a_server_that_never_answers_fails_at_the_deadline_not_the_read_timeout(
    run, external_tls: bool
) -> None:
    def silent(conn: ssl.SSLSocket, request: HostileRequest) -> None:
        request.stopped.wait(6)

    exc, elapsed = run(silent, external_tls, deadline_s=DEADLINE)
    assert isinstance(exc, DmpDeadlineExceeded), repr(exc)
    assert elapsed < 4.0, elapsed  # the per-read timeout is 5 s


# ----------------------------------------------------------------------------------------- size cap
CAP = 1024 * 1024


def _endless(conn: ssl.SSLSocket, request: HostileRequest) -> None:
    """A chunked answer that would go on for 24 MiB (bounded so that an unprotected client ends too)."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"<a>" + b"x" * 65530 + b"</a>"
    for _ in range(24 * 16):
        if request.stopped.is_set():
            return
        conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    conn.sendall(b"0\r\n\r\n")


def _declared_huge(conn: ssl.SSLSocket, request: HostileRequest) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 10737418240\r\n\r\n"
    )
    conn.sendall(b"<" * 4096)
    request.stopped.wait(2)


@ROUTES
@pytest.mark.parametrize("behaviour", [_endless, _declared_huge], ids=["endless", "content-length"])
def test_an_oversized_answer_is_refused_at_the_cap(run, external_tls: bool, behaviour: Behaviour) -> None:
    exc, _ = run(behaviour, external_tls, max_bytes=CAP)
    assert isinstance(exc, ResponseTooLarge), repr(exc)
    assert isinstance(exc, ProtocolError) and not exc.retryable and exc.code == "RESPONSE_TOO_LARGE"
    assert "taille maximale" in _french(exc) and "1 Mio" in exc.message_fr


def test_defaults_fit_a_large_search_and_are_configurable(test_pki: TestPki) -> None:
    env = Environment("x", "https://127.0.0.1:1/")
    assert (env.deadline_s, env.max_response_bytes) == (DEFAULT_DEADLINE_S, DEFAULT_MAX_RESPONSE_BYTES)
    assert DEFAULT_MAX_RESPONSE_BYTES >= 5000 * 6700 * 1.5  # 5,000 entries of ~6.7 KB, with a margin
    assert DEFAULT_MAX_RESPONSE_BYTES == 64 * 1024 * 1024


# ------------------------------------------------------------------------------------------- faults
def _fault(code: str, reason: str) -> str:
    return (
        f"<s:Fault><s:Code>{code}</s:Code><s:Reason>"
        f'<s:Text xml:lang="en">other</s:Text><s:Text xml:lang="fr">{reason}</s:Text></s:Reason></s:Fault>'
    )


def _answering(body: bytes, content_type: str = "application/soap+xml; charset=UTF-8") -> Behaviour:
    def behave(conn: ssl.SSLSocket, request: HostileRequest) -> None:
        conn.sendall(http_answer(body.replace(b"{RELATES}", request.message_id.encode()), content_type))

    return behave


@ROUTES
def test_a_normal_fault_is_a_typed_refusal(run, external_tls: bool) -> None:
    body = soap(_fault("<s:Value>s:Sender</s:Value>", "VIHF invalide"), relates_to="{RELATES}")
    exc, _ = run(_answering(body), external_tls)
    assert isinstance(exc, SoapFault) and exc.code == "s:Sender" and exc.code_context == "VIHF invalide"


def test_a_10_mb_fault_reason_gives_a_bounded_typed_error(run) -> None:
    body = soap(_fault("<s:Value>s:Receiver</s:Value>", "é" * 5_000_000), relates_to="{RELATES}")
    exc, _ = run(_answering(body), False)
    assert isinstance(exc, SoapFault), repr(exc)
    assert exc.code == "s:Receiver"
    assert 900 <= len(exc.code_context) <= 1001 and exc.code_context.endswith("…")
    assert len(exc.message_fr) < 1200 and len(str(exc)) < 1200


def _subcodes(depth: int) -> str:
    return (
        "<s:Value>s:Sender</s:Value>"
        + "<s:Subcode><s:Value>d:Level</s:Value>" * depth
        + "</s:Subcode>" * depth
    )


def test_a_long_subcode_chain_is_cut(run) -> None:
    body = soap(_fault(_subcodes(200), "refus"), relates_to="{RELATES}")
    exc, _ = run(_answering(body), False)
    assert isinstance(exc, SoapFault), repr(exc)
    segments = exc.code.split("/")
    assert segments[0] == "s:Sender" and segments[-1] == "…" and len(segments) <= 10, exc.code
    assert len(exc.message_fr) < 300


def test_ten_thousand_nested_subcodes_give_a_bounded_protocol_error(run) -> None:
    body = soap(_fault(_subcodes(10_000), "refus"), relates_to="{RELATES}")
    exc, _ = run(_answering(body), False)
    assert isinstance(exc, ProtocolError), repr(exc)
    assert len(exc.message_fr) < 300 and len(exc.detail) < 1000
    _french(exc)


@ROUTES
def test_a_fault_relating_to_another_request_is_not_taken_for_this_one(run, external_tls: bool) -> None:
    body = soap(_fault("<s:Value>s:Sender</s:Value>", "refus"), relates_to=f"urn:uuid:{uuid.uuid4()}")
    exc, _ = run(_answering(body), external_tls)
    assert type(exc) is ProtocolError, repr(exc)
    assert "ne correspond pas à la requête" in _french(exc) and "RelatesTo" in exc.detail


# -------------------------------------------------------------------------------------------- MTOM
def _mtom(root: bytes, parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "MIMEBoundary_hostile"
    chunks = [
        f'--{boundary}\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n'
        "Content-ID: <root@dmp>\r\n\r\n".encode()
        + root
        + b"\r\n"
    ]
    for cid, data in parts:
        chunks.append(
            f"--{boundary}\r\nContent-Type: text/xml\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{cid}>\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    ctype = (
        f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; start="<root@dmp>"; '
        'start-info="application/soap+xml"'
    )
    return b"".join(chunks), ctype


@ROUTES
def test_duplicate_mtom_content_ids_are_refused(run, external_tls: bool) -> None:
    root = soap(_fault("<s:Value>s:Sender</s:Value>", "refus"), relates_to="{RELATES}")
    body, ctype = _mtom(root, [("doc1@dmp", b"<a>premier</a>"), ("doc1@dmp", b"<a>second</a>")])
    exc, _ = run(_answering(body, ctype), external_tls)
    assert isinstance(exc, ProtocolError) and exc.code == "MTOM_DUPLICATE_CONTENT_ID", repr(exc)
    assert "même identifiant" in _french(exc)


def test_distinct_mtom_content_ids_still_pass(run) -> None:
    root = soap(_fault("<s:Value>s:Sender</s:Value>", "refus"), relates_to="{RELATES}")
    body, ctype = _mtom(root, [("doc1@dmp", b"<a>premier</a>"), ("doc2@dmp", b"<a>second</a>")])
    exc, _ = run(_answering(body, ctype), False)
    assert isinstance(exc, SoapFault), repr(exc)


def test_timeouts_stay_distinguishable() -> None:
    """The deadline error is a timeout (same handling by callers) with its own code."""
    assert issubclass(DmpDeadlineExceeded, DmpTimeout) and DmpDeadlineExceeded.retryable
    assert not ResponseTooLarge.retryable
