"""SoftHSM2 tokens for the PKCS#11 tests, in a temporary directory (never the system token dir).

``SOFTHSM2_CONF`` is set for the whole session before any test loads the module (SoftHSM reads it
at ``C_Initialize``, once per process). Tokens (user PIN 1234):

- ``CPS-TEST``: the ``gp`` card's keys (``CKA_ID`` 0020 auth / 0010 sign), certificates,
  ``CPS_INFO_PS`` (public) and ``CPS_ACTIVITY_01_PS`` (private);
- ``CPS-EXPIRED``: the ``expired`` profile's keys and certificates;
- ``ORG-TEST``: the establishment's ORG AUTH_CLI (0020) and ORG SIGN (0010).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox.card.applet import holder_record, situation_record
from sandbox.pki import TestPki
from sandbox.profiles import PROFILES

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
USER_PIN = "1234"
SO_PIN = "87654321"


@dataclass
class SoftHsm:
    module: Path
    directory: Path
    pin: str = USER_PIN


def _run(cmd: list[str], env: dict[str, str]) -> None:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr.strip() or out.stdout.strip()}")


def _token(
    env: dict[str, str],
    tmp: Path,
    label: str,
    pairs: list[tuple[str, Path, x509.Certificate]],
    data: list[tuple[str, bytes, bool]],
) -> None:
    _run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", USER_PIN],
        env,
    )
    tool = [
        "pkcs11-tool",
        "--module",
        str(SOFTHSM_MODULE),
        "--token-label",
        label,
        "--login",
        "--pin",
        USER_PIN,
    ]
    for key_id, key_path, cert in pairs:
        _run(
            [
                "softhsm2-util",
                "--import",
                str(key_path),
                "--token",
                label,
                "--label",
                key_id,
                "--id",
                key_id,
                "--pin",
                USER_PIN,
            ],
            env,
        )
        der = tmp / f"{label}-{key_id}.der"
        der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        _run([*tool, "--write-object", str(der), "--type", "cert", "--id", key_id, "--label", key_id], env)
    for name, value, private in data:
        f = tmp / f"{label}-{name}.bin"
        f.write_bytes(value)
        _run(
            [
                *tool,
                "--write-object",
                str(f),
                "--type",
                "data",
                "--label",
                name,
                *(["--private"] if private else []),
            ],
            env,
        )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki) -> SoftHsm:
    if not (SOFTHSM_MODULE.is_file() and shutil.which("softhsm2-util") and shutil.which("pkcs11-tool")):
        pytest.skip("SoftHSM2 / pkcs11-tool not installed (apt-get install softhsm2 opensc)")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    env = dict(os.environ)
    gp = test_pki.card("gp")
    p = PROFILES["gp"]
    _token(
        env,
        base,
        "CPS-TEST",
        [("0020", gp.auth_key_path, gp.auth_cert), ("0010", gp.sign_key_path, gp.sign_cert)],
        [
            (
                "CPS_INFO_PS",
                holder_record(p, gp.auth_cert.not_valid_before_utc, gp.auth_cert.not_valid_after_utc),
                False,
            ),
            ("CPS_ACTIVITY_01_PS", situation_record(p, 0), True),
        ],
    )
    ex = test_pki.card("expired")
    _token(
        env,
        base,
        "CPS-EXPIRED",
        [("0020", ex.auth_key_path, ex.auth_cert), ("0010", ex.sign_key_path, ex.sign_cert)],
        [],
    )
    org = test_pki.establishment
    _token(
        env,
        base,
        "ORG-TEST",
        [("0020", org.auth_key_path, org.auth_cert), ("0010", org.sign_key_path, org.sign_cert)],
        [],
    )
    return SoftHsm(SOFTHSM_MODULE, base)
