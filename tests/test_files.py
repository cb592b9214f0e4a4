"""wgan.files: the shared sha256, the atomic JSON write and the bounded JSON read."""

import hashlib
import json

import pytest

from wgan.files import read_json, sha256_file, write_json


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


def test_read_json_names_the_file_when_too_large_or_not_json(tmp_path):
    path = tmp_path / "info.json"
    path.write_text(json.dumps({"a": [1, 2]}))
    assert read_json(path, 100, "re-run it") == {"a": [1, 2]}
    path.write_text(" " * 101 + "{}")
    with pytest.raises(ValueError, match=r"info.json: larger than 100 bytes, so not read; re-run"):
        read_json(path, 100, "re-run it")
    for text in ('{"a": ', "\xff", "[" * 100_000 + "]" * 100_000):
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(ValueError, match=r"info.json: not valid JSON \(.*\); re-run it"):
            read_json(path, 1 << 20, "re-run it")
