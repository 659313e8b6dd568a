#!/usr/bin/env bash
# Idempotent set-up for a Debian/Ubuntu machine: system packages (apt) and the project's .venv.
# Safe to call repeatedly: it installs only what is missing (a stamp keyed on the requirement files).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."

APT_PKGS=(
  # XML-DSig reference implementation for the XAdES digest tests (xmlsec1) and libxml2 document C14N (xmllint)
  xmlsec1 libxml2-utils
  # PC/SC stack: pyscard builds from source against libpcsclite; pcscd + the vpcd virtual reader
  gcc swig libpcsclite-dev pcscd vsmartcard-vpcd pcsc-tools
  # PKCS#11: SoftHSM2 stands in for the ANS Cryptolib; opensc gives pkcs11-tool; stunnel+libp11 is the TLS fallback
  softhsm2 opensc stunnel4 libengine-pkcs11-openssl
  # Qt (offscreen and xcb under Xvfb) and fonts
  xvfb xauth fonts-dejavu-core libegl1 libgl1 libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0
  libxcb-randr0 libxcb-xkb1
  # misc
  ca-certificates procps iproute2
  # Windows MSI built from the WiX source and read back (tests/installer/test_msi.py)
  wixl msitools
)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi
  done
fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -q --no-install-recommends python3-venv python3-dev
fi
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp="$VENV/.installed-$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt 2> >(grep -v 'is ignored' >&2)
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . 2> >(grep -v 'is ignored' >&2)
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "setup: ok ($VENV)"
