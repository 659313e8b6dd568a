"""``check_content`` on PDFs whose page tree is broken: each tree gets the answer of pypdf's own walk of
every page (``len(PdfReader(...).pages)``, the reference) in our French words, and ``/Count`` is never
trusted."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from cda.build import check_content
from cda.errors import InvalidPdfError

PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> >>"


def hand_pdf(objects: dict[int, bytes], root: int = 1) -> bytes:
    """A PDF with a correct cross-reference table holding ``objects`` (number → body), catalog ``root``."""
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (num, objects[num])
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        out += b"%010d 00000 n \n" % offsets[num] if num in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, xref)
    return bytes(out)


def tree(pages: bytes, *extra: tuple[int, bytes]) -> bytes:
    """Catalog 1, page tree root 2 (``pages``), the other objects as given."""
    return hand_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: pages, **dict(extra)})


def reference_pages(data: bytes) -> int | Exception:
    """pypdf's full walk: the page count, or what it raises."""
    try:
        return len(PdfReader(io.BytesIO(data)).pages)
    except Exception as exc:
        return exc


def outcome(data: bytes) -> str:
    try:
        check_content(data, "application/pdf")
    except InvalidPdfError as exc:
        assert exc.field == "content"
        return exc.message_fr
    return "ok"


NO_PAGE = "Le PDF ne contient aucune page."
UNREADABLE = "Le fichier PDF est illisible ou endommagé (PdfReadError)."
CUT_SHORT = "Le fichier PDF est illisible ou endommagé (PdfStreamError)."

# name → (PDF, outcome of check_content as it was before the shortcut: pypdf's walk decides)
CASES = {
    "one page": (tree(b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", (3, PAGE)), "ok"),
    "three pages, flat": (
        tree(b"<< /Type /Pages /Count 3 /Kids [3 0 R 4 0 R 5 0 R] >>", (3, PAGE), (4, PAGE), (5, PAGE)),
        "ok",
    ),
    "count 0 but a page": (tree(b"<< /Type /Pages /Count 0 /Kids [3 0 R] >>", (3, PAGE)), "ok"),
    "count 1, no kids": (tree(b"<< /Type /Pages /Count 1 /Kids [] >>"), NO_PAGE),
    "count 1, /Kids missing": (tree(b"<< /Type /Pages /Count 1 >>"), NO_PAGE),
    "count 1, kid missing from the file": (tree(b"<< /Type /Pages /Count 1 /Kids [9 0 R] >>"), NO_PAGE),
    "count 1, kid is a number": (tree(b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", (3, b"42")), NO_PAGE),
    "count 1, kid is an empty dictionary": (
        tree(b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", (3, b"<< >>")),
        NO_PAGE,
    ),
    "count 1, kid is a font": (
        tree(b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", (3, b"<< /Type /Font /Subtype /Type1 >>")),
        NO_PAGE,
    ),
    "count 1, kid is an empty page tree node": (
        tree(b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", (3, b"<< /Type /Pages /Count 0 /Kids [] >>")),
        NO_PAGE,
    ),
    "count 1, kid is the root itself": (tree(b"<< /Type /Pages /Count 1 /Kids [2 0 R] >>"), UNREADABLE),
    "count 2, second kid is the root itself": (
        tree(b"<< /Type /Pages /Count 2 /Kids [3 0 R 2 0 R] >>", (3, PAGE)),
        UNREADABLE,
    ),
    "count 1, /Kids not an array": (tree(b"<< /Type /Pages /Count 1 /Kids 3 0 R >>", (3, PAGE)), UNREADABLE),
    "count 1, page tree root is a number": (tree(b"7"), UNREADABLE),
    "catalog without /Pages": (hand_pdf({1: b"<< /Type /Catalog >>"}), UNREADABLE),
    "count 1, nested tree": (
        tree(
            b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
            (3, b"<< /Type /Pages /Parent 2 0 R /Count 1 /Kids [4 0 R] >>"),
            (4, PAGE.replace(b"2 0 R", b"3 0 R")),
        ),
        "ok",
    ),
    "count 1, nested tree with a cycle": (
        tree(
            b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
            (3, b"<< /Type /Pages /Parent 2 0 R /Count 1 /Kids [2 0 R] >>"),
        ),
        UNREADABLE,
    ),
    "kid without /Type but with a /MediaBox": (
        tree(b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", (3, b"<< /MediaBox [0 0 595 842] >>")),
        "ok",
    ),
    "page tree root without /Type": (tree(b"<< /Count 1 /Kids [3 0 R] >>", (3, PAGE)), "ok"),
    "count 1, inherited /Resources readable": (
        tree(
            b"<< /Type /Pages /Count 1 /Kids [3 0 R] /Resources 4 0 R >>",
            (3, PAGE),
            (4, b"<< /Font << >> >>"),
        ),
        "ok",
    ),
    "count 1, inherited /Resources unreadable": (
        tree(b"<< /Type /Pages /Count 1 /Kids [3 0 R] /Resources 4 0 R >>", (3, PAGE), (4, b"<< ( ")),
        CUT_SHORT,  # pypdf's walk reads the node's inherited values before its kids
    ),
    "count 1, kid's /Type unreadable": (
        tree(
            b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
            (3, b"<< /Type 4 0 R /MediaBox [0 0 1 1] >>"),
            (4, b"<< ( "),
        ),
        CUT_SHORT,
    ),
    "count 1, kid's /Type indirect": (
        tree(
            b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
            (3, b"<< /Type 4 0 R /MediaBox [0 0 1 1] >>"),
            (4, b"/Page"),
        ),
        "ok",
    ),
    "page tree root and kids written inline": (
        hand_pdf({1: b"<< /Type /Catalog /Pages << /Type /Pages /Count 1 /Kids [" + PAGE + b"] >> >>"}),
        None,  # whatever pypdf's walk says (a direct root and a direct kid: pypdf's cycle test)
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_broken_page_tree_is_refused_as_pypdf_walks_it(name: str) -> None:
    data, expected = CASES[name]
    ref = reference_pages(data)
    if isinstance(ref, int):
        walked = "ok" if ref >= 1 else NO_PAGE
    else:
        walked = f"Le fichier PDF est illisible ou endommagé ({type(ref).__name__})."
    if expected is not None:
        assert walked == expected  # the table says what pypdf's walk does on each tree
    assert outcome(data) == walked
