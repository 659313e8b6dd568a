#!/usr/bin/env bash
# Runs the whole test suite on the real parts: pcscd with the vpcd virtual reader, SoftHSM2,
# the sandbox DMP over TLS (started by the tests' fixtures), Qt offscreen, then real-window tests under Xvfb.
# Extra arguments go to pytest (e.g. `bash installer/test.sh -k cda`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash installer/setup.sh
PY=.venv/bin/python
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export QTWEBENGINE_DISABLE_SANDBOX=1
# Tests that need pcscd fail loudly (not skip) when this is set.
export PS_AGENT_REQUIRE_PCSC=1
export PS_AGENT_SHARED=${PS_AGENT_SHARED:-$(cd .. && pwd)/shared}

tmp=$(mktemp -d)
pcscd_pid=""
xpid=""
cleanup() {
  if [ -n "$xpid" ]; then kill "$xpid" 2>/dev/null || true; wait "$xpid" 2>/dev/null || true; fi
  if [ -n "$pcscd_pid" ]; then kill "$pcscd_pid" 2>/dev/null || true; wait "$pcscd_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# pcscd with the vpcd driver (Debian's vsmartcard-vpcd registers it in /etc/reader.conf.d). A pcscd
# without the vpcd reader is restarted only in CI; elsewhere the run stops with a hint (pcscd-vpcd.sh).
# shellcheck source=installer/pcscd-vpcd.sh
source installer/pcscd-vpcd.sh
settle_foreign_pcscd || exit 1
if ! pgrep -x pcscd >/dev/null 2>&1; then
  pcscd -f > "$tmp/pcscd.log" 2>&1 &
  pcscd_pid=$!
  for _ in $(seq 50); do
    if ss -ltn 2>/dev/null | grep ':35963 ' >/dev/null; then break; fi
    sleep 0.1
  done
fi

# Types first (configuration in pyproject.toml): a type error fails the run.
"$PY" -m mypy

set +e
"$PY" -m pytest -q -m "not x11" "$@"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  [ -n "$pcscd_pid" ] && { echo "--- pcscd log (tail)"; tail -20 "$tmp/pcscd.log"; }
  exit $rc
fi

# Real-window tests under Xvfb (-displayfd picks a free display).
if command -v Xvfb >/dev/null 2>&1; then
  Xvfb -displayfd 9 -screen 0 1280x800x24 -nolisten tcp 9>"$tmp/display" 2>"$tmp/xvfb.log" &
  xpid=$!
  for _ in $(seq 50); do [ -s "$tmp/display" ] && break; sleep 0.1; done
  export DISPLAY=":$(cat "$tmp/display")"
  set +e
  QT_QPA_PLATFORM=xcb "$PY" -m pytest -q -m x11 "$@"
  rc=$?
  set -e
  # 5 = no x11 test collected: a failure on a full run (tests/ui/test_x11_window.py must run), tolerated
  # only when extra pytest arguments (a -k filter…) may exclude them all.
  if [ $rc -ne 0 ] && { [ $rc -ne 5 ] || [ $# -eq 0 ]; }; then exit $rc; fi
elif [ "${CI:-}" = "true" ]; then
  echo "test.sh: Xvfb missing under CI: the real-window tests (-m x11) cannot run" >&2
  exit 1
fi
echo "test.sh: all stages passed"
