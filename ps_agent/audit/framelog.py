"""Frame log: the raw SOAP exchanges, minus document bytes, as homologation evidence (off by default).

The file is 0600 and its folder 0700 (chmod after creation, whoever created them; no-op on Windows).
Separate from the audit journal (which holds facts, not messages). Each call to ``record`` appends one
JSON line ``{"timestamp", "direction", "action", "bytes", "sha256", "xml"}`` to the log file, where
``xml`` is the SOAP envelope with:

- the content of every XDS ``Document`` element (ITI-41 request, ITI-43 response) replaced by a
  marker giving its size and SHA-256 — the document itself never reaches the log;
- MTOM/XOP: only the root ``application/xop+xml`` part is kept; attachment parts (the documents)
  are dropped and summarised the same way.

The VIHF assertion is kept (it is what homologation wants to see); it carries identities, no secret.
``enabled=False`` (the default) makes ``record`` a no-op, so callers can always call it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from ps_agent.audit._files import restrict_dir, restrict_file
from ps_agent.audit.journal import format_timestamp

XDS_DOCUMENT_TAGS = frozenset(
    {
        "{urn:ihe:iti:xds-b:2007}Document",  # ITI-41 ProvideAndRegister / ITI-43 DocumentResponse
        "{urn:ihe:iti:xds-b:2007}document",
    }
)
_BOUNDARY_RE = re.compile(rb"^--([^\r\n]+)\r?\n", re.MULTILINE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _marker(data: bytes) -> str:
    return f"[document retiré : {len(data)} octets, sha256={hashlib.sha256(data).hexdigest()}]"


def strip_documents(xml_bytes: bytes) -> str:
    """The message as text with document contents replaced by markers (see module docstring)."""
    data = bytes(xml_bytes)
    if data.lstrip().startswith(b"--"):
        data, dropped = _root_part(data)
    else:
        dropped = []
    text: str
    if re.search(rb"<!\s*DOCTYPE", data[:65536], re.IGNORECASE):
        return "[message refusé : DOCTYPE]"
    try:
        root = etree.fromstring(data.strip(), parser=_parser())
    except etree.XMLSyntaxError:
        text = f"[message non XML : {len(data)} octets, sha256={hashlib.sha256(data).hexdigest()}]"
    else:
        for element in root.iter():
            if element.tag in XDS_DOCUMENT_TAGS:
                raw = (element.text or "").encode("ascii", "replace")
                children = list(element)
                for child in children:
                    element.remove(child)
                element.text = _marker(raw) if raw.strip() else "[document en pièce jointe MTOM]"
        text = etree.tostring(root, encoding="unicode")
    if dropped:
        text += "\n" + "\n".join(dropped)
    return text


def _root_part(data: bytes) -> tuple[bytes, list[str]]:
    """Split a MIME multipart body: return the XML root part and markers for the other parts."""
    match = _BOUNDARY_RE.match(data.lstrip())
    if not match:
        return data, []
    boundary = b"--" + match.group(1).strip()
    parts = [p for p in data.split(boundary) if p.strip() and p.strip() != b"--"]
    root = b""
    dropped: list[str] = []
    for part in parts:
        head, _, body = part.partition(b"\r\n\r\n")
        if not body:
            head, _, body = part.partition(b"\n\n")
        body = body.rstrip(b"\r\n")
        if not root and (b"xop+xml" in head.lower() or b"soap+xml" in head.lower()):
            root = body
        else:
            dropped.append("[pièce jointe MTOM] " + _marker(body))
    return (root or data), dropped


class FrameLog:
    """Append-only JSON-lines log of SOAP frames; disabled unless ``enabled=True``."""

    def __init__(self, path: Path | None = None, *, enabled: bool = False) -> None:
        self.path = Path(path) if path else None
        self.enabled = bool(enabled and path)
        self._lock = threading.Lock()
        self._prepared = False

    def record(self, direction: str, action: str, xml_bytes: bytes) -> None:
        """``direction`` is "out" (request) or "in" (response); ``action`` the SOAP action or TD."""
        if not self.enabled or self.path is None:
            return
        data = bytes(xml_bytes)
        line = {
            "timestamp": format_timestamp(datetime.now(UTC)),
            "direction": direction,
            "action": action,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "xml": strip_documents(data),
        }
        with self._lock:
            if not self._prepared:
                # Identities and SOAP headers inside: owner-only, whoever created the file or folder.
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                restrict_dir(self.path.parent)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
                restrict_file(self.path)
                self._prepared = True
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
