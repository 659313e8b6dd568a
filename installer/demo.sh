#!/usr/bin/env bash
# Starts ps-agent on the embedded default: the local sandbox DMP (HTTPS on loopback, demo patients) with
# the local INSi (ports +1 and +2), the emulated CPS card in the virtual reader (pcscd + vpcd), and the
# agent's command line pointed at them.
#
#   bash installer/demo.sh              with a display: the window (tray agent) on the sandbox; without one,
#                                       or with --shell: a shell where `ps-agent ...` talks to the sandbox
#   bash installer/demo.sh --smoke      non-interactive check: status + search of the demo adult, then the
#                                       journey carte Vitale → INSi → validated identity → DMP status; stop
#
# Settings (environment): PS_AGENT_DEMO_HOME (default ./var/demo), PS_AGENT_DEMO_PORT (8443),
# PS_AGENT_DEMO_PROFILE (gp; see `python -m sandbox.card --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash installer/setup.sh >/dev/null
PY=$ROOT/.venv/bin/python
MODE=${1:-interactive}
DEMO_HOME=${PS_AGENT_DEMO_HOME:-$ROOT/var/demo}
PORT=${PS_AGENT_DEMO_PORT:-8443}
PROFILE=${PS_AGENT_DEMO_PROFILE:-gp}
mkdir -p "$DEMO_HOME"
chmod 700 "$DEMO_HOME"

