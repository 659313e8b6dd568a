"""MTOM/XOP (``multipart/related``) parsing and building, SOAP 1.2 HTTP binding content types.

Parsing accepts any boundary, quoted or unquoted parameters, ``binary``/``8bit``/``base64`` parts, and
URL-encoded ``cid:`` references. The root part is the one named by ``start`` (else the first part).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote

from sandbox.server.context import SoapFault

XOP_NS = "http://www.w3.org/2004/08/xop/include"
SOAP_CT = "application/soap+xml"


@dataclass
class ContentType:
    mime: str
    params: dict[str, str]


def parse_content_type(value: str) -> ContentType:
    msg = Message()
    msg["content-type"] = value
    params = {k.lower(): v for k, v in msg.get_params(failobj=[], header="content-type")[1:]}
    return ContentType(msg.get_content_type(), params)


def normalise_cid(value: str) -> str:
    """``<a@b>``, ``cid:a%40b`` → ``a@b``."""
    value = value.strip()
    if value.lower().startswith("cid:"):
        value = value[4:]
    value = unquote(value)
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value


@dataclass
class Part:
    headers: dict[str, str]
    content: bytes

    @property
    def content_id(self) -> str:
        return normalise_cid(self.headers.get("content-id", ""))


def _split_headers(raw: bytes) -> tuple[dict[str, str], bytes]:
    sep = raw.find(b"\r\n\r\n")
    seplen = 4
    if sep < 0:
        sep = raw.find(b"\n\n")
        seplen = 2
    if sep < 0:
        raise SoapFault("Partie MIME sans en-têtes dans le message MTOM.", subcode="sandbox:InvalidMtom")
    headers: dict[str, str] = {}
    for line in raw[:sep].decode("latin-1").splitlines():
        if not line.strip():
            continue
        if ":" not in line:
            raise SoapFault("En-tête MIME invalide dans le message MTOM.", subcode="sandbox:InvalidMtom")
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, raw[sep + seplen :]


def parse_multipart(body: bytes, ctype: ContentType) -> tuple[bytes, dict[str, bytes]]:
    """Return (root SOAP envelope bytes, other parts by Content-ID)."""
    boundary = ctype.params.get("boundary")
    if not boundary:
        raise SoapFault("Message MTOM sans paramètre « boundary ».", subcode="sandbox:InvalidMtom")
    delim = b"--" + boundary.encode("latin-1")
    chunks = body.split(delim)
    if len(chunks) < 2:
        raise SoapFault("Message MTOM sans partie MIME.", subcode="sandbox:InvalidMtom")
    parts: list[Part] = []
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        # strip the CRLF after the delimiter line and the CRLF before the next delimiter
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        elif chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        headers, content = _split_headers(chunk)
        cte = headers.get("content-transfer-encoding", "binary").lower()
        if cte == "base64":
            try:
                content = base64.b64decode(content, validate=False)
            except (binascii.Error, ValueError):
                raise SoapFault(
                    "Partie MIME base64 invalide dans le message MTOM.", subcode="sandbox:InvalidMtom"
                ) from None
        elif cte not in ("binary", "8bit", "7bit"):
            raise SoapFault(
                f"Encodage de transfert MIME non pris en charge : {cte}.", subcode="sandbox:InvalidMtom"
            )
        parts.append(Part(headers, content))
    if not closed:
        raise SoapFault("Message MTOM tronqué (délimiteur final absent).", subcode="sandbox:InvalidMtom")
    seen: set[str] = set()
    for part in parts:
        cid = part.content_id
        if cid and cid in seen:
            raise SoapFault(f"Content-ID MTOM en double : {cid}.", subcode="sandbox:InvalidMtom")
        seen.add(cid)
    start = normalise_cid(ctype.params.get("start", "")) if ctype.params.get("start") else None
    root: Part | None = None
    if start:
        root = next((p for p in parts if p.content_id == start), None)
        if root is None:
            raise SoapFault(f"Partie racine MTOM « {start} » introuvable.", subcode="sandbox:InvalidMtom")
    else:
        root = parts[0]
    others: dict[str, bytes] = {}
    for part in parts:
        if part is root:
            continue
        cid = part.content_id
        if not cid:
            raise SoapFault("Partie MTOM sans Content-ID.", subcode="sandbox:InvalidMtom")
        others[cid] = part.content
    return root.content, others


def build_multipart(
    envelope: bytes, attachments: dict[str, tuple[bytes, str]], action: str
) -> tuple[bytes, str]:
    """Build an MTOM response; return (body, Content-Type header value)."""
    boundary = "MIMEBoundary_" + uuid.uuid4().hex
    root_cid = f"root.message.{uuid.uuid4().hex}@sandbox"
    out = bytearray()
    out += f"--{boundary}\r\n".encode()
    out += (
        'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
        "Content-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{root_cid}>\r\n\r\n"
    ).encode()
    out += envelope + b"\r\n"
    for cid, (data, mime) in attachments.items():
        out += f"--{boundary}\r\n".encode()
        out += (
            f"Content-Type: {mime}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n"
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    ctype = (
        f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
        f'start="<{root_cid}>"; start-info="application/soap+xml"; action="{action}"'
    )
    return bytes(out), ctype
