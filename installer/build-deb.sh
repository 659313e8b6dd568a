#!/usr/bin/env bash
# Builds the Debian/Ubuntu package of ps-agent: a Python virtual environment under /opt/ps-agent made with
# the distribution's python3 (so the package depends on it, not on a pyenv or a developer's venv), the
# project's wheel and the pinned requirements, plus /usr/bin/ps-agent, the desktop and autostart entries
# and the systemd units of the headless service (installer/deb/).
#
#   bash installer/build-deb.sh [--sans-ui] [--version X.Y.Z] [--out DIR]
#
#   --sans-ui     leave out PySide6 (the window): a headless package, much smaller (servers, CI)
#   --version     package version (default: the project's version in pyproject.toml)
#   --out         where the .deb goes (default: ./dist)
# Environment: DEB_GZIP_LEVEL (1-9, default 6; the tests use 1), PYTHON_DEB (default /usr/bin/python3).
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
UI=1 OUT=$ROOT/dist VERSION=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sans-ui) UI=0 ;;
    --version) VERSION=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "build-deb.sh: option inconnue : $1" >&2; exit 2 ;;
  esac
  shift
done
PYTHON_DEB=${PYTHON_DEB:-/usr/bin/python3}
for tool in dpkg-deb "$PYTHON_DEB"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-deb.sh: $tool est introuvable" >&2; exit 1; }
done
PYVER=$("$PYTHON_DEB" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
NEXT=$("$PYTHON_DEB" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')
[ -n "$VERSION" ] || VERSION=$("$PYTHON_DEB" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
# The pip that drives the build: the project's venv when there is one, else the distribution's.
BUILD_PY=${BUILD_PY:-$ROOT/.venv/bin/python}
[ -x "$BUILD_PY" ] || BUILD_PY=$PYTHON_DEB

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
STAGE=$work/stage
APP=/opt/ps-agent
VENV=$STAGE$APP/venv
mkdir -p "$OUT" "$STAGE/DEBIAN"

# 1. The project's wheel, built from a copy of the shipped packages (the sandbox DMP and the tests stay
# out of the package; nothing is written into the checkout).
mkdir -p "$work/src"
cp pyproject.toml README.md "$work/src/"
for pkg in cda ps_agent ui; do
  [ -d "$pkg" ] && cp -r "$pkg" "$work/src/$pkg"
done
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$BUILD_PY" -m pip wheel -q --no-deps -w "$work/wheels" "$work/src" 2>&1 | grep -v 'is ignored' >&2 || true
WHEEL=$(ls "$work"/wheels/ps_agent-*.whl)

# 2. The venv with the distribution's python, the pinned requirements and the wheel.
"$PYTHON_DEB" -m venv --without-pip "$VENV"
grep -v '^\s*#' requirements.txt | grep -v '^\s*$' > "$work/requirements.txt"
if [ "$UI" = 0 ]; then sed -i '/^PySide6/d' "$work/requirements.txt"; fi
"$BUILD_PY" -m pip --python "$VENV/bin/python" install -q --no-compile --disable-pip-version-check \
  -r "$work/requirements.txt" 2>&1 | grep -v 'is ignored' >&2 || true
"$BUILD_PY" -m pip --python "$VENV/bin/python" install -q --no-compile --no-deps --disable-pip-version-check \
  "$WHEEL" 2>&1 | grep -v 'is ignored' >&2 || true
"$VENV/bin/python" -c 'import ps_agent.cli, lxml, smartcard, PyKCS11, tomli_w' \
  || { echo "build-deb.sh: l'environnement Python de /opt/ps-agent est incomplet" >&2; exit 1; }
# The staging path must not leak into the installed files: activation scripts and console-script
# shebangs hold it (we use neither: /usr/bin/ps-agent runs python -m ps_agent).
find "$VENV/bin" -maxdepth 1 -type f ! -name 'python*' -delete
sed -i "s#$STAGE##g" "$VENV/pyvenv.cfg"
# Byte code compiled now, with the installed paths (users cannot write under /opt at run time).
# (PySide6 ships a few template files that are not valid Python: compileall reports them, harmless.)
"$VENV/bin/python" -m compileall -q -j 0 -s "$STAGE" -p / "$VENV/lib" >/dev/null || true
if grep -rIl --exclude='*.pyc' "$STAGE" "$STAGE$APP" >/dev/null 2>&1; then
  echo "build-deb.sh: le chemin de construction apparaît dans :" >&2
  grep -rIl --exclude='*.pyc' "$STAGE" "$STAGE$APP" | head >&2
  exit 1
fi

# 3. Commands, desktop entries, systemd units.
D=installer/deb
install -D -m 755 $D/ps-agent.launcher "$STAGE/usr/bin/ps-agent"
if [ "$UI" = 1 ]; then
  install -D -m 755 $D/ps-agent-window.launcher "$STAGE/usr/lib/ps-agent/ps-agent-window"
  install -D -m 644 $D/ps-agent.desktop "$STAGE/usr/share/applications/ps-agent.desktop"
  install -D -m 644 $D/ps-agent-autostart.desktop "$STAGE/etc/xdg/autostart/ps-agent.desktop"
fi
# The headless service: in the user's session (user unit), or for one account (ps-agent@ACCOUNT), and,
# when the project provides it (installer/ps-agent.service: dedicated `ps-agent` account, establishment
# certificates under /etc/ps-agent), the server unit, its paths adapted to this package's layout.
install -D -m 644 $D/ps-agent.user.service "$STAGE/usr/lib/systemd/user/ps-agent.service"
install -D -m 644 $D/ps-agent@.service "$STAGE/lib/systemd/system/ps-agent@.service"
if [ -f installer/ps-agent.service ]; then
  mkdir -p "$STAGE/lib/systemd/system"
  sed -e 's#/opt/ps-agent/\.venv/bin/ps-agent#/usr/bin/ps-agent#g' \
      -e 's#file:///opt/ps-agent/docs/#file:///usr/share/doc/ps-agent/#g' \
      installer/ps-agent.service > "$STAGE/lib/systemd/system/ps-agent.service"
  chmod 644 "$STAGE/lib/systemd/system/ps-agent.service"
fi
install -D -m 644 README.md "$STAGE/usr/share/doc/ps-agent/README.md"
for doc in docs/installation.md docs/integration.md; do
  [ -f "$doc" ] && install -D -m 644 "$doc" "$STAGE/usr/share/doc/ps-agent/$(basename "$doc")"
done
for s in postinst prerm postrm; do install -m 755 "$D/$s" "$STAGE/DEBIAN/$s"; done

# 4. Control file. python3 is pinned to the minor version the venv was made with (its site-packages and
# compiled extensions are for that version).
DEPENDS="python3 (>= $PYVER), python3 (<< $NEXT), pcscd, libpcsclite1, libccid"
if [ "$UI" = 1 ]; then
  DEPENDS="$DEPENDS, libegl1, libgl1, libfontconfig1, libdbus-1-3, libxkbcommon0, libxkbcommon-x11-0, \
libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-image0, libxcb-render-util0, libxcb-shape0, \
libxcb-randr0, libxcb-xkb1, fonts-dejavu-core"
fi
ARCH=$(dpkg --print-architecture)
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: ps-agent
Version: $VERSION
Architecture: $ARCH
Maintainer: ps-agent <ps-agent@localhost>
Installed-Size: $SIZE
Depends: $DEPENDS
Recommends: ca-certificates
Section: misc
Priority: optional
Homepage: https://localhost/ps-agent
Description: agent DMP pour les professionnels de santé
 Carte CPS (PC/SC), documents CDA, dépôt et consultation du DMP, journal d'audit.
 Le journal d'audit et la file d'envoi restent dans le dossier de l'utilisateur
 (~/.local/share/ps-agent) : ni la désinstallation ni la purge ne les suppriment.
CONTROL
if [ -f "$STAGE/etc/xdg/autostart/ps-agent.desktop" ]; then
  echo /etc/xdg/autostart/ps-agent.desktop > "$STAGE/DEBIAN/conffiles"
fi

DEB=$OUT/ps-agent_${VERSION}_${ARCH}.deb
[ "$UI" = 1 ] || DEB=$OUT/ps-agent-headless_${VERSION}_${ARCH}.deb
dpkg-deb --build --root-owner-group -Zgzip -z"${DEB_GZIP_LEVEL:-6}" "$STAGE" "$DEB" >/dev/null
echo "$DEB"
