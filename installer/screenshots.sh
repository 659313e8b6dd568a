#!/usr/bin/env bash
# Screenshots of the desktop agent's main screens, on a real X server (Xvfb) with the embedded default:
# the local sandbox DMP with the demo patients (in this process), software keys of the "gp" test card
# (and of the "specialist" one for the emergency screen). PNGs of the window only go to docs/screenshots/
# (or $1): no card, PIN, patient, deposit, viewer, minor, emergency, journal, queue, Ségur notice,
# vaccinations, secretary batch, configuration, diagnostic.
#
#   bash installer/screenshots.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PS_AGENT_PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-$ROOT/docs/screenshots}
mkdir -p "$OUT"
tmp=$(mktemp -d)
xpid=""
cleanup() {
  if [ -n "$xpid" ]; then kill "$xpid" 2>/dev/null || true; wait "$xpid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
Xvfb -displayfd 9 -screen 0 1280x860x24 -nolisten tcp 9>"$tmp/display" 2>"$tmp/xvfb.log" &
xpid=$!
for _ in $(seq 50); do [ -s "$tmp/display" ] && break; sleep 0.1; done
export DISPLAY=":$(cat "$tmp/display")" QT_QPA_PLATFORM=xcb PS_AGENT_SHOTS_TMP="$tmp" PS_AGENT_SHOTS_OUT="$OUT"
PYTHONPATH=$ROOT "$PY" - <<'PYEOF'
import os, sys, time
from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QApplication, QInputDialog

app = QApplication(sys.argv[:1])
tmp, out = Path(os.environ["PS_AGENT_SHOTS_TMP"]), Path(os.environ["PS_AGENT_SHOTS_OUT"])

from sandbox import demo
from sandbox.pki import load_or_create
from sandbox.profiles import PROFILES
from sandbox.server import start
from ps_agent.auth.model import Activity, AuthMode, ProfessionalIdentity
from ps_agent.auth.software import SoftwareCredentials
from ps_agent.config import AgentConfig, Environment
from ps_agent.services import Services
from ui.app import make_window
from ui.labels import CardState, IdentityStatus
from ui.patient import PatientIdentity

pki = load_or_create(tmp / "pki")
server = start(tmp / "sandbox", pki)
demo.seed(server.store)


def identity_of(name):
    p = PROFILES[name]
    s = p.situations[0]
    return ProfessionalIdentity(p.id_nat, p.family_name, p.given_name, p.profession_code, p.profession_label,
                                p.specialty_code, p.card_type, "", Activity(s.structure_id, s.structure_name,
                                s.sector, s.role), {"card_serial": p.serial})


def creds(name):
    c = pki.card(name)
    return SoftwareCredentials(identity_of(name), AuthMode.DIRECTE, c.auth_cert, c.auth_key, c.sign_cert,
                               c.sign_key, c.chain)


def ident(p, status=IdentityStatus.RECUPEREE):
    d = p.birth_date
    return PatientIdentity(p.ins, p.oid, status, p.family_name, p.given_names, f"{d[:4]}-{d[4:6]}-{d[6:]}",
                           p.sex, p.birth_place, source="INSi (bac à sable)")


class Insi:
    name = "INSi (bac à sable)"

    def find(self, typed, ctx):
        for p in demo.DEMO_PATIENTS:
            if p.ins == typed.ins:
                return ident(p)
        raise LookupError(typed.ins)


def wait(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return
        time.sleep(0.01)
    raise TimeoutError("screen not ready")


def idle(w):
    c = w.controller
    wait(lambda: (c.worker is None or c.worker.pending == 0) and c.services_worker.pending == 0)


def settle():
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def shot(name, widget=None):
    settle()
    screen = app.primaryScreen()
    pix = widget.grab() if widget is not None else screen.grabWindow(0)
    pix.save(str(out / f"{name}.png"))
    print("wrote", out / f"{name}.png")


def window(profile, home):
    env = Environment("sandbox", server.base_url, ca_file=str(pki.ca_bundle))
    services = Services(AgentConfig(env, tmp / home))
    w = make_window(services, identity_source=Insi(), auto_pin_dialog=False, segur_notice=False,
                    config_folder=tmp / f"config-{home}")
    w.resize(1260, 840)
    w.move(0, 0)
    w.show()
    return w, services


QInputDialog.getItem = staticmethod(lambda *a, **k: ("Carte nationale d'identité", True))

# 1. no card, 2. PIN
w, services = window(None, "home-gp")
w.controller._set_state(CardState.NO_CARD)
shot("01-sans-carte", w)
w.controller._set_state(CardState.PIN_NEEDED)
dlg = w.ask_pin()
dlg.move(420, 260)
dlg.pin.setText("12")
shot("02-code-porteur")
dlg.reject()
# 3. patient with rubrics (GP, authorised, médecin traitant)
w.controller.use_session(services.open_session(creds("gp")))
w.check_segur_notice(w.controller.session)
wait(lambda: w.notice_dialog is not None and w.notice_dialog.isVisible())
w.notice_dialog.move(340, 280)
shot("11-information-segur")
w.notice_dialog.ok.click()
idle(w)
w.open_form.fill(ident(demo.DEMO_ADULT, IdentityStatus.PROVISOIRE))
shot("03-ouvrir-patient", w)
w.open_form.open_btn.click()
wait(lambda: w.patient is not None)
idle(w)
w.identity_bar.validate_btn.click()
idle(w)
wait(lambda: w.doc_model.rowCount() > 0)
shot("04-patient-rubriques", w)
# 4. viewer with a PDF: deposit one first (also the deposit screen with the rubric preview)
w.tabs.setCurrentWidget(w.deposit_page)
sys.path.insert(0, ".")
from tests.ui.conftest import minimal_pdf  # noqa: E402

page = w.deposit_page
page.type.setCurrentIndex(page.type.findData("11488-4"))
page.set_pdf(minimal_pdf("Compte rendu de consultation - Dr Medecin-Generaliste"), "compte-rendu.pdf")
page.title.setText("Compte rendu de consultation — suivi HTA")
shot("05-depot-apercu-rubrique", w)
page.send.click()
idle(w)
shot("06-depot-resultat", w)
w.tabs.setCurrentWidget(w.patient_page)
w.list_documents()
idle(w)
for r in range(w.doc_proxy.rowCount()):
    if w.doc_proxy.index(r, 1).data() == "Compte rendu de consultation — suivi HTA":
        w.doc_table.selectRow(r)
        w.doc_table.activated.emit(w.doc_proxy.index(r, 0))
        break
idle(w)
wait(lambda: w.viewer.pdf.pageCount() > 0)
shot("07-visionneuse-pdf", w)
w.tabs.setCurrentWidget(w.vaccination_page)
w.read_vaccinations()
idle(w)
wait(lambda: w.vaccination_page.model.rowCount() > 0)
shot("12-vaccinations", w)
w.tabs.setCurrentWidget(w.journal_page)
idle(w)
w.verify_journal()
idle(w)
shot("09-journal", w)
w.tabs.setCurrentWidget(w.queue_page)
idle(w)
shot("10-file-envoi", w)
# secretary batch: three files for the open patient, one of them not a PDF (kept in the table to fix)
batch_dir = tmp / "lot"
batch_dir.mkdir()
(batch_dir / "CR_biologie_2026-11-28.pdf").write_bytes(minimal_pdf("Compte rendu de biologie"))
(batch_dir / "Courrier_cardiologue.pdf").write_bytes(minimal_pdf("Courrier du cardiologue"))
(batch_dir / "scan_illisible.pdf").write_bytes(b"ceci n'est pas un PDF")
w.tabs.setCurrentWidget(w.batch_page)
w.batch_page.add_files(sorted(batch_dir.iterdir()))
w.batch_page.send.click()
idle(w)
wait(lambda: w.batch_page.summary.text() != "")
shot("13-depot-par-lot", w)
# configuration (first run / settings) and the workstation diagnosis
w.tabs.setCurrentWidget(w.setup_page)
w.setup_page.detect()
idle(w)
shot("14-configuration", w)
w.tabs.setCurrentWidget(w.diagnostic_page)
w.diagnostic_page.run_checks()
wait(lambda: w.diagnostic_page.start.isEnabled(), timeout=60.0)
shot("15-diagnostic", w)
w.controller.close()
w.close()
# 5. emergency: a specialist not authorised on the minor's DMP
w2, services2 = window("specialist", "home-spec")
w2.controller.use_session(services2.open_session(creds("specialist")))
w2.open_form.fill(ident(demo.DEMO_MINOR))
w2.open_form.open_btn.click()
wait(lambda: w2.patient is not None)
idle(w2)
if w2.minor_box is not None:
    w2.minor_box.move(380, 260)
    shot("08-mineur-connexion-secrete")
    next(b for b in w2.minor_box.buttons() if b.text() == "Non").click()
w2.identity_bar.validate_btn.click()
idle(w2)
shot("08a-acces-non-autorise", w2)
d = w2.ask_emergency(centre_15=False)
d.move(380, 220)
d.cond1.setChecked(True)
d.cond2.setChecked(True)
d.reason.setPlainText("Patient inconscient aux urgences, traitement en cours inconnu")
shot("08b-bris-de-glace")
d.ok.click()
idle(w2)
shot("08c-bandeau-urgence", w2)
w2.controller.close()
server.stop()
PYEOF
