"""XML written as text, exactly as lxml serialises the same elements (the request hot path of a deposit).

Building a message element by element from Python costs ≈ 1 µs per element and attribute, then its
serialisation; the parts of a request that repeat (a Classification per code, the XAdES and VIHF
signature skeletons) are written once by lxml, kept as text, and filled with the values of each request.

- ``attr``/``text``: a value escaped as libxml2 writes it in a UTF-8 serialisation (``& < > "`` and
  tab/LF/CR in an attribute, ``& < >`` and CR in a text node, nothing else), or ``NotXmlText`` for a
  value lxml refuses (control characters, lone surrogates, U+FFFE/U+FFFF): the caller then builds the
  elements, whose own error is the one raised.
- ``Template``: the serialisation (or canonical form) of elements lxml made with marker values, split at
  the markers, filled by name. Every user is tested byte for byte against its element build.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

LXML_NOT_XML = "All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters"


class NotXmlText(ValueError):
    """A value that is not XML text (lxml's own message)."""

    def __init__(self) -> None:
        super().__init__(LXML_NOT_XML)


# Every character outside XML 1.0 ``Char`` (#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
# [#x10000-#x10FFFF]), written as the small positive class it is: the negated form over the whole of
# Unicode costs ≈ 5 ms to compile per pattern, paid at every start of the window (tested equal over all
# code points in tests/dmp/test_wire_text.py).
_NOT_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_NOT_XML_CHAR = re.compile(f"[{_NOT_XML}]")
# A character that is escaped, or not XML text: a value without any is written as it is (one search).
_ATTR_ATTENTION = re.compile(f'[\t\n\r"&<>{_NOT_XML}]')
_TEXT_ATTENTION = re.compile(f"[\r&<>{_NOT_XML}]")
# libxml2's escapes (xmlsave.c) in a UTF-8 serialisation; other characters are written as they are
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def attr(value: str) -> str:
    """An attribute value as lxml writes it (between double quotes)."""
    if _ATTR_ATTENTION.search(value) is None:
        return value
    if _NOT_XML_CHAR.search(value) is not None:
        raise NotXmlText
    return value.translate(_ATTR_ESCAPES)


def text(value: str) -> str:
    """A text node as lxml writes it."""
    if _TEXT_ATTENTION.search(value) is None:
        return value
    if _NOT_XML_CHAR.search(value) is not None:
        raise NotXmlText
    return value.translate(_TEXT_ESCAPES)


def marker(name: str) -> str:
    """A value to give an element where a ``Template`` has a hole ``name``: letters and digits only (written
    as is by every serialisation and canonical form), unique."""
    return f"tpl{uuid.uuid4().hex}{name}end"


class Template:
    """``data`` (bytes lxml wrote for elements carrying ``markers`` as values) split at each occurrence of a
    marker; ``fill`` puts the values back in their places (a marker may occur several times).

    The values given to ``fill`` must be written as lxml would write them (``attr``/``text``, or plain
    characters that no serialisation changes: ids, OIDs, base64, timestamps)."""

    __slots__ = ("_names", "_pieces")

    def __init__(self, data: bytes, markers: Mapping[str, str]) -> None:
        by_marker = {m.encode("ascii"): name for name, m in markers.items()}
        pattern = re.compile(b"|".join(re.escape(m) for m in by_marker))
        pieces: list[bytes] = []
        names: list[str] = []
        start = 0
        for found in pattern.finditer(data):
            pieces.append(data[start : found.start()])
            names.append(by_marker[found.group()])
            start = found.end()
        pieces.append(data[start:])
        missing = set(markers) - set(names)
        if missing:
            raise ValueError(f"markers not found in the template: {sorted(missing)}")
        self._pieces = pieces
        self._names = names

    def fill(self, values: Mapping[str, bytes]) -> bytes:
        pieces = self._pieces
        out = [pieces[0]]
        for i, name in enumerate(self._names, 1):
            out.append(values[name])
            out.append(pieces[i])
        return b"".join(out)
