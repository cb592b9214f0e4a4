"""wgan.files: the shared sha256 and the atomic JSON write."""

import hashlib
import json

import pytest

from wgan.files import sha256_file, write_json


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    payload = bytes(range(256)) * 5000  # > 1 MiB: more than one read
    (tmp_path / "blob").write_bytes(payload)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(payload).hexdigest()
    assert sha256_file(str(tmp_path / "blob")) == hashlib.sha256(payload).hexdigest()


def test_write_json_creates_parents_indents_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "a" / "b" / "m.json"
    data = {"z": 1, "a": [1, 2], "nested": {"x": None}}
    write_json(path, data)
    assert path.read_text() == json.dumps(data, indent=2) + "\n"  # key order kept
    write_json(path, [3], trailing_newline=False)
    assert path.read_text() == json.dumps([3], indent=2)
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_write_json_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"old": True})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
