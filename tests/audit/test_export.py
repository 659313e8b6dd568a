# ruff: noqa: E501 - literal SOAP/MIME test messages read better unwrapped
"""FHIR R4 AuditEvent Bundle and CSV exports (API and ``ps-agent audit export``), and the frame log."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import pytest

from ps_agent.audit.framelog import FrameLog, strip_documents
from ps_agent.audit.journal import AuditJournal
from ps_agent.cli import main
from tests.audit.conftest import FakeClock, make_event

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _check_coding(c: dict) -> None:
    assert set(c) <= {"system", "code", "display", "version", "userSelected"}, c
    assert c.get("code") and isinstance(c["code"], str)


def check_audit_event(r: dict) -> None:
    """Structural check against the FHIR R4 AuditEvent definition (cardinalities, types, value sets)."""
    allowed = {
        "resourceType", "id", "meta", "extension", "type", "subtype", "action", "period", "recorded",
        "outcome", "outcomeDesc", "purposeOfEvent", "agent", "source", "entity",
    }  # fmt: skip
    assert set(r) <= allowed, set(r) - allowed
    assert r["resourceType"] == "AuditEvent" and ID_RE.match(r["id"])
    _check_coding(r["type"])  # 1..1 Coding
    for c in r.get("subtype", []):
        _check_coding(c)
    assert r.get("action") in {"C", "R", "U", "D", "E"}
    assert INSTANT_RE.match(r["recorded"])  # 1..1 instant
    assert r.get("outcome") in {"0", "4", "8", "12"}
    assert isinstance(r["agent"], list) and r["agent"]  # 1..*
    for agent in r["agent"]:
        assert isinstance(agent["requestor"], bool)  # 1..1
        assert set(agent) <= {"type", "role", "who", "altId", "name", "requestor", "location", "policy",
                              "media", "network", "purposeOfUse"}  # fmt: skip
    assert "observer" in r["source"]  # source.observer 1..1
    assert set(r["source"]) <= {"site", "observer", "type"}
    for entity in r.get("entity", []):
        assert set(entity) <= {"what", "type", "role", "lifecycle", "securityLabel", "name", "description",
                               "query", "detail"}  # fmt: skip
        for d in entity.get("detail", []):
            assert set(d) == {"type", "valueString"}
    for p in r.get("purposeOfEvent", []):
        for c in p["coding"]:
            _check_coding(c)


@pytest.fixture
def varied(journal: AuditJournal, clock: FakeClock) -> AuditJournal:
    journal.append(make_event(0, action="auth.login", transaction="", patient_ins="", document_ids=()))
    clock.advance(seconds=1)
    journal.append(make_event(1, action="dmp.status", transaction="TD0.2", document_ids=()))
    clock.advance(seconds=1)
    journal.append(
        make_event(2, action="dmp.deposit", transaction="TD2.1", on_behalf_of="899700000021",
                   auth_mode="INDIRECTE_RENFORCEE", actor_profession="", actor_name="MARIE SECRETAIRE")
    )  # fmt: skip
    clock.advance(seconds=1)
    journal.append(
        make_event(3, action="dmp.retrieve", access_mode="bris_de_glace", rule_id="URG-04",
                   reason="Patient inconscient, détresse respiratoire aiguë")
    )  # fmt: skip
    clock.advance(seconds=1)
    journal.append(make_event(4, action="dmp.search", outcome="refused", error_code="ACC-03", rule_id="ACC-03",
                              document_ids=()))  # fmt: skip
    clock.advance(seconds=1)
    journal.append(make_event(5, action="dmp.delete", outcome="error", error_code="XDSRegistryError",
                              detail="=HYPERLINK(\"http://x\")"))  # fmt: skip
    clock.advance(days=1)
    journal.append(
        make_event(6, action="dmp.retrieve", access_mode="centre_15", patient_ins="186017512345678")
    )
    return journal


def test_fhir_bundle_shape_and_mapping(varied: AuditJournal) -> None:
    out = io.StringIO()
    assert varied.export_fhir(out) == 7
    bundle = json.loads(out.getvalue())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert "total" not in bundle and len(bundle["entry"]) == 7  # bdl-1: total only for search/history
    events = [e["resource"] for e in bundle["entry"]]
    for entry in bundle["entry"]:
        assert re.match(
            r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", entry["fullUrl"]
        )
        check_audit_event(entry["resource"])
    login, status, deposit, btg, refused, delete, c15 = events
    assert login["type"]["code"] == "110114" and status["type"]["code"] == "110110"
    assert [e["action"] for e in events] == ["E", "E", "C", "R", "E", "D", "R"]
    assert [e["outcome"] for e in events] == ["0", "0", "0", "0", "4", "8", "0"]
    assert {"system": "urn:ps-agent:dmp-transaction", "code": "TD2.1"} in deposit["subtype"]
    assert deposit["agent"][0]["who"]["identifier"]["value"] == "899700000013"
    assert deposit["agent"][0]["requestor"] is True
    assert deposit["agent"][1]["who"]["identifier"]["value"] == "899700000021"
    assert deposit["agent"][1]["requestor"] is False
    patient = deposit["entity"][0]
    assert patient["what"]["identifier"] == {
        "system": "urn:oid:1.2.250.1.213.1.4.10",
        "value": "279035121518989",
    }
    assert patient["role"]["code"] == "1"
    assert deposit["entity"][1]["what"]["identifier"]["value"] == "1.2.250.1.999.1.2"
    assert btg["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    assert btg["purposeOfEvent"][0]["text"] == "Patient inconscient, détresse respiratoire aiguë"
    assert c15["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert status["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert refused["outcomeDesc"] == "ACC-03"
    chain = {x["url"]: x for x in delete["extension"][0]["extension"]}
    assert chain["seq"]["valueInteger"] == 6
    assert chain["hash"]["valueString"] == varied.records()[5].hash
    assert delete["source"]["site"] == "380000000100017"


def test_fhir_filters(varied: AuditJournal) -> None:
    out = io.StringIO()
    assert varied.export_fhir(out, patient_ins="186017512345678") == 1
    out = io.StringIO()
    assert varied.export_fhir(out, action="dmp.retrieve", until="2026-11-25") == 1


def test_csv_export(varied: AuditJournal) -> None:
    out = io.StringIO()
    assert varied.export_csv(out) == 7
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 7
    assert rows[0]["seq"] == "1" and rows[0]["action"] == "auth.login"
    assert rows[2]["on_behalf_of"] == "899700000021"
    assert rows[3]["reason"] == "Patient inconscient, détresse respiratoire aiguë"
    assert rows[5]["detail"].startswith("'=HYPERLINK")  # CSV injection neutralised
    assert rows[6]["hash"] == varied.records()[6].hash


def test_cli_export_to_file_and_stdout(
    varied: AuditJournal, journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "traces.json"
    rc = main(["audit", "export", "--journal", str(journal_path), "--format", "fhir", "--out", str(out_file)])
    assert rc == 0
    assert len(json.loads(out_file.read_text(encoding="utf-8"))["entry"]) == 7
    assert "7 enregistrement(s) exporté(s)" in capsys.readouterr().err
    rc = main(
        ["audit", "export", "--journal", str(journal_path), "--format", "csv", "--action", "dmp.retrieve"]
    )
    captured = capsys.readouterr()
    assert rc == 0
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 2
    rc = main(["audit", "list", "--journal", str(journal_path), "--patient", "186017512345678"])
    assert rc == 0 and "centre_15" in capsys.readouterr().out


def test_cli_export_refuses_a_broken_journal(
    varied: AuditJournal, journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = sqlite3.connect(journal_path)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit_records SET outcome = 'success' WHERE seq = 5")
    raw.commit()
    raw.close()
    out_file = tmp_path / "x.csv"
    rc = main(["audit", "export", "--journal", str(journal_path), "--format", "csv", "--out", str(out_file)])
    assert rc == 1 and not out_file.exists()
    assert "Export refusé" in capsys.readouterr().err
    rc = main(["audit", "export", "--journal", str(journal_path), "--format", "csv", "--out", str(out_file),
               "--force"])  # fmt: skip
    assert rc == 0 and out_file.exists()


def test_cli_missing_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["audit", "verify", "--journal", str(tmp_path / "absent.sqlite3")])
    assert rc == 2
    assert "Journal d'audit introuvable" in capsys.readouterr().err
    assert not (tmp_path / "absent.sqlite3").exists()


def test_cli_default_journal_from_agent_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    from ps_agent.cli.audit_cmd import default_journal_path

    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "home"))
    path = default_journal_path()
    assert path.parent == tmp_path / "home"
    with AuditJournal(path, clock=clock) as j:
        j.append(make_event())
    assert main(["audit", "verify"]) == 0
    assert "1 enregistrement(s) vérifié(s)" in capsys.readouterr().out


# -- frame log ---------------------------------------------------------------------------------------

ITI41 = b"""<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><Security>VIHF</Security></s:Header>
<s:Body><xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007">
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">metadata</lcm:SubmitObjectsRequest>
<xdsb:Document id="Doc1">PENsaW5pY2FsRG9jdW1lbnQ+Q29tcHRlIHJlbmR1IHNlY3JldDwvQ2xpbmljYWxEb2N1bWVudD4=</xdsb:Document>
</xdsb:ProvideAndRegisterDocumentSetRequest></s:Body></s:Envelope>"""


def test_frame_log_is_off_by_default(tmp_path: Path) -> None:
    log = FrameLog(tmp_path / "frames.jsonl")
    log.record("out", "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b", ITI41)
    assert not (tmp_path / "frames.jsonl").exists()


def test_frame_log_strips_documents(tmp_path: Path) -> None:
    log = FrameLog(tmp_path / "frames.jsonl", enabled=True)
    log.record("out", "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b", ITI41)
    line = json.loads((tmp_path / "frames.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert line["direction"] == "out" and line["bytes"] == len(ITI41)
    assert "VIHF" in line["xml"] and "metadata" in line["xml"]
    assert "PENsaW5pY2Fs" not in line["xml"] and "document retiré" in line["xml"]


def test_frame_log_drops_mtom_attachments() -> None:
    body = (
        b'--MIMEBoundary_1\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
        b"Content-ID: <root>\r\n\r\n"
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
        b'<xdsb:Document xmlns:xdsb="urn:ihe:iti:xds-b:2007" id="D"><xop:Include '
        b'xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:doc1"/></xdsb:Document></s:Body></s:Envelope>'
        b"\r\n--MIMEBoundary_1\r\nContent-Type: application/octet-stream\r\nContent-ID: <doc1>\r\n\r\n"
        b"%PDF-1.7 contenu secret du patient\r\n--MIMEBoundary_1--\r\n"
    )
    text = strip_documents(body)
    assert "contenu secret" not in text
    assert "[pièce jointe MTOM]" in text and "Envelope" in text


def test_frame_log_refuses_doctype_and_summarises_non_xml() -> None:
    assert strip_documents(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>') == (
        "[message refusé : DOCTYPE]"
    )
    assert strip_documents(b"HTTP 502 Bad Gateway").startswith("[message non XML : 20 octets")


def test_export_of_a_selection_honours_every_criterion(varied: AuditJournal) -> None:
    """« Exporter la sélection »: the RecordFilter the window builds, the same records in FHIR and CSV."""
    from datetime import UTC, datetime

    from ps_agent.audit.export import RecordFilter

    def exported(f: RecordFilter) -> tuple[list[str], list[str]]:
        fhir, text = io.StringIO(), io.StringIO()
        n_fhir = varied.export_fhir(fhir, where=f.matches, **f.query())
        n_csv = varied.export_csv(text, where=f.matches, **f.query())
        seqs_fhir = [str(e["resource"]["extension"][0]["extension"][0]["valueInteger"])
                     for e in json.loads(fhir.getvalue())["entry"]]  # fmt: skip
        seqs_csv = [r["seq"] for r in csv.DictReader(io.StringIO(text.getvalue()))]
        assert n_fhir == len(seqs_fhir) and n_csv == len(seqs_csv)
        return seqs_fhir, seqs_csv

    def seqs(f: RecordFilter) -> list[str]:
        a, b = exported(f)
        assert a == b
        assert a == [str(r.seq) for r in varied.records() if f.matches(r)]
        return a

    assert RecordFilter().empty and seqs(RecordFilter()) == [str(n) for n in range(1, 8)]
    assert seqs(RecordFilter(outcome="refused")) == ["5"]
    assert seqs(RecordFilter(outcome="error", action="dmp.delete")) == ["6"]
    assert seqs(RecordFilter(action="dmp.")) == ["2", "3", "4", "5", "6", "7"]
    assert seqs(RecordFilter(text="détresse")) == ["4"]  # the reason, case-insensitive
    assert seqs(RecordFilter(text="marie secr")) == ["3"]  # the actor's name
    assert seqs(RecordFilter(text="899700000021")) == ["3"]  # acted for
    assert seqs(RecordFilter(patient_ins="186017512345678^1.2.250.1.213.1.4.10")) == ["7"]
    day1 = datetime(2026, 11, 25, tzinfo=UTC)
    # the first day only (until exclusive), then from 10:00:03 on
    assert seqs(RecordFilter(since=day1, until=datetime(2026, 11, 26, tzinfo=UTC))) == [
        str(n) for n in range(1, 7)
    ]
    assert seqs(RecordFilter(since=datetime(2026, 11, 25, 10, 0, 3, tzinfo=UTC))) == ["4", "5", "6", "7"]
    assert seqs(RecordFilter(since=day1, action="dmp.retrieve", text="URG")) == ["4"]
    with pytest.raises(ValueError, match="timezone-aware"):
        RecordFilter(since=datetime(2026, 11, 25))
    # the writers alone take the predicate too
    out = io.StringIO()
    from ps_agent.audit.export import write_csv

    assert write_csv(varied.records(), out, where=lambda r: r.seq % 2 == 0) == 3
