"""The one-shot loopback page behind « Ouvrir dans le navigateur »: served once with its token, 404 for
anything else, loopback only, stopped afterwards; fetched with httpx (a second HTTP implementation)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from ps_agent.viewer_share import OneShotPage, ShareError, share_html

HTML = "<html><body><h1>Compte rendu é</h1></body></html>"


def test_the_page_is_served_once_with_its_token_then_the_server_stops() -> None:
    page = share_html(HTML)
    try:
        url = urlsplit(page.url)
        assert url.hostname == "127.0.0.1" and url.port and url.port > 0
        token = url.path.lstrip("/")
        assert len(token) >= 40  # 32 random bytes, URL-safe
        with httpx.Client(trust_env=False) as client:
            wrong = client.get(f"http://127.0.0.1:{url.port}/{token[:-1]}x")
            assert wrong.status_code == 404 and "Compte rendu" not in wrong.text
            assert client.get(f"http://127.0.0.1:{url.port}/").status_code == 404
            assert page.running and not page.served  # a wrong path does not use up the answer
            r = client.get(page.url)
        assert r.status_code == 200
        assert r.text == HTML
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert page.served
        assert page.wait(10) and not page.running
        with pytest.raises(httpx.TransportError), httpx.Client(trust_env=False) as client:
            client.get(page.url, timeout=2)  # nobody listens any more
    finally:
        page.close()


def test_a_second_request_is_refused_even_if_it_reaches_the_server() -> None:
    page = OneShotPage(HTML)
    page.start()
    assert page._take(urlsplit(page.url).path, urlsplit(page.url).netloc) == HTML.encode()
    assert page._take(urlsplit(page.url).path, urlsplit(page.url).netloc) is None
    assert page.wait(10)


def test_a_wrong_host_header_gets_404() -> None:
    """DNS rebinding: a page of another site resolving to 127.0.0.1 sends its own Host."""
    with share_html(HTML) as page, httpx.Client(trust_env=False) as client:
        r = client.get(page.url, headers={"Host": "evil.example:80"})
        assert r.status_code == 404 and not page.served


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "localhost.evil.example", ""])  # noqa: S104
def test_a_non_loopback_bind_is_impossible(host: str) -> None:
    with pytest.raises(ShareError) as err:
        OneShotPage(HTML, host=host)
    assert err.value.code == "VIEWER_SHARE_NOT_LOOPBACK"
    assert "boucle locale" in err.value.message_fr


def test_the_socket_listens_on_loopback_only() -> None:
    with share_html(HTML) as page:
        assert page._server is not None
        address = page._server.socket.getsockname()
        assert address[0] == "127.0.0.1"
        assert page._server.socket.family == socket.AF_INET


def test_an_unfetched_page_expires() -> None:
    page = share_html(HTML, lifetime_s=0.3)
    assert page.wait(10), "the server must stop by itself after its lifetime"
    assert not page.served
    with pytest.raises(httpx.TransportError), httpx.Client(trust_env=False) as client:
        client.get(page.url, timeout=2)


def test_close_stops_it_early() -> None:
    page = share_html(HTML)
    page.close()
    assert not page.running and not page.served