pcscd_pid="" sandbox_pid="" card_inserted="" vitale_inserted=""
cleanup() {
  set +e
  [ -n "$vitale_inserted" ] && "$PY" -m sandbox.card remove --reader 1 >/dev/null 2>&1
  [ -n "$card_inserted" ] && "$PY" -m sandbox.card remove >/dev/null 2>&1
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null; wait "$sandbox_pid" 2>/dev/null; fi
  if [ -n "$pcscd_pid" ]; then kill "$pcscd_pid" 2>/dev/null; wait "$pcscd_pid" 2>/dev/null; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The PC/SC service with the virtual reader (a pcscd started before the vpcd driver was installed
#    has no virtual reader: restart it).
if [ "$(id -u)" = 0 ] && pgrep -x pcscd >/dev/null 2>&1 && ! ss -ltn 2>/dev/null | grep -q ':35963 '; then
  pkill -x pcscd || true
  for _ in $(seq 30); do pgrep -x pcscd >/dev/null 2>&1 || break; sleep 0.1; done
fi
if ! pgrep -x pcscd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    pcscd -f >"$DEMO_HOME/pcscd.log" 2>&1 &
    pcscd_pid=$!
  else
    echo "Le service PC/SC (pcscd) ne tourne pas : lancez « sudo pcscd » puis relancez." >&2
    exit 1
  fi
fi
for _ in $(seq 50); do ss -ltn 2>/dev/null | grep -q ':35963 ' && break; sleep 0.1; done

# 2. The sandbox DMP with its test PKI and the demo patients; the sandbox INSi on the next two ports
#    (mutual TLS INSI-MANU on PORT+1, CPS card assertions on PORT+2), with the same demo patients.
export PS_AGENT_PKI_DIR=$DEMO_HOME/pki
"$PY" -m sandbox serve --data "$DEMO_HOME/dmp" --pki "$PS_AGENT_PKI_DIR" --port "$PORT" --demo \
  >"$DEMO_HOME/sandbox.log" 2>&1 &
sandbox_pid=$!
INSI_PORT=$((PORT + 2))
for _ in $(seq 150); do
  ss -ltn 2>/dev/null | grep -q "127.0.0.1:$PORT " && ss -ltn 2>/dev/null | grep -q "127.0.0.1:$INSI_PORT " \
    && break
  kill -0 "$sandbox_pid" 2>/dev/null || { cat "$DEMO_HOME/sandbox.log" >&2; exit 1; }
  sleep 0.1
done

# 3. The emulated CPS card in the virtual reader.
"$PY" -m sandbox.card insert --profile "$PROFILE" --pki "$PS_AGENT_PKI_DIR"
card_inserted=1

# 4. The agent's settings for this session.
export PS_AGENT_ENV="https://127.0.0.1:$PORT/si-dmp-server/v2/services/"
export PS_AGENT_CA="$PS_AGENT_PKI_DIR/ca-bundle.pem"
export PS_AGENT_HOME="$DEMO_HOME/agent"
export PS_AGENT_INSI_URL="https://127.0.0.1:$INSI_PORT/lps"
export PS_AGENT_BILLING_ID=${PS_AGENT_BILLING_ID:-991130972}
export PATH="$ROOT/.venv/bin:$PATH"
INS=279037505612309 OID=1.2.250.1.213.1.4.10

cat <<MSG

ps-agent — démonstration sur le DMP local (bac à sable)
  DMP local        : $PS_AGENT_ENV   (journal : $DEMO_HOME/sandbox.log)
  INSi local       : $PS_AGENT_INSI_URL   (carte CPS ; n° de facturation $PS_AGENT_BILLING_ID)
  Carte émulée     : profil « $PROFILE » dans le lecteur virtuel — code porteur de test : 1234
  Traces de l'agent: $PS_AGENT_HOME
  Patiente de démo : CAMILLE MARIE DEMO-ADULTE, INS $INS (OID de test $OID)

Essayez :
  ps-agent card status
  ps-agent dmp status       --ins $INS --oid $OID
  ps-agent dmp search       --ins $INS --oid $OID --rubrique "Comptes rendus"
  ps-agent dmp vaccinations --ins $INS --oid $OID
  ps-agent audit verify
Identité du patient (carte Vitale → INSi → identité qualifiée → DMP) :
  python -m sandbox.card insert --profile vitale-adulte --reader 1    (carte Vitale dans le 2e lecteur)
  ps-agent patient vitale                         (lit la carte, interroge l'INSi : « Identité n° ID »)
  ps-agent patient valider ID --piece passeport   (pièce d'identité vérifiée : identité qualifiée)
  ps-agent dmp status --identite ID
  ps-agent patient rechercher --nom DEMO-ADULTE --prenom "CAMILLE MARIE" --sexe F --naissance 1979-03-21
Autres :
  python -m sandbox patient --data $DEMO_HOME/dmp --help      (agir comme la patiente)
  python -m sandbox.card insert --profile pharmacist --pki $PS_AGENT_PKI_DIR   (changer de carte)
MSG

case "$MODE" in
  --smoke)
    export PS_AGENT_TEST_PIN=1234
    ps-agent dmp status --ins "$INS" --oid "$OID"
    ps-agent dmp search --ins "$INS" --oid "$OID" --rubrique "Comptes rendus" >/dev/null
    # the patient identity journey: carte Vitale → INSi → validated identity → DMP status
    "$PY" -m sandbox.card insert --profile vitale-adulte --reader 1
    vitale_inserted=1
    ps-agent patient vitale | tee "$DEMO_HOME/vitale.txt"
    ident=$(sed -n 's/^Identité n° \([0-9]*\) .*/\1/p' "$DEMO_HOME/vitale.txt" | head -n 1)
    [ -n "$ident" ] || { echo "demo.sh: no identity from the Vitale card" >&2; exit 1; }
    ps-agent patient valider "$ident" --piece passeport
    ps-agent dmp status --identite "$ident"
    ps-agent audit verify
    echo "demo.sh: smoke check passed"
    ;;
  *)
    if [ "$MODE" != "--shell" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
      echo
      echo "La fenêtre de ps-agent s'ouvre ; la fermer (menu de la zone de notification « Quitter ») arrête"
      echo "le DMP local et retire la carte."
      "$PY" -m ui --env "$PS_AGENT_ENV" --ca "$PS_AGENT_CA" --home "$PS_AGENT_HOME" \
        --insi-url "$PS_AGENT_INSI_URL" || true
    elif [ -t 0 ]; then
      echo
      echo "Un shell de démonstration s'ouvre ; « exit » arrête le DMP local et retire la carte."
      PS1="[ps-agent démo] \w\$ " bash --norc -i || true
    else
      echo "Ctrl-C arrête le DMP local et retire la carte."
      while kill -0 "$sandbox_pid" 2>/dev/null; do sleep 1; done
    fi
    ;;
esac
