"""Rotating private log files; a full command-line journey on the demo patients leaves no patient name or
INS in them (the code never logs them; the redacting filter is only a second line of defence)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ps_agent.logging_setup import LOG_FILENAME, RedactingFilter, redact, setup_logging
from sandbox.demo import DEMO_ADULT, DEMO_PATIENTS

ROOT = Path(__file__).resolve().parents[2]


def _log_text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob(LOG_FILENAME + "*")))


@pytest.mark.pcsc
@pytest.mark.slow
def test_a_full_journey_logs_no_patient_data(
    demo_sandbox: Any, test_pki: Any, virtual_card: Any, tmp_path: Path
) -> None:
    home = tmp_path / "agent"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_AGENT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        PS_AGENT_HOME=str(home),
        PS_AGENT_ENV=demo_sandbox.base_url,
        PS_AGENT_CA=str(test_pki.ca_bundle),
        PS_AGENT_TEST_PIN="1234",
        PS_AGENT_LOG_LEVEL="DEBUG",
    )
    virtual_card.insert("gp")
    oid = DEMO_ADULT.oid
    journeys = [["card", "status"]]
    for p in DEMO_PATIENTS:  # allowed, minor, blocked, closed, opposed: successes and refusals
        journeys.append(["dmp", "status", "--ins", p.ins, "--oid", oid])
    journeys += [
        ["dmp", "search", "--ins", DEMO_ADULT.ins, "--oid", oid, "--rubrique", "Comptes rendus"],
        ["dmp", "vaccinations", "--ins", DEMO_ADULT.ins, "--oid", oid],
        ["audit", "verify"],
    ]
    codes = []
    for argv in journeys:
        done = subprocess.run(
            [sys.executable, "-m", "ps_agent", *argv], env=env, capture_output=True, text=True, timeout=180
        )
        codes.append(done.returncode)
        assert done.returncode in (0, 1), (argv, done.stdout, done.stderr)
    assert codes[1] == 0  # the journey really reached the DMP for the demo adult
    text = _log_text(home)
    assert text.count("démarrage") == len(journeys)  # every run wrote to the log file
    for p in DEMO_PATIENTS:
        for secret in (p.ins, p.ins[:13], p.family_name, *p.given_names.split()):
            assert secret not in text, f"{secret!r} found in the logs"
    assert "1234" not in text.replace("12345", "")  # the test PIN


def test_log_file_and_folder_are_private_and_rotate(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    path = setup_logging(folder, level="DEBUG")
    try:
        assert path == folder / LOG_FILENAME
        logger = logging.getLogger("ps_agent.test_rotation")
        handler = next(h for h in logging.getLogger().handlers if getattr(h, "baseFilename", "") == str(path))
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        handler.maxBytes = 2000
        for n in range(60):
            logger.info("ligne %d %s", n, "x" * 60)
        handler.flush()
        files = sorted(folder.glob(LOG_FILENAME + "*"))
        assert len(files) >= 2  # rotated
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        setup_logging(tmp_path / "other")  # detach from this folder


@pytest.mark.parametrize(
    "text",
    [
        "patient 279037505612309 trouvé",
        "NIR 2 79 03 75 056 123 09",
        "INS=1140669123045",
        "corse 279032A12345678 ok",
    ],
)
def test_redact_masks_ins_and_nir(text: str) -> None:
    cleaned = redact(text)
    assert "[INS masqué]" in cleaned
    assert not any(ch.isdigit() for ch in cleaned.split("[INS masqué]")[0][-3:])


def test_redact_keeps_other_numbers() -> None:
    for text in ("port 8443", "oid 1.2.250.1.213.1.4.10", "id 899700000013", "durée 1234 ms"):
        assert redact(text) == text


def test_filter_applies_to_arguments() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "patient %s", ("279037505612309",), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "patient [INS masqué]"


def test_a_rotation_refused_by_windows_keeps_logging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "logs"
    path = setup_logging(folder, level="INFO")
    try:
        handler = next(h for h in logging.getLogger().handlers if getattr(h, "baseFilename", "") == str(path))
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        handler.maxBytes = 500

        def refused(source: str, dest: str) -> None:
            raise PermissionError(13, "used by another process", source)

        handler.rotate = refused  # type: ignore[method-assign]
        logger = logging.getLogger("ps_agent.test_locked")
        for n in range(30):
            logger.info("ligne %d %s", n, "y" * 40)
        handler.flush()
        assert "ligne 29" in Path(str(path)).read_text(encoding="utf-8")  # still writing, same file
        assert capsys.readouterr().err == ""  # nothing on the user's console
    finally:
        setup_logging(tmp_path / "other")
