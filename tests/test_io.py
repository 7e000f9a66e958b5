"""Atomic writes of results: content, permissions, and no partial files on failure."""

import json
import os
import stat

import numpy as np
import pytest

from nwcorrupt import _io


def test_atomic_write_has_plain_file_permissions(tmp_path):
    # regression: files came out 0o600 (the temporary file's mode), unreadable by the group
    old = os.umask(0o022)
    try:
        path = _io.atomic_write_text(tmp_path / "a" / "b.txt", "hello")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = _io.atomic_write_text(tmp_path / "r.json", "old")
    with pytest.raises(TypeError):
        _io.atomic_write_bytes(path, "not bytes")  # fails inside the write
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_json_and_csv_round_trip(tmp_path):
    obj = {"a": np.float64(0.5), "b": np.arange(3), "c": [np.int32(2)]}
    path = _io.atomic_write_json(tmp_path / "x.json", obj)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": [2]}
    with pytest.raises(TypeError, match="cannot store"):
        _io.atomic_write_json(tmp_path / "y.json", {"s": {1, 2}})
    assert not (tmp_path / "y.json").exists()
    csv_path = _io.atomic_write_csv(tmp_path / "t.csv", ["p", "acc"], [[0.5, 0.9], [1.0, 0.1]])
    assert csv_path.read_text() == "p,acc\n0.5,0.9\n1.0,0.1\n"
