"""Tests for viddiff_mini.utils (atomic result files)."""

import os

import pytest
import torch

from viddiff_mini.utils import atomic_torch_save, atomic_write_bytes, safe_torch_load


def test_atomic_files_are_complete_readable_and_leave_no_temp(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a" / "report.json", b"{}")
        atomic_torch_save({"w": torch.ones(2)}, tmp_path / "ckpt.pt")
    finally:
        os.umask(mask)
    assert (tmp_path / "a" / "report.json").read_bytes() == b"{}"
    assert torch.equal(safe_torch_load(tmp_path / "ckpt.pt")["w"], torch.ones(2))
    for f in (tmp_path / "a" / "report.json", tmp_path / "ckpt.pt"):
        assert f.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "ckpt.pt", "report.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # the write fails half-way
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
