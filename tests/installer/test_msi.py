"""The Windows MSI definition (installer/windows/ps-agent.wxs) built with wixl from a stand-in of the
PyInstaller folder (a Windows .exe cannot be built here), read back with msiinfo: per-machine, the Run
key that starts the window at login, the shortcuts, the major upgrade, the deployment custom action, and
nothing that would remove the users' data (%LOCALAPPDATA%\\ps-agent) at uninstall."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "installer/windows/build-msi.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("wixl") is None or shutil.which("msiinfo") is None,
    reason="wixl/msitools not installed (installer/setup.sh installs them)",
)


def _table(msi: Path, name: str) -> list[list[str]]:
    out = subprocess.run(
        ["msiinfo", "export", str(msi), name], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("\t") for line in out.splitlines()[3:] if line]


@pytest.fixture(scope="module")
def msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    (dist / "_internal" / "PySide6").mkdir(parents=True)
    (dist / "ps-agent.exe").write_bytes(b"MZ stand-in for the console program")
    (dist / "ps-agent-window.exe").write_bytes(b"MZ stand-in for the window program")
    (dist / "_internal" / "python311.dll").write_bytes(b"stand-in")
    (dist / "_internal" / "PySide6" / "Qt6Core.dll").write_bytes(b"stand-in")
    out = tmp_path_factory.mktemp("msi") / "ps-agent.msi"
    done = subprocess.run(
        ["bash", str(BUILD), str(dist), str(out), "1.2.3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and out.is_file(), done.stderr
    return out


def test_it_is_an_x64_per_machine_package(msi: Path) -> None:
    info = subprocess.run(["msiinfo", "suminfo", str(msi)], capture_output=True, text=True, check=True).stdout
    assert "Template: x64;" in info
    props = dict(row[:2] for row in _table(msi, "Property"))
    assert (
        props["ALLUSERS"] == "1" and props["ProductVersion"] == "1.2.3" and props["ProductName"] == "ps-agent"
    )


def test_the_window_starts_at_login_for_every_user(msi: Path) -> None:
    run = [r for r in _table(msi, "Registry") if r[2] == r"Software\Microsoft\Windows\CurrentVersion\Run"]
    assert len(run) == 1
    _id, root, _key, name, value, component = run[0]
    assert root == "2" and name == "ps-agent"  # 2 = HKEY_LOCAL_MACHINE
    assert value == '"[INSTALLDIR]ps-agent-window.exe" --hidden'
    components = {r[0]: r for r in _table(msi, "Component")}
    assert component in components
    assert components[component][5] == run[0][0]  # the Run value is the component's key path
    assert int(components[component][3]) & 256  # 64-bit component (the 64-bit registry view)
    features = {(r[0], r[1]) for r in _table(msi, "FeatureComponents")}
    assert ("F.Main", component) in features


def test_start_menu_shortcuts(msi: Path) -> None:
    shortcuts = {r[0]: r for r in _table(msi, "Shortcut")}
    assert shortcuts["S.Window"][4] == "[INSTALLDIR]ps-agent-window.exe"
    assert "ps-agent.exe" in shortcuts["S.Doctor"][5] and "doctor" in shortcuts["S.Doctor"][5]


def test_every_file_of_the_folder_is_installed(msi: Path) -> None:
    names = {r[2] for r in _table(msi, "File")}
    assert {"ps-agent.exe", "ps-agent-window.exe", "python311.dll", "Qt6Core.dll"} <= names
    directories = {r[0]: r for r in _table(msi, "Directory")}
    assert directories["INSTALLDIR"][1] == "ProgramFiles64Folder"


def test_upgrades_replace_the_older_version(msi: Path) -> None:
    upgrades = _table(msi, "Upgrade")
    assert any(r[6] == "WIX_UPGRADE_DETECTED" and r[2] == "1.2.3" for r in upgrades)
    assert "RemoveExistingProducts" in {r[0] for r in _table(msi, "InstallExecuteSequence")}


def test_deployment_settings_custom_action(msi: Path) -> None:
    actions = {r[0]: r for r in _table(msi, "CustomAction")}
    action = actions["CA.MachineSettings"]
    assert int(action[1]) & 0x3F == 18 and action[2] == "F.Cli"  # runs the installed ps-agent.exe
    assert int(action[1]) & 1024 and int(action[1]) & 2048  # deferred, not impersonated (admin rights)
    assert "--silencieux --machine" in action[3] and "[PSAGENT_CONFIG]" in action[3]
    sequence = {r[0]: r for r in _table(msi, "InstallExecuteSequence")}
    assert "PSAGENT_CONFIG" in sequence["CA.MachineSettings"][1]


def test_uninstall_leaves_the_users_data(msi: Path) -> None:
    directories = {r[0] for r in _table(msi, "Directory")}
    assert not {"LocalAppDataFolder", "AppDataFolder", "CommonAppDataFolder"} & directories
    assert all(r[3] == "MenuDir" for r in _table(msi, "RemoveFile"))  # only the Start-menu folder
    wxs = (ROOT / "installer/windows/ps-agent.wxs").read_text(encoding="utf-8")
    assert "LocalAppData" not in wxs.split("-->", 1)[1]  # only named in the explanatory comment


def test_heat_transform_drops_only_the_cli_for_wix_on_windows() -> None:
    from lxml import etree

    wix = "http://schemas.microsoft.com/wix/2006/wi"
    harvested = etree.fromstring(
        f'<Wix xmlns="{wix}"><Fragment><DirectoryRef Id="INSTALLDIR">'
        '<Component Id="cmpA"><File Id="a" Source="$(var.SourceDir)\\ps-agent.exe"/></Component>'
        '<Component Id="cmpB"><File Id="b" Source="$(var.SourceDir)\\ps-agent-window.exe"/></Component>'
        '<Component Id="cmpC"><File Id="c" Source="$(var.SourceDir)\\_internal\\x-ps-agent.exe"/></Component>'
        '</DirectoryRef></Fragment><Fragment><ComponentGroup Id="CG.AppFiles">'
        '<ComponentRef Id="cmpA"/><ComponentRef Id="cmpB"/><ComponentRef Id="cmpC"/>'
        "</ComponentGroup></Fragment></Wix>"
    )
    transform = etree.XSLT(etree.parse(str(ROOT / "installer/windows/exclude-cli.xslt")))
    out = transform(harvested).getroot()
    ns = {"w": wix}
    assert [c.get("Id") for c in out.iterfind(".//w:Component", ns)] == ["cmpB", "cmpC"]
    assert [c.get("Id") for c in out.iterfind(".//w:ComponentRef", ns)] == ["cmpB", "cmpC"]
