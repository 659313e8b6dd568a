"""The ``hotfolder.done`` setting: handled items go to that folder (absolute, created 0700), on the same
volume (a rename) or on another one (copy, fsync, then removal: ``layout.move_file``); a folder that
cannot be used is refused naming the key. Real folders, the real sandbox in AIR mode."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ps_agent.hotfolder.layout import layout_for, layout_from_settings, move_file
from ps_agent.hotfolder.ledger import DONE, REJECTED
from ps_agent.settings import SettingsError, validate
from tests.hotfolder.conftest import Rig, sidecar_for

SHM = Path("/dev/shm")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def other_volume(tmp_path: Path) -> Iterator[Path]:
    """A folder on another volume than ``tmp_path`` (tmpfs ``/dev/shm``), removed afterwards."""
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second volume (/dev/shm) on this machine")
    with tempfile.TemporaryDirectory(dir=SHM, prefix="ps-agent-hf-") as d:
        yield Path(d)


def test_items_go_to_the_configured_done_folder(dmp: Any, test_pki: Any, tmp_path: Path) -> None:
    done = tmp_path / "traites" / "dmp"  # absolute, parents missing
    rig = Rig(dmp, test_pki, tmp_path, done=done)
    try:
        assert rig.folder.done == done and _mode(done) == 0o700
        assert not rig.folder.done_on_other_volume
        rig.folder.start()
        rig.drop("cr-a", title="CR dossier traités")
        rig.drop("mauvais", sidecar=sidecar_for("x", type_code=""))
        rig.wait_for(lambda: rig.folder.ledger.count(DONE) == 1 and "mauvais" in rig.errors())
        assert rig.receipts()["cr-a"]["ACK_RECEPTION_DMP"] == "Y"
        assert sorted(p.name for p in done.iterdir()) == ["cr-a.json", "cr-a.pdf", "cr-a.receipt.json"]
        assert not (rig.root / "done").exists()  # the default folder is not even created
        assert (rig.root / "rejected" / "mauvais.error.json").exists()  # rejections stay in ROOT/rejected
        rig.drop("cr-a-bis", (done / "cr-a.pdf").read_bytes(), title="CR dossier traités")  # dropped again
        rig.wait_for(lambda: (done / "cr-a-bis.receipt.json").exists())
        assert rig.receipts()["cr-a-bis"]["doublon"] is True  # the duplicate's note goes there too
        assert rig.folder.ledger.count(DONE) == 1 and rig.folder.ledger.count(REJECTED) == 0
    finally:
        rig.close()


def test_done_on_another_volume_is_copied_then_removed(
    dmp: Any, test_pki: Any, tmp_path: Path, other_volume: Path
) -> None:
    done = other_volume / "traites"
    rig = Rig(dmp, test_pki, tmp_path, done=done)
    try:
        assert rig.folder.done_on_other_volume and _mode(done) == 0o700
        rig.folder.start()
        content = rig.drop("cr-v", title="CR autre volume")
        rig.wait_for(lambda: "cr-v" in rig.receipts())
        assert (done / "cr-v.pdf").read_bytes() == content
        assert sorted(p.name for p in done.iterdir()) == ["cr-v.json", "cr-v.pdf", "cr-v.receipt.json"]
        assert _mode(done / "cr-v.pdf") == 0o600  # the copy is private whatever the source's mode
        assert list((rig.root / "work").iterdir()) == []  # removed from work/ once copied
    finally:
        rig.close()


def test_move_file_across_volumes_keeps_the_source_until_the_copy_is_complete(
    tmp_path: Path, other_volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "a.pdf"
    src.write_bytes(b"%PDF-1.4 contenu")
    assert move_file(src, other_volume / "a.pdf") is True
    assert not src.exists() and (other_volume / "a.pdf").read_bytes() == b"%PDF-1.4 contenu"
    # the copy fails half way (disk full on the other volume): the source stays, no partial file is left
    src.write_bytes(b"%PDF-1.4 second")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        move_file(src, other_volume / "b.pdf")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert src.read_bytes() == b"%PDF-1.4 second"
    assert sorted(p.name for p in other_volume.iterdir()) == ["a.pdf"]


def test_move_file_on_one_volume_renames(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.pdf", tmp_path / "b" / "a.pdf"
    dst.parent.mkdir()
    src.write_bytes(b"x")
    ino = src.stat().st_ino
    assert move_file(src, dst) is False and dst.stat().st_ino == ino
    with pytest.raises(FileNotFoundError):
        move_file(src, dst)


def test_unusable_done_folders_are_refused_naming_the_key(tmp_path: Path) -> None:
    root = tmp_path / "depot"
    for bad in (root / "inbox", root / "work", root / "rejected", root, root / "inbox" / "traites"):
        with pytest.raises(SettingsError, match=r"« hotfolder\.done »") as info:
            layout_for(root, bad)
        assert info.value.key == "hotfolder.done"
    with pytest.raises(SettingsError, match="chemin absolu") as info:
        validate({"hotfolder": {"inbox": str(root), "done": "traites"}}, check_files=False)
    assert info.value.key == "hotfolder.done"
    assert layout_for(root, None).done == root / "done"
    assert layout_for(root, root / "done").done_elsewhere is False
    assert layout_for(root, tmp_path / "traites").done_elsewhere is True


def test_layout_from_settings(tmp_path: Path) -> None:
    s = validate({"hotfolder": {"inbox": str(tmp_path / "d" / "inbox"), "done": str(tmp_path / "t")}},
                 check_files=False)  # fmt: skip
    layout = layout_from_settings(s)
    assert layout is not None and (layout.root, layout.done) == (tmp_path / "d", tmp_path / "t")
    other = layout_from_settings(s, tmp_path / "autre")  # the command line's folder: its own done/
    assert other is not None and other.done == tmp_path / "autre" / "done"
    off = validate({"hotfolder": {"inbox": str(tmp_path / "d"), "enabled": False}}, check_files=False)
    assert layout_from_settings(off) is None
