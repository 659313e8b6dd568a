"""The VIHF assertion copied from a per-request template (``vihf.build``) is the assertion built element by
element (``vihf.build_direct``) byte for byte, with its own ID and instants, and signing a copy never
changes the template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lxml import etree

from ps_agent.auth.model import AuthMode
from ps_agent.dmp import vihf
from ps_agent.dmp.vihf import Purpose


def _with_id(assertion: etree._Element, assertion_id: str) -> bytes:
    assertion.set("ID", assertion_id)
    return etree.tostring(assertion)


def test_copied_assertion_is_the_direct_build(gp, patient, lps, signer):
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    for mode, purpose, reason in [
        (AuthMode.DIRECTE, Purpose.NORMAL, ""),
        (AuthMode.INDIRECTE_RENFORCEE, Purpose.NORMAL, ""),
        (AuthMode.DIRECTE, Purpose.BRIS_DE_GLACE, "Patient inconscient aux urgences"),
    ]:
        req = vihf.VihfRequest(gp, mode, patient, lps, purpose, reason)
        direct = vihf.build_direct(req, issuer="CN=x", now=now, assertion_id="_fixed")
        first = vihf.build(req, issuer="CN=x", now=now)
        vihf.sign(first, signer)  # signs the copy in place
        later = vihf.build(req, issuer="CN=x", now=now + timedelta(seconds=1))
        second = vihf.build(req, issuer="CN=x", now=now)
        assert first.get("ID") != second.get("ID") and first.get("ID", "").startswith("_")
        assert _with_id(second, "_fixed") == etree.tostring(direct)
        stamp = "2026-03-04T05:06:08.000Z"
        assert later.get("IssueInstant") == stamp
        assert later.find(vihf.q(vihf.SAML2, "AuthnStatement")).get("AuthnInstant") == stamp
