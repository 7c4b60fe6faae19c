"""``check_output_dir``: a bad --out is one line before the first image (issue 13 item 9)."""

from __future__ import annotations

import os

import pytest

from cp3rt.errors import ConfigError, OutputError
from cp3rt.runtime.io.out_dir import check_output_dir


def test_folders_that_exist_or_can_be_created(tmp_path):
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # nothing is created


def test_a_file_is_refused_naming_the_flag(tmp_path):
    f = tmp_path / "masks.tif"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"--out .*masks\.tif is a file; give a folder"):
        check_output_dir(f)
    with pytest.raises(ConfigError, match=r"masks\.tif is a file"):
        check_output_dir(f / "sub")
    with pytest.raises(ConfigError, match="--save-dir"):
        check_output_dir(f, flag="--save-dir")


def test_read_only_folder(tmp_path, monkeypatch):
    # Simulated (tests may run as root, who writes everywhere): the parent is not writable.
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: os.fspath(p) != os.fspath(ro))
    with pytest.raises(OutputError, match=r"ro/new cannot be created: .*ro is not writable"):
        check_output_dir(ro / "new")
    with pytest.raises(OutputError, match=r"--out .*ro is not writable"):
        check_output_dir(ro)
