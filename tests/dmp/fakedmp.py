"""A scripted DMP answering at the httpx transport level, for client failure modes the real sandbox
cannot produce on demand (an answer lost after registration, a truncated MTOM body...).

The end-to-end journeys run against the real sandbox (tests/e2e); this only drives the client's
error paths deterministically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from lxml import etree

from ps_agent.auth.model import AuthMode, ProfessionalIdentity
from ps_agent.dmp import ebrim, mtom
from ps_agent.dmp.model import DocumentEntry, Status
from ps_agent.dmp.xmlns import QUERY, RIM, RS, SOAP, WSA, q


class FakeCredentials:
    def __init__(self, identity: ProfessionalIdentity, signer, mode: AuthMode = AuthMode.DIRECTE) -> None:
        self._identity, self._signer, self._mode = identity, signer, mode
        self.active = True

    @property
    def identity(self) -> ProfessionalIdentity:
        return self._identity

    @property
    def mode(self) -> AuthMode:
        return self._mode

    def vihf_signer(self):
        return self._signer

    def tls_transport(self, *, ca_file: str, verify_host: bool = True) -> httpx.BaseTransport:
        raise AssertionError("tests give the transport explicitly")

    def ensure_active(self) -> None:
        if not self.active:
            from ps_agent.errors import AuthError

            raise AuthError("La carte a été retirée.", code="CARD_REMOVED")


def envelope(body: str | bytes, relates_to: str, action: str) -> bytes:
    if isinstance(body, bytes):
        body = body.decode()
    return (
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}"><s:Header><a:Action>{action}</a:Action>'
        f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def query_response(entries: list[DocumentEntry]) -> bytes:
    root = etree.Element(q(QUERY, "AdhocQueryResponse"), status=ebrim.SUCCESS)
    rol = etree.SubElement(root, q(RIM, "RegistryObjectList"))
    ids = ebrim._Ids()
    for n, e in enumerate(entries):
        ebrim.document_entry_element(
            rol, ids, e, e.entry_uuid or f"urn:uuid:{n}", status=e.status or Status.APPROVED
        )
    return etree.tostring(root)


@dataclass
class Request:
    action: str
    message_id: str
    root: etree._Element
    parts: dict[str, mtom.Part]


@dataclass
class FakeDmp:
    """Dispatches on the SOAP action; ``handlers[action](request) -> httpx.Response | Exception``."""

    handlers: dict[str, Callable[[Request], httpx.Response]] = field(default_factory=dict)
    calls: list[Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        ctype = request.headers["content-type"]
        body = request.read()
        parts: dict[str, mtom.Part] = {}
        if mtom.is_multipart(ctype):
            body, parts = mtom.parse(ctype, body)
        root = etree.fromstring(body)
        action = root.findtext(f".//{q(WSA, 'Action')}")
        mid = root.findtext(f".//{q(WSA, 'MessageID')}")
        req = Request(action, mid, root, parts)
        self.calls.append(req)
        return self.handlers[action](req)

    def count(self, action: str) -> int:
        return sum(1 for c in self.calls if c.action == action)


def ok(req: Request, body: str | bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status,
        content=envelope(body, req.message_id, req.action + "Response"),
        headers={"content-type": "application/soap+xml"},
    )


SUCCESS_RR = f'<rs:RegistryResponse xmlns:rs="{RS}" status="{ebrim.SUCCESS}"/>'
