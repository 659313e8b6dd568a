"""Server-layer fixtures: the real HTTPS server with a recording stand-in for the domain layer, so the
envelope/TLS/VIHF/MTOM/fault checks are tested on their own (the domain layer has its own tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from sandbox.server import RunningSandbox, start
from sandbox.server.context import Caller, SoapFault, SoapRequest, SoapResponse
from tests.fixtures.sandbox import Wire

RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"


class RecordingService:
    """Answers every action with a minimal valid response; records requests and refusal traces."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.requests: list[SoapRequest] = []
        self.refusals: list[tuple[Caller | None, str, str, str]] = []
        self.commits = 0
        self.lock = threading.Lock()
        self.fault: SoapFault | None = None

    def handle(self, req: SoapRequest) -> SoapResponse:
        with self.lock:
            self.requests.append(req)
            if self.fault is not None:
                raise self.fault
            self.commits += 1
        if req.action == "urn:ihe:iti:2007:RetrieveDocumentSet":
            resp = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB, "rs": RS})
            etree.SubElement(resp, f"{{{RS}}}RegistryResponse", status=SUCCESS)
            dr = etree.SubElement(resp, f"{{{XDSB}}}DocumentResponse")
            etree.SubElement(dr, f"{{{XDSB}}}RepositoryUniqueId").text = "1.2.250.1.213.4.1.1.1.2"
            etree.SubElement(dr, f"{{{XDSB}}}DocumentUniqueId").text = "1.2.3.4"
            etree.SubElement(dr, f"{{{XDSB}}}mimeType").text = "text/xml"
            doc = etree.SubElement(dr, f"{{{XDSB}}}Document")
            etree.SubElement(doc, f"{{{XOP}}}Include", href="cid:doc1@sandbox", nsmap={"xop": XOP})
            parts = {"doc1@sandbox": (b"<ClinicalDocument/>", "text/xml")}
            return SoapResponse(req.action + "Response", resp, parts)
        body = etree.Element(f"{{{RS}}}RegistryResponse", status=SUCCESS, nsmap={"rs": RS})
        return SoapResponse(req.action + "Response", body)

    def trace_refusal(self, caller: Caller | None, service: str, action: str, reason: str) -> None:
        with self.lock:
            self.refusals.append((caller, service, action, reason))


@pytest.fixture
def recording(tmp_path: Path, test_pki: Any) -> Iterator[tuple[RunningSandbox, RecordingService, Wire]]:
    service = RecordingService(tmp_path)
    running = start(tmp_path / "data", test_pki, service=service, store=None)
    wire = Wire(running, test_pki)
    try:
        yield running, service, wire
    finally:
        wire.close()
        running.stop()
