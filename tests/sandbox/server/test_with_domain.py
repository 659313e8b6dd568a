"""The real server + the real domain layer (``DmpService``) over HTTPS: success paths of the document
transactions, wire messages in both directions valid against the official schemas (``../shared``),
refusals traced in the store, data kept across a restart, and the ``serve`` command."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from lxml import etree

from sandbox import demo
from sandbox.dmp import build
from sandbox.server import mtom, start
from tests.fixtures.sandbox import ACTIONS, SOAP, VihfSpec, Wire, envelope

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dmp_schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(file=str(shared_dir / "schemas" / "xds" / "offline-dmp.xsd"))


def xop_infoset(root: etree._Element, parts: dict[str, bytes]) -> etree._Element:
    """Replace each xop:Include by the base64 of its part (how an MTOM message is schema-validated)."""
    root = copy.deepcopy(root)
    for inc in list(root.iter(f"{{{XOP}}}Include")):
        parent = inc.getparent()
        parent.remove(inc)
        parent.text = base64.b64encode(parts[mtom.normalise_cid(inc.get("href"))]).decode()
    return root


def assert_valid(schema: etree.XMLSchema, root: etree._Element) -> None:
    assert schema.validate(root), "\n".join(str(e) for e in schema.error_log)


def adult_spec(profile: str = "gp") -> VihfSpec:
    return VihfSpec(profile=profile, patient_ins=demo.DEMO_ADULT.ins, patient_oid=demo.DEMO_ADULT.oid)


def response_root(response) -> tuple[etree._Element, dict[str, bytes]]:
    ctype = mtom.parse_content_type(response.headers["content-type"])
    if ctype.mime == "multipart/related":
        root, parts = mtom.parse_multipart(response.content, ctype)
        return etree.fromstring(root), parts
    return etree.fromstring(response.content), {}


def test_find_and_retrieve_demo_documents_valid_both_ways(demo_sandbox, test_pki, dmp_schema):
    wire = Wire(demo_sandbox, test_pki)
    try:
        service, action = ACTIONS["TD3.1"]
        body = build.find_documents(demo.DEMO_ADULT.ins, demo.DEMO_ADULT.oid)
        request = envelope(action, body, wire.vihf(adult_spec(), sign=True), to=demo_sandbox.url(service))
        assert_valid(dmp_schema, etree.fromstring(request))
        r = wire.post(service, request, f'application/soap+xml; charset=UTF-8; action="{action}"')
        assert r.status_code == 200, r.text
        root, _ = response_root(r)
        assert_valid(dmp_schema, root)
        answer = root.find(f"{{{SOAP}}}Body/{{{QUERY}}}AdhocQueryResponse")
        assert answer.get("status") == SUCCESS
        entries = answer.findall(f".//{{{RIM}}}ExtrinsicObject")
        assert len(entries) >= 20
        # uniqueId + hash of the first entry
        entry = entries[0]
        unique_id = next(
            e.get("value")
            for e in entry.findall(f"{{{RIM}}}ExternalIdentifier")
            if e.get("identificationScheme") == "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
        )
        sha1 = next(
            s.findtext(f"{{{RIM}}}ValueList/{{{RIM}}}Value")
            for s in entry.findall(f"{{{RIM}}}Slot")
            if s.get("name") == "hash"
        )
        r = wire.call("TD3.2", build.retrieve([unique_id]), spec=adult_spec())
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("multipart/related")
        root, parts = response_root(r)
        assert_valid(dmp_schema, xop_infoset(root, parts))
        resp = root.find(f"{{{SOAP}}}Body/{{{XDSB}}}RetrieveDocumentSetResponse")
        assert resp.find(f"{{{RS}}}RegistryResponse").get("status") == SUCCESS
        (content,) = parts.values()
        assert hashlib.sha1(content).hexdigest() == sha1  # noqa: S324 - XDS hash
    finally:
        wire.close()


def test_fault_envelope_is_schema_valid(demo_sandbox, test_pki, dmp_schema):
    wire = Wire(demo_sandbox, test_pki)
    try:
        r = wire.call(
            "TD3.1",
            build.find_documents(demo.DEMO_ADULT.ins, demo.DEMO_ADULT.oid),
            spec=VihfSpec(specialty_code=""),
        )
        assert r.status_code == 400
        assert_valid(dmp_schema, etree.fromstring(r.content))
    finally:
        wire.close()


def test_deposit_valid_both_ways_then_restart_keeps_it(tmp_path, test_pki, dmp_schema):
    data = tmp_path / "data"
    running = start(data, test_pki)
    wire = Wire(running, test_pki)
    p = demo.DEMO_ADULT
    try:
        running.store.create_patient(
            p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place
        )
        running.store.set_authorisation(p.ins, "899700000013")  # the gp is authorised (TD0.3 done before)
        gp = test_pki.card("gp")
        from sandbox.profiles import PROFILES

        cda = build.text_document(
            build.patient_input(
                p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place
            ),
            build.author_input(PROFILES["gp"]),
            "11488-4",
            "Compte rendu de consultation",
            build.padded_text(50_000),
        )
        dep = build.provide_and_register(
            [build.DepositDocument(cda)], signer=(gp.sign_key, gp.sign_cert, gp.chain)
        )
        service, action = ACTIONS["TD2.1"]
        env = envelope(action, dep.body, wire.vihf(adult_spec(), sign=True), to=running.url(service))
        assert_valid(dmp_schema, xop_infoset(etree.fromstring(env), dep.attachments))
        r = wire.call(
            "TD2.1",
            dep.body,
            spec=adult_spec(),
            parts={k: (v, "text/xml") for k, v in dep.attachments.items()},
        )
        assert r.status_code == 200, r.text
        root, _ = response_root(r)
        assert_valid(dmp_schema, root)
        status = root.find(f"{{{SOAP}}}Body/{{{RS}}}RegistryResponse").get("status")
        assert status == SUCCESS, r.text
    finally:
        wire.close()
        running.stop()
    again = start(data, test_pki)
    wire = Wire(again, test_pki)
    try:
        r = wire.call("TD3.1", build.get_documents(unique_ids=dep.unique_ids), spec=adult_spec())
        root, _ = response_root(r)
        assert len(root.findall(f".//{{{RIM}}}ExtrinsicObject")) == 1, r.text
    finally:
        wire.close()
        again.stop()


def test_server_refusals_are_traced_by_the_domain_layer(sandbox_server, test_pki):
    wire = Wire(sandbox_server, test_pki)
    try:
        r = wire.call(
            "TD3.1",
            build.find_documents(demo.DEMO_ADULT.ins, demo.DEMO_ADULT.oid),
            spec=VihfSpec(profile="gp", purpose="centre_15", patient_ins=demo.DEMO_ADULT.ins),
        )
        assert r.status_code == 400
        traces = sandbox_server.store.traces()
        assert any("centre 15" in t.result and t.ps_id == "899700000013" for t in traces), traces
    finally:
        wire.close()


def test_serve_command_prints_credentials_and_stops_on_sigterm(tmp_path, test_pki):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--port",
            "0",
            "--pki",
            str(test_pki.directory),
            "--demo",
            "--seed",
            "3",
            "-v",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Arrêt"):
                break
        out = "".join(lines)
        assert "Bac à sable DMP à l'écoute sur https://127.0.0.1:" in out, out + proc.stderr.read()
        assert str(test_pki.ca_bundle) in out and "auth.p12" in out and "gp" in out
        assert "jeu de démonstration chargé" in out
        base = re.search(r"à l'écoute sur (\S+)", out).group(1)
        gp = test_pki.card("gp")
        ctx = ssl.create_default_context(cafile=str(test_pki.ca_bundle))
        ctx.load_cert_chain(str(gp.auth_cert_path), str(gp.auth_key_path))
        with httpx.Client(verify=ctx) as client:
            r = client.post(
                base + "registry", content=b"<broken", headers={"Content-Type": "application/soap+xml"}
            )
        assert r.status_code == 400
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "arrêté" in rest
        assert "faute SOAP sandbox:MalformedXml" in err  # --verbose logs each refusal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--host", "0.0.0.0"], "boucle locale"), (["--latency-rate", "3"], "entre 0 et 1")],  # noqa: S104
    ids=["non-loopback", "bad-fault-rate"],
)
def test_serve_command_refusals(tmp_path, test_pki, extra, message):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--pki",
            str(test_pki.directory),
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_serve_command_port_in_use(sandbox_server, tmp_path, test_pki):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--pki",
            str(test_pki.directory),
            "--port",
            str(sandbox_server.port),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Impossible d'écouter" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("spec", "sign", "sha1"),
    [
        (VihfSpec(), False, False),
        (VihfSpec(), True, False),
        (VihfSpec(), True, True),
        (VihfSpec(profile="secretary", mode="INDIRECTE"), True, False),
        (VihfSpec(profile="specialist", mode="INDIRECTE_RENFORCEE"), True, False),
    ],
    ids=["direct-unsigned", "direct-sha256", "direct-sha1", "indirect", "air"],
)
def test_request_envelopes_with_each_vihf_form_are_schema_valid(
    sandbox_server, test_pki, dmp_schema, spec, sign, sha1
):
    wire = Wire(sandbox_server, test_pki)
    try:
        service, action = ACTIONS["TD3.1"]
        env = envelope(
            action,
            build.find_documents(spec.patient_ins, spec.patient_oid),
            wire.vihf(spec, sign=sign, sha1=sha1),
        )
        assert_valid(dmp_schema, etree.fromstring(env))
        who = spec.profile if spec.mode == "DIRECTE" else "establishment"
        r = wire.post(service, env, "application/soap+xml; charset=UTF-8", who=who)
        assert r.status_code == 200, r.text
        assert_valid(dmp_schema, etree.fromstring(r.content))
    finally:
        wire.close()


def test_td02_and_iti57_through_the_server(sandbox_server, test_pki, dmp_schema):
    """TD0.2 (HL7v3) and an ITI-57 masking of a deposited document, valid both ways where schemas exist."""
    p = demo.DEMO_ADULT
    store = sandbox_server.store
    store.create_patient(p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place)
    store.set_authorisation(p.ins, "899700000013")
    wire = Wire(sandbox_server, test_pki)
    try:
        r = wire.call("TD0.2", build.existence_query(p.ins, p.oid), spec=adult_spec())
        assert r.status_code == 200, r.text
        ack = etree.fromstring(r.content).find(".//{urn:hl7-org:v3}acknowledgement")
        assert ack is not None and ack.get("typeCode") == "AA", r.text
        from sandbox.profiles import PROFILES

        gp = test_pki.card("gp")
        cda = build.text_document(
            build.patient_input(
                p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place
            ),
            build.author_input(PROFILES["gp"]),
            "11488-4",
            "Compte rendu",
            "Texte.",
        )
        dep = build.provide_and_register(
            [build.DepositDocument(cda)], signer=(gp.sign_key, gp.sign_cert, gp.chain)
        )
        r = wire.call(
            "TD2.1",
            dep.body,
            spec=adult_spec(),
            parts={k: (v, "text/xml") for k, v in dep.attachments.items()},
        )
        assert b"ResponseStatusType:Success" in r.content, r.text
        r = wire.call("TD3.1", build.get_documents(unique_ids=dep.unique_ids), spec=adult_spec())
        (entry,) = etree.fromstring(r.content).findall(f".//{{{RIM}}}ExtrinsicObject")
        body = build.update_confidentiality(p.ins, p.oid, entry, ["N", "MASQUE_PS"])
        service, action = ACTIONS["TD3.3"]
        env = envelope(action, body, wire.vihf(adult_spec()), to=sandbox_server.url(service))
        assert_valid(dmp_schema, etree.fromstring(env))
        r = wire.post(service, env, "application/soap+xml; charset=UTF-8")
        assert r.status_code == 200, r.text
        root = etree.fromstring(r.content)
        assert_valid(dmp_schema, root)
        assert root.find(f"{{{SOAP}}}Body/{{{RS}}}RegistryResponse").get("status") == SUCCESS, r.text
    finally:
        wire.close()


def test_centre_15_regulator_in_indirect_mode_reads_the_dmp(sandbox_server, test_pki):
    """dmp-protocol.md §1 restricts only bris de glace to DIRECTE: a SAMU regulator working through his
    establishment's software (INDIRECTE) consults in centre 15 mode; the patient's consent still applies."""
    from sandbox import profiles

    demo.seed(sandbox_server.store)
    adult = demo.DEMO_ADULT
    wire = Wire(sandbox_server, test_pki)
    spec = VihfSpec(
        profile="regulator",
        mode="INDIRECTE",
        purpose="centre_15",
        patient_ins=adult.ins,
        patient_oid=adult.oid,
        structure_id=profiles.ESTABLISHMENT.structure_id,
        sector=profiles.ESTABLISHMENT.sector,
    )
    try:
        r = wire.call("TD3.1", build.find_documents(adult.ins, adult.oid), spec=spec)
        root = response_root(r)[0].find(".//{*}AdhocQueryResponse")
        assert root is not None and root.get("status", "").endswith("Success"), r.status_code
        assert root.findall(f".//{{{RIM}}}ExtrinsicObject")
        trace = sandbox_server.store.traces(adult.ins)[-1]
        assert (trace.mode, trace.purpose) == ("INDIRECTE", "centre_15")
        sandbox_server.store.set_emergency(adult.ins, centre_15=False)
        r = wire.call("TD3.1", build.find_documents(adult.ins, adult.oid), spec=spec)
        root = response_root(r)[0]
        assert [e.get("errorCode") for e in root.iter("{*}RegistryError")] == ["DMPEmergencyAccessRefused"]
    finally:
        wire.close()
