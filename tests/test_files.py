"""wgan.files: the shared sha256, atomic writes and bounded JSON reads; atomic model saves."""

import hashlib
import json
import os

import keras
import numpy as np
import pytest

from wgan.files import atomic_path, read_json, sha256_file, write_json
from wgan.model_files import save_model


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


def test_atomic_path_writes_a_hidden_sibling_with_the_suffix_then_renames(tmp_path):
    path = tmp_path / "out" / "samples.npz"
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".") and tmp.suffix == ".npz"
        np.savez_compressed(tmp, x=np.arange(3))  # numpy would append .npz to another name
        assert not path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["samples.npz"]
    with np.load(path) as npz:
        assert npz["x"].tolist() == [0, 1, 2]


def test_atomic_path_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "grid.png"
    path.write_bytes(b"old")
    for error in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(error)), atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise error
        assert path.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_atomic_path_removes_what_killed_writers_left_but_not_a_live_writers_file(tmp_path):
    path = tmp_path / "samples.npz"
    dead = tmp_path / ".samples.tmp-999999999.npz"  # over any pid_max: no such process
    live = tmp_path / f".samples.tmp-{os.getppid()}.npz"
    other = tmp_path / ".masks.tmp-999999999.pkl"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, other.name, "samples.npz"])


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


class _Unsaveable(keras.layers.Layer):
    def call(self, x):
        return x

    def get_config(self):
        raise RuntimeError("cannot describe this layer")


def test_save_model_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "generator.keras"
    z = keras.Input((4,))
    save_model(keras.Model(z, keras.layers.Dense(2)(z)), path)
    before = path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["generator.keras"]
    with pytest.raises(RuntimeError, match="cannot describe"):  # a failure inside model.save
        save_model(keras.Model(z, _Unsaveable()(z)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["generator.keras"]
