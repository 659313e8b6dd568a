# Sourced by installer/test.sh: what to do with a pcscd that runs without the vpcd virtual reader.
#
# A pcscd started before Debian's vsmartcard-vpcd driver was installed (e.g. by the package's own
# start-up) has no vpcd reader (its port 35963 is not listening). In CI (CI=true: a fresh machine of
# our own) it is restarted. On a workstation it belongs to someone else (a real reader may be in use):
# it is never stopped; the run stops with a hint (French, then English), because the card tests would
# fail anyway (PS_AGENT_REQUIRE_PCSC=1) and a green run without them would prove less than it says.

pcscd_without_vpcd() {
  # grep reads all of ss's output (grep -q could stop early: SIGPIPE under pipefail)
  pgrep -x pcscd >/dev/null 2>&1 && ! ss -ltn 2>/dev/null | grep ':35963 ' >/dev/null
}

# Returns 0 when no foreign pcscd is in the way (none, one with vpcd, or one restarted in CI), 1 otherwise.
settle_foreign_pcscd() {
  if ! pcscd_without_vpcd; then
    return 0
  fi
  if [ "${CI:-}" = "true" ]; then
    pkill -x pcscd || true
    for _ in $(seq 30); do pgrep -x pcscd >/dev/null 2>&1 || break; sleep 0.1; done
    return 0
  fi
  cat >&2 <<'HINT'
test.sh : un pcscd tourne sans le lecteur virtuel vpcd ; il n'est pas arrêté (il n'a pas été lancé par ce script).
  Redémarrez-le vous-même après l'installation de vsmartcard-vpcd (« sudo systemctl restart pcscd »), puis relancez.
test.sh: a pcscd without the vpcd virtual reader is running; it is not stopped (this script did not start it).
  Restart it yourself once vsmartcard-vpcd is installed ("sudo systemctl restart pcscd"), then run again.
HINT
  return 1
}
