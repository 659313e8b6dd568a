"""Keep secrets and document contents out of the audit journal.

The journal records *who did what to which patient*, never the PIN, a key, a certificate blob or a
document's content (TRC-04, dmp-protocol.md §10). Callers are expected to pass plain facts; this
module is the safety net: every free-text field goes through ``clean_text`` before it is hashed and
stored, which redacts what looks like a secret or a content blob and trims over-long values.
Redaction rather than refusal: an audit write must not fail because an exception message happened
to quote a SOAP fragment, and the action must still be recorded.
"""

from __future__ import annotations

import re

# Field length limits (characters). Longer values are cut and end with "…".
MAX_REASON = 1000  # bris de glace reason typed by the professional
MAX_DETAIL = 2000  # error detail / free comment
MAX_SHORT = 256  # identifiers, names, codes
MAX_DOCUMENT_IDS = 500  # ids per record (a batch deposit); more are summarised

REDACTED_SECRET = "[secret masqué]"  # noqa: S105 - a marker, not a password
REDACTED_KEY = "[clé ou certificat retiré]"
REDACTED_XML = "[contenu XML retiré]"
REDACTED_BLOB = "[données binaires retirées]"

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
# "pin=1234", "code PIN : 1234", "passphrase: x", "mot de passe 'abc'"...: after ":"/"=", the rest of
# the clause (up to , ; or end of line) is masked; a bare keyword is masked only before 4-12 digits.
_SECRET = re.compile(
    r"(?i)\b(code\s+pin|code\s+porteur|pin|puk|mot\s+de\s+passe|password|passphrase|secret)\b"
    r"(\s*[:=]\s*(?:\"[^\"]*\"|'[^']*'|[^,;\n]+)|\s+\d{4,12}\b)"
)
# Any XML markup (an element start tag, a processing instruction, CDATA): document or SOAP content.
_XML = re.compile(r"<\s*[?!]?[A-Za-z_][\w.:-]*(\s[^<>]*)?/?>")
_BLOB = re.compile(r"[A-Za-z0-9+/=_-]{120,}")  # base64 / hex runs far longer than any id or hash
_PDF = re.compile(r"%PDF-.*", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: str, limit: int = MAX_SHORT) -> str:
    """Return ``value`` without secrets, keys, XML/PDF content or binary blobs, cut to ``limit``."""
    if not value:
        return ""
    # names, codes, INS...: the same few values on every record, cleaned once
    if type(value) is str and (value, limit) in _KNOWN_CLEAN:
        return value
    text = _clean(value, limit)
    if text == value and type(value) is str and len(value) <= 256 and len(_KNOWN_CLEAN) < 4096:
        # only values stored verbatim anyway (nothing redacted or cut): the set holds no secret
        _KNOWN_CLEAN.add((value, limit))
    return text


_KNOWN_CLEAN: set[tuple[str, int]] = set()


def _clean(value: str, limit: int) -> str:
    text = _CONTROL.sub(" ", str(value))
    text = _PEM.sub(REDACTED_KEY, text)
    text = _PDF.sub(REDACTED_BLOB, text)
    if _XML.search(text):
        text = REDACTED_XML
    text = _SECRET.sub(lambda m: f"{m.group(1)}={REDACTED_SECRET}", text)
    text = _BLOB.sub(REDACTED_BLOB, text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def clean_ids(ids: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Document ids are identifiers (OIDs, UUIDs): clean each, and summarise an absurdly long list."""
    out = tuple(clean_text(i, MAX_SHORT) for i in ids if i)
    if len(out) > MAX_DOCUMENT_IDS:
        out = (*out[:MAX_DOCUMENT_IDS], f"… (+{len(out) - MAX_DOCUMENT_IDS} autres)")
    return out
