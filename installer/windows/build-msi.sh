#!/usr/bin/env bash
# Wraps a PyInstaller one-folder build of ps-agent (dist/ps-agent, made ON WINDOWS by
# `pyinstaller installer\windows\ps-agent.spec`) into an x64 MSI with wixl (msitools), on Linux.
#
#   bash installer/windows/build-msi.sh DIST_FOLDER OUT.msi [VERSION]
#
# On Windows, with the WiX v3 toolset, the same is done by the commands in docs/installation.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIST=$(cd "$1" && pwd)
OUT=$2
VERSION=${3:-$(python3 -c 'import tomllib; print(tomllib.load(open("'"$HERE"'/../../pyproject.toml","rb"))["project"]["version"])')}
for tool in wixl wixl-heat; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-msi.sh: $tool est introuvable (apt-get install wixl msitools)" >&2; exit 1; }
done
for exe in ps-agent.exe ps-agent-window.exe; do
  [ -f "$DIST/$exe" ] || { echo "build-msi.sh: $DIST/$exe manque (build PyInstaller incomplet)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every file of the folder becomes a component of CG.AppFiles under INSTALLDIR, except ps-agent.exe
# (declared in ps-agent.wxs with a fixed Id: the deployment custom action runs it).
# (Files at the top level get a Directory Name=".", which the MSI Directory table reads as INSTALLDIR itself.)
find "$DIST" -type f | sort \
  | wixl-heat --prefix "$DIST/" --exclude ps-agent.exe --directory-ref INSTALLDIR --component-group CG.AppFiles \
      --var var.SourceDir --win64 > "$work/files.wxs"
# wixl wants relative Source paths: it runs in the folder, with SourceDir=".".
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
(cd "$DIST" && wixl -a x64 -D SourceDir=. -D Version="$VERSION" -D Win64=yes \
  -o "$OUT" "$HERE/ps-agent.wxs" "$work/files.wxs")
echo "$OUT"
