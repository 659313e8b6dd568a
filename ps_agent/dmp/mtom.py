"""MTOM/XOP ``multipart/related`` build and parse (dmp-protocol.md §4.1).

Parsing accepts any boundary, quoted or unquoted parameters, binary or base64 parts, and
``xop:Include`` references or inline base64 in the XML.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote, unquote

from ps_agent.dmp.errors import ProtocolError

ROOT_CID = "root.message@ps-agent"


@dataclass(frozen=True)
class Part:
    content_id: str  # without <>
    content_type: str
    data: bytes


def new_cid(n: int) -> str:
    return f"{uuid.uuid4()}-{n}@ps-agent"


def build(root_xml: bytes, parts: list[Part], *, action: str) -> tuple[str, bytes]:
    """Return (Content-Type header, body) of an MTOM request."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
        f'start="<{ROOT_CID}>"; start-info="application/soap+xml"; action="{action}"'
    )
    b = boundary.encode()
    chunks = [
        b"--" + b + b"\r\n",
        b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n',
        b"Content-Transfer-Encoding: 8bit\r\n",
        f"Content-ID: <{ROOT_CID}>\r\n\r\n".encode(),
        root_xml,
        b"\r\n",
    ]
    for p in parts:
        chunks += [
            b"--" + b + b"\r\n",
            f"Content-Type: {p.content_type}\r\n".encode(),
            b"Content-Transfer-Encoding: binary\r\n",
            f"Content-ID: <{p.content_id}>\r\n\r\n".encode(),
            p.data,
            b"\r\n",
        ]
    chunks.append(b"--" + b + b"--\r\n")
    return content_type, b"".join(chunks)


def cid_href(content_id: str) -> str:
    """The ``xop:Include/@href`` for a Content-ID (URL-encoded, without <>)."""
    return "cid:" + quote(content_id, safe="@-._~!$'()*+,;=")


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    m = Message()
    m["content-type"] = value
    found = m.get_params(header="content-type", unquote=True) or []
    params = {k.lower(): str(v) for k, v in found[1:]}
    return m.get_content_type(), params


def is_multipart(content_type: str) -> bool:
    return content_type.lower().lstrip().startswith("multipart/related")


def parse(content_type: str, body: bytes) -> tuple[bytes, dict[str, Part]]:
    """Split a multipart/related body: (root part bytes, parts by Content-ID without <>)."""
    ctype, params = _header_params(content_type)
    if ctype != "multipart/related":
        raise ProtocolError("La réponse du DMP n'est pas un message MTOM.", detail=content_type)
    boundary = params.get("boundary")
    if not boundary:
        raise ProtocolError("La réponse MTOM du DMP n'a pas de délimiteur.", detail=content_type)
    start = params.get("start", "").strip("<>")
    delim = b"--" + boundary.encode()
    pieces = body.split(delim)
    if len(pieces) < 3:
        raise ProtocolError("La réponse MTOM du DMP est tronquée.", detail="no parts")
    parts: list[Part] = []
    closed = False
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            closed = True
            break
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        elif piece.startswith(b"\n"):
            piece = piece[1:]
        sep = piece.find(b"\r\n\r\n")
        sep_len = 4
        if sep < 0:
            sep = piece.find(b"\n\n")
            sep_len = 2
        if sep < 0:
            raise ProtocolError(
                "Une partie MTOM de la réponse du DMP est mal formée.", detail="no header end"
            )
        headers: dict[str, str] = {}
        for line in piece[:sep].decode("latin-1").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        data = piece[sep + sep_len :]
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if headers.get("content-transfer-encoding", "").lower() == "base64":
            data = base64.b64decode(data)
        parts.append(Part(headers.get("content-id", "").strip("<>"), headers.get("content-type", ""), data))
    if not closed:
        raise ProtocolError("La réponse MTOM du DMP est tronquée.", detail="no closing delimiter")
    by_id: dict[str, Part] = {}
    for p in parts:
        if p.content_id in by_id:  # which one would xop:Include designate? refuse rather than guess
            raise ProtocolError(
                "La réponse MTOM du DMP contient deux pièces portant le même identifiant (Content-ID) :"
                " elle est refusée.",
                code="MTOM_DUPLICATE_CONTENT_ID",
                detail=p.content_id[:200],
            )
        by_id[p.content_id] = p
    root = by_id.get(start) if start else parts[0]
    if root is None:
        raise ProtocolError("La partie principale de la réponse MTOM est absente.", detail=start)
    others = {cid: p for cid, p in by_id.items() if p is not root}
    return root.data, others


def resolve_include(href: str, parts: dict[str, Part]) -> bytes:
    if not href.startswith("cid:"):
        raise ProtocolError("Référence XOP invalide dans la réponse du DMP.", detail=href)
    cid = unquote(href[4:])
    part = parts.get(cid) or parts.get(href[4:])
    if part is None:
        raise ProtocolError("Une pièce jointe annoncée par le DMP est absente.", detail=cid)
    return part.data
