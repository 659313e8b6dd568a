"""The gate's base64 check (``cda.validate._is_strict_base64``, one ``bytes.translate`` instead of a
decode) accepts exactly what ``binascii.a2b_base64(..., strict_mode=True)`` accepts once whitespace is
removed, on hand-picked edge cases and on a seeded random sample."""

from __future__ import annotations

import binascii
import random

from cda.validate import _is_strict_base64


def _reference(payload: str) -> bool:
    try:
        binascii.a2b_base64("".join(payload.split()), strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


EDGE_CASES = [
    "AAAA", "AAA=", "AA==", "A===", "A", "AB", "ABC", "=", "==", "AB=C", "ABC=AAAA", "AAAA====", "AAAA=",
    "pIK==", "AA===", "AAAA\n", "AA==\n", "AA= =", "AA\r\nAA", "AA\tAA\x0b", "\u00a0AAAA", "AAAA\u2003",
    "AAé=", "AA-_", "AA*A", "QUJD\nREVG\nR0g=\n", "AA=\nA", "A=A=", "AA==AA==", "AAA=\n \t", "==AA",
    "AAAA\n==", "AA\x00A", "AAAA\x1c", " =AAA",
]  # fmt: skip


def test_edge_cases_match_a2b_base64_strict() -> None:
    for payload in EDGE_CASES:
        assert _is_strict_base64(payload) is _reference(payload), payload


def test_random_payloads_match_a2b_base64_strict() -> None:
    rng = random.Random(20261203)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    noise = "= \n\t\r-_*\x0b\u00a0é"
    valid = 0
    for _ in range(20000):
        chars = alphabet + noise if rng.random() < 0.3 else alphabet + "="
        payload = "".join(rng.choice(chars) for _ in range(rng.randint(1, 14)))
        if not payload.strip():
            continue
        expected = _reference(payload)
        valid += expected
        assert _is_strict_base64(payload) is expected, repr(payload)
    assert 1000 < valid < 19000  # both outcomes are exercised
