"""One HTTP exchange with the DMP, bounded in time and in size (against a slow or hostile server).

- **One overall deadline per exchange** (``deadline_s``): connection, TLS handshake, request, response
  headers and body all fit in it. httpx timeouts are per read, so a server trickling one byte every 2 s
  never trips them; here the deadline is checked between chunks and, through ``ps_agent.deadline``, the
  agent's own network streams (``ps_agent.auth.tls``, both the ``ssl`` and the tlslite/card routes) cap
  every socket operation to the time left, so the exchange fails *at* the deadline even mid-read.
- **A response size cap** (``max_response_bytes``): a declared Content-Length above it is refused before
  reading; a streamed body is counted chunk by chunk and the connection dropped as soon as the cap is
  passed (an endless answer costs at most the cap in memory). ``Accept-Encoding: identity`` is asked for,
  and decoded bytes are what is counted, so a compressed answer cannot expand past the cap either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ps_agent import deadline as exchange
from ps_agent.dmp.errors import DmpDeadlineExceeded, DmpTimeout, ResponseTooLarge, TransportError

if TYPE_CHECKING:  # httpx is imported where used: the window's start-up does not pay for it
    import httpx

# [I] Overall deadline of one exchange. The slowest legitimate exchange is a full answer at the size cap
# (64 MiB) or a large deposit over a GP's ADSL line (≈ 2 Mbit/s down, < 1 Mbit/s up): about 270 s for
# 64 MiB. 300 s lets those through and still ends a trickling or stalled server within five minutes.
DEFAULT_DEADLINE_S = 300.0
# [I] Response size cap. One FindDocuments entry (a full ExtrinsicObject, LeafClass) weighs ≈ 6.9 KB as the
# sandbox renders it (measured in tests/dmp/test_hostile_search_size.py), so 5,000 entries are ≈ 35 MB;
# a retrieved document is a CDA of a few MB with an embedded PDF (the sandbox takes deposits up to 20 MiB).
# 64 MiB covers both with a margin of about 2x and bounds what a hostile server can make the agent hold.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RawResponse:
    """A complete HTTP answer, read within the deadline and the size cap."""

    status_code: int
    content_type: str
    content: bytes


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} Mio"


def _deadline_error(deadline_s: float, detail: str) -> DmpDeadlineExceeded:
    return DmpDeadlineExceeded(
        f"Le DMP n'a pas terminé sa réponse dans le délai maximal de {deadline_s:g} s : l'échange est "
        "abandonné. Réessayez dans un instant.",
        detail=detail,
    )


def _timeout_error(exc: Exception, deadline_at: float, deadline_s: float) -> TransportError:
    if time.monotonic() >= deadline_at - 0.05:  # the per-operation timeout was the deadline's remainder
        return _deadline_error(deadline_s, f"{type(exc).__name__}: {exc}")
    return DmpTimeout("Le DMP n'a pas répondu à temps. Réessayez dans un instant.", detail=str(exc))


def _transport_error(exc: Exception) -> TransportError:
    return TransportError(
        "Le DMP est injoignable (réseau ou connexion sécurisée). Vérifiez la connexion et réessayez.",
        detail=f"{type(exc).__name__}: {exc}",
    )


def _too_large(max_bytes: int, detail: str) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"La réponse du DMP dépasse la taille maximale acceptée ({_mib(max_bytes)}) : elle est refusée. "
        "Pour une recherche, précisez les critères.",
        detail=detail,
    )


def _capped_timeout(timeout: httpx.Timeout, deadline_s: float) -> httpx.Timeout:
    def cap(value: float | None) -> float:
        return deadline_s if value is None else min(value, deadline_s)

    import httpx

    return httpx.Timeout(
        connect=cap(timeout.connect), read=cap(timeout.read), write=cap(timeout.write), pool=cap(timeout.pool)
    )


_OWN_HEADERS = (b"content-type", b"accept-encoding")


def build_post(
    http: httpx.Client, url: str | httpx.URL, content: bytes, content_type: str, timeout: httpx.Timeout
) -> httpx.Request:
    """``http.build_request("POST", url, ...)`` with our Content-Type and ``Accept-Encoding: identity``:
    the same request, built without the client's per-call merging (a Headers copy and update, the URL, the
    cookies and the query parameters) when the client has no cookies nor parameters to add and ``url`` is
    absolute: its headers are then the client's with ours replacing theirs, in httpx's order."""
    import httpx

    if http.cookies or http.params or not isinstance(url, httpx.URL) or url.is_relative_url:
        return http.build_request(
            "POST",
            url,
            content=content,
            headers={"Content-Type": content_type, "Accept-Encoding": "identity"},
            timeout=timeout,
        )
    headers = [(k, v) for k, v in http.headers.raw if k.lower() not in _OWN_HEADERS]
    headers += [(b"Content-Type", content_type.encode("ascii")), (b"Accept-Encoding", b"identity")]
    return httpx.Request(
        "POST", url, content=content, headers=headers, extensions={"timeout": timeout.as_dict()}
    )


def post_bounded(
    http: httpx.Client,
    url: str | httpx.URL,
    *,
    content: bytes,
    content_type: str,
    deadline_s: float = DEFAULT_DEADLINE_S,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    transport: httpx.BaseTransport | None = None,
) -> RawResponse:
    """POST ``content`` to ``url`` (an ``httpx.URL`` parsed once by the caller saves a parse per call) and
    read the whole answer within ``deadline_s`` and ``max_response_bytes``.

    ``transport``: the transport ``http`` was built with, by a caller that built ``http`` itself with no
    auth, event hooks, mounts nor proxies (``DmpClient``): the request then goes to it directly, which is
    all ``http.send`` would do with it beyond its bookkeeping (auth flow, redirect loop, hooks, per-URL
    transport lookup, cookie jar: ≈ 0.1 ms a request); a ``Set-Cookie`` in the answer still goes to the
    client's jar. The response is closed the same way (its connection goes back to the pool).

    Raises ``DmpDeadlineExceeded`` (the overall deadline passed), ``DmpTimeout`` (one read or the
    connection timed out earlier), ``TransportError`` (network/TLS) or ``ResponseTooLarge``.
    """
    if deadline_s <= 0 or max_response_bytes <= 0:
        raise ValueError("deadline_s and max_response_bytes must be positive")
    import httpx

    with exchange.exchange_deadline(deadline_s) as deadline_at:
        request = build_post(http, url, content, content_type, _capped_timeout(http.timeout, deadline_s))
        try:
            if transport is None:
                response = http.send(request, stream=True)
            else:
                if http.is_closed:  # as http.send would say
                    raise RuntimeError("Cannot send a request, as the client has been closed.")
                response = transport.handle_request(request)
                response.request = request
                if "set-cookie" in response.headers:
                    http.cookies.extract_cookies(response)
        except httpx.TimeoutException as exc:
            raise _timeout_error(exc, deadline_at, deadline_s) from exc
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        try:
            header = response.headers.get("content-length", "").strip()
            declared = int(header) if header.isdigit() else None
            if declared is not None and declared > max_response_bytes:
                raise _too_large(max_response_bytes, f"Content-Length {declared}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_response_bytes:
                    raise _too_large(max_response_bytes, f"more than {max_response_bytes} bytes read")
                complete = declared is not None and len(body) >= declared
                if not complete and time.monotonic() >= deadline_at:
                    raise _deadline_error(deadline_s, f"{len(body)} bytes read at the deadline")
        except httpx.TimeoutException as exc:
            raise _timeout_error(exc, deadline_at, deadline_s) from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _transport_error(exc) from exc
        finally:
            response.close()  # an unfinished body: the connection is dropped, not drained
    return RawResponse(response.status_code, response.headers.get("content-type", ""), bytes(body))
