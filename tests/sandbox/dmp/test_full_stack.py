"""The domain rules over the real stack (HTTPS on loopback, mutual TLS, SOAP 1.2, signed VIHF, MTOM):
demo patients as a tester meets them, plus the patient console acting while the server runs."""

from __future__ import annotations

from lxml import etree

from sandbox import demo
from sandbox.dmp import build, xds
from sandbox.profiles import PROFILES
from sandbox.server import mtom
from tests.fixtures.sandbox_calls import _errors, _find, _root, _spec


def test_demo_patients_over_https(demo_sandbox, test_pki, wire_for) -> None:
    wire = wire_for(demo_sandbox, test_pki)
    adult = demo.DEMO_ADULT
    gp_view = _find(wire, "gp", adult)
    gp_docs = list(gp_view.iter(f"{{{xds.RIM}}}ExtrinsicObject"))
    nurse_docs = list(_find(wire, "nurse", adult).iter(f"{{{xds.RIM}}}ExtrinsicObject"))
    assert len(gp_docs) >= 38  # médecin traitant: masked document included
    assert 0 < len(nurse_docs) < len(gp_docs)  # masked document and matrix-restricted types hidden
    # the blocked nurse on DEMO_BLOCKING
    refused = _find(wire, "nurse", demo.DEMO_BLOCKING)
    assert _errors(refused)[0][0] == "DMPAccessBlocked"
    # closed and opposed DMPs
    assert _errors(_find(wire, "gp", demo.DEMO_CLOSED))[0][0] == "DMPClosed"
    assert _errors(_find(wire, "gp", demo.DEMO_OPPOSED))[0][0] == "DMPOpposed"
    # retrieve one of the gp's documents, bytes identical to the store's
    uid = next(
        e.get("value")
        for e in gp_docs[0].iter(f"{{{xds.RIM}}}ExternalIdentifier")
        if e.get("identificationScheme") == xds.E_DOC_UNIQUE
    )
    resp = wire.call("TD3.2", build.retrieve([uid]), spec=_spec("gp", adult))
    root, parts = _root(resp)
    href = next(root.iter("{http://www.w3.org/2004/08/xop/include}Include")).get("href")
    stored = demo_sandbox.store.document(unique_id=uid)
    assert parts[mtom.normalise_cid(href)] == demo_sandbox.store.content(stored.entry_uuid)


def test_bris_de_glace_over_https_is_traced_with_its_reason(sandbox_server, test_pki, wire_for) -> None:
    wire = wire_for(sandbox_server, test_pki)
    demo.seed(sandbox_server.store)
    adult = demo.DEMO_ADULT
    root = _find(wire, "specialist", adult, purpose="bris_de_glace", reason="Coma")
    assert root.get("status", "").endswith("Success")
    trace = sandbox_server.store.traces(adult.ins)[-1]
    assert (trace.transaction, trace.purpose, trace.reason) == ("TD3.1", "bris_de_glace", "Coma")
    # the patient refuses emergency access with the console while the server runs
    from sandbox.__main__ import main

    assert (
        main(
            [
                "patient",
                "--data",
                str(sandbox_server.data_dir),
                "emergency",
                adult.ins,
                "--bris-de-glace",
                "non",
            ]
        )
        == 0
    )
    root = _find(wire, "specialist", adult, purpose="bris_de_glace", reason="Coma")
    assert _errors(root)[0] == (
        "DMPEmergencyAccessRefused",
        "Le patient s'est opposé à l'accès en urgence à son dossier.",
    )


def test_deposit_then_consent_then_search_over_https(sandbox_server, test_pki, wire_for) -> None:
    wire = wire_for(sandbox_server, test_pki)
    p = demo.DEMO_ADULT
    sandbox_server.store.create_patient(
        p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place
    )
    data = build.text_document(
        build.patient_input(p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place),
        build.author_input(PROFILES["gp"]),
        "11488-4", "Consultation", "Texte.",
    )  # fmt: skip
    holder = test_pki.card("gp")
    dep = build.provide_and_register(
        [build.DepositDocument(data)], signer=(holder.sign_key, holder.sign_cert, holder.chain)
    )
    parts = {cid: (content, "text/xml") for cid, content in dep.attachments.items()}
    resp = wire.call("TD2.1", dep.body, spec=_spec("gp", p), parts=parts)
    assert _root(resp)[0].get("status", "").endswith("Success"), resp.text
    assert _errors(_find(wire, "gp", p))[0][0] == "DMPAccessNotAuthorized"
    resp = wire.call("TD0.3", build.set_authorization("AJOUT"), spec=_spec("gp", p))
    assert _root(resp)[0].findtext(".//{*}status") == "DMPOk"
    root = _find(wire, "gp", p)
    assert [e.get("value") for e in root.iter(f"{{{xds.RIM}}}ExternalIdentifier")
            if e.get("identificationScheme") == xds.E_DOC_UNIQUE] == dep.unique_ids  # fmt: skip


def test_td13a_and_td11_over_https(demo_sandbox, test_pki, wire_for) -> None:
    wire = wire_for(demo_sandbox, test_pki)
    adult = demo.DEMO_ADULT
    resp = wire.call(
        "TD1.3a", build.existence_query(adult.ins, adult.oid, reason="CNSLT_DATA"), spec=_spec("gp", adult)
    )
    root = _root(resp)[0]
    assert root.find(".//{urn:hl7-org:v3}acknowledgement").get("typeCode") == "AA"
    assert root.findtext(".//{urn:hl7-org:v3}patientPerson/{urn:hl7-org:v3}name/{urn:hl7-org:v3}family") == (
        adult.family_name
    )
    create = etree.Element("{urn:hl7-org:v3}PRPA_IN201311UV02")
    resp = wire.call("TD1.1", create, spec=_spec("gp", adult))
    assert resp.status_code == 400
    assert b"sandbox:UnsupportedTransaction" in resp.content and "console patient" in resp.text
