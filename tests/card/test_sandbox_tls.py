"""The card's TLS route against the real sandbox DMP server (mutual TLS 1.2, client key on the card)."""

from __future__ import annotations

import httpx
import pytest

from ps_agent.auth.session import AuthSession
from sandbox.pki import TestPki

pytestmark = pytest.mark.pcsc


def test_card_session_reaches_the_sandbox_over_mutual_tls(
    virtual_card, sandbox_server, test_pki: TestPki
) -> None:
    virtual_card.insert("gp")
    with AuthSession.open(virtual_card.reader_name, "1234", ca_file=test_pki.ca_bundle) as session:
        before = virtual_card.card.apdu_count
        transport = session.tls_transport(ca_file=str(test_pki.ca_bundle))
        with httpx.Client(transport=transport, timeout=10) as client:
            response = client.post(
                sandbox_server.base_url + "patients",
                content=b"<not-soap/>",
                headers={"Content-Type": "application/soap+xml; charset=utf-8"},
            )
        # the TLS handshake succeeded with the card key; the sandbox answers at the SOAP level
        assert response.status_code in (400, 415, 500)
        assert virtual_card.card.apdu_count > before
