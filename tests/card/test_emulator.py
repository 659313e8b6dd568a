"""The emulated card through the real stack: pcscd + vpcd + our emulator, raw APDUs via pyscard."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from sandbox.card import CPS3_ATR, UNKNOWN_ATR
from sandbox.pki import TestPki

pytestmark = pytest.mark.pcsc

AID = bytes.fromhex("E828BD080F8025000001FF0010")


def _connect(reader_name: str):
    from smartcard.System import readers

    reader = next(r for r in readers() if str(r) == reader_name)
    conn = reader.createConnection()
    conn.connect()
    return conn


def _tx(conn, apdu: bytes) -> tuple[bytes, int]:
    data, sw1, sw2 = conn.transmit(list(apdu))
    while sw1 == 0x61:
        more, sw1, sw2 = conn.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
        data += more
    return bytes(data), (sw1 << 8) | sw2


def test_insert_shows_the_cps3_atr_and_remove_empties_the_reader(virtual_card) -> None:
    virtual_card.insert("gp")
    conn = _connect(virtual_card.reader_name)
    assert bytes(conn.getATR()) == CPS3_ATR
    conn.disconnect()
    virtual_card.remove()
    assert not virtual_card.inserted


def test_pin_counter_blocks_after_three_and_puk_unblocks(virtual_card) -> None:
    virtual_card.insert("gp")
    conn = _connect(virtual_card.reader_name)
    assert _tx(conn, b"\x00\xa4\x04\x0c\x0d" + AID)[1] == 0x9000
    wrong = b"\x00\x20\x00\x81\x08" + b"9999" + b"\xff" * 4
    assert _tx(conn, b"\x00\x20\x00\x81")[1] == 0x63C3
    assert [_tx(conn, wrong)[1] for _ in range(3)] == [0x63C2, 0x63C1, 0x6983]
    good = b"\x00\x20\x00\x81\x08" + b"1234" + b"\xff" * 4
    assert _tx(conn, good)[1] == 0x6983
    assert _tx(conn, b"\x00\x2c\x00\x81\x10" + b"12345678" + b"4321" + b"\xff" * 4)[1] == 0x9000
    assert _tx(conn, b"\x00\x20\x00\x81\x08" + b"4321" + b"\xff" * 4)[1] == 0x9000


def test_signature_with_the_card_key_verifies(virtual_card, test_pki: TestPki) -> None:
    import hashlib

    virtual_card.insert("gp")
    conn = _connect(virtual_card.reader_name)
    _tx(conn, b"\x00\xa4\x04\x0c\x0d" + AID)
    assert _tx(conn, b"\x00\x22\x41\xb6\x03\x84\x01\x10")[1] == 0x9000
    digest = hashlib.sha256(b"hello").digest()
    assert _tx(conn, b"\x00\x2a\x90\xa0\x22\x90\x20" + digest)[1] == 0x9000
    assert _tx(conn, b"\x00\x2a\x9e\x9a\x00")[1] == 0x6982  # PIN first
    _tx(conn, b"\x00\x20\x00\x81\x08" + b"1234" + b"\xff" * 4)
    _tx(conn, b"\x00\x2a\x90\xa0\x22\x90\x20" + digest)
    sig, sw = _tx(conn, b"\x00\x2a\x9e\x9a\x00")
    assert sw == 0x9000 and len(sig) == 256
    test_pki.card("gp").sign_cert.public_key().verify(sig, b"hello", padding.PKCS1v15(), hashes.SHA256())


def test_unknown_card_has_a_foreign_atr(virtual_card) -> None:
    virtual_card.insert("unknown")
    conn = _connect(virtual_card.reader_name)
    assert bytes(conn.getATR()) == UNKNOWN_ATR
    assert _tx(conn, b"\x00\xa4\x04\x0c\x0d" + AID)[1] == 0x6D00


def test_cli_help_lists_the_profiles() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sandbox.card", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("gp", "specialist", "pharmacist", "nurse", "secretary", "regulator", "blocked", "expired"):
        assert f"  {name} " in out


def test_cli_insert_and_remove_in_the_second_reader(virtual_card, test_pki: TestPki) -> None:
    """``python -m sandbox.card insert/remove`` (background process), on reader 1 under the same lock."""
    from sandbox.card.readerstate import wait_reader_state

    env_pki = ["--pki", str(test_pki.directory), "--reader", "1"]
    run = [sys.executable, "-m", "sandbox.card"]
    out = subprocess.run([*run, "insert", "--profile", "nurse", *env_pki], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    try:
        wait_reader_state("Virtual PCD 00 01", present=True)
        again = subprocess.run([*run, "insert", "--profile", "gp", *env_pki], capture_output=True, text=True)
        assert again.returncode == 1 and "déjà insérée" in again.stderr
    finally:
        subprocess.run([*run, "remove", "--reader", "1"], check=True, capture_output=True)
    wait_reader_state("Virtual PCD 00 01", present=False)
