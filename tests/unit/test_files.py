"""flatroute.files.write_atomic: whole files, readable by the processes they are for."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flatroute.files import PRIVATE, PUBLIC, write_atomic


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_published_files_are_world_readable_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        target = tmp_path / "sub" / "node.json"
        assert write_atomic(str(target), "{}\n")
    finally:
        os.umask(old)
    assert target.read_text() == "{}\n"
    assert mode(target) == PUBLIC
    assert [p.name for p in target.parent.iterdir()] == ["node.json"]  # no temporary left


def test_secret_files_stay_private_and_an_unchanged_file_gets_its_mode_fixed(
        tmp_path: Path) -> None:
    target = tmp_path / "exabgp.conf"
    assert write_atomic(str(target), "md5-password x;\n", PRIVATE)
    assert mode(target) == PRIVATE
    target.chmod(0o644)
    assert not write_atomic(str(target), "md5-password x;\n", PRIVATE)  # same text: no write
    assert mode(target) == PRIVATE


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "status.json"
    write_atomic(str(target), "old\n")

    def boom(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        write_atomic(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
