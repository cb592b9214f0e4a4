"""Faults at the stage boundaries: bad model and sample files, killed writes, one-line errors.

A model file that is missing, truncated, not a zip or crafted names itself and the stage
that writes it; a ``samples.npz`` is never left half-written by a killed ``sample``, and a
truncated one is named; and each stage script, run as a real process on such input, ends
with one ``error:`` line and no traceback.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import ROOT, TINY_MODEL, TINY_TRAIN, write_digit_dataset, write_params

from wgan.classifier import load_feature_extractor, train_classifier
from wgan.config import ClassifierConfig
from wgan.evaluate import load_samples
from wgan.files import sha256_file
from wgan.model_files import load_model, save_model
from wgan.prepared.format import read_meta
from wgan.sample import load_generator

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
Z = 8


def _generator(path: Path) -> Path:
    """A tiny untrained image generator: noise [None, 8] -> uint8-able [28, 28, 1]."""
    keras.utils.set_random_seed(0)
    z = keras.Input((Z,))
    save_model(keras.Model(z, keras.layers.Reshape((28, 28, 1))(
        keras.layers.Dense(784, "tanh")(z))), path)
    return path


def _with_config(path: Path, edit) -> Path:
    """``path`` rewritten with ``edit`` applied to its config.json, as an attacker would."""
    with zipfile.ZipFile(path) as src:
        entries = {info.filename: src.read(info) for info in src.infolist()}
    config = json.loads(entries["config.json"])
    edit(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as out:
        for name, data in entries.items():
            out.writestr(name, data)
    return path


def _dense_config(config: dict) -> dict:
    return next(la for la in config["config"]["layers"] if la["class_name"] == "Dense")["config"]


def _overwrite(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return path


BAD_MODELS = {
    "truncated": (_truncate, r"is not a .keras file \(not a zip archive: truncated or "
                             r"overwritten\?\)"),
    "not a zip": (lambda p: _overwrite(p, b'{"class_name": "Functional"}'),
                  r"is not a .keras file \(.*\)"),
    "crafted config": (lambda p: _with_config(p, lambda c: _dense_config(c).update(units="abc")),
                       r"cannot be loaded as a Keras model \(TypeError: .*\)"),
    "code in a lambda": (lambda p: _lambda_model(p),
                         r"cannot be loaded as a Keras model \(ValueError: .*Python lambda. "
                         r"This carries a potential risk of arbitrary code execution.*\)"),
}


def _lambda_model(path: Path) -> Path:
    """A model file that carries Python bytecode, which only safe_mode=False would run."""
    z = keras.Input((Z,))
    save_model(keras.Model(z, keras.layers.Lambda(lambda x: x * 2)(z)), path)
    return path


@pytest.mark.parametrize("case", BAD_MODELS)
def test_a_bad_model_file_names_itself_and_the_stage_that_writes_it(tmp_path, case):
    damage, reason = BAD_MODELS[case]
    path = damage(_generator(tmp_path / "generator.keras"))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} {reason}; "
                                         r"re-run `dvc repro train`$"):
        load_generator(path)
    with pytest.raises(FileNotFoundError, match=r"nothing.keras not found; run `dvc repro x`"):
        load_model(tmp_path / "nothing.keras", "x")


def test_a_generator_of_the_wrong_input_is_named(tmp_path):
    x = keras.Input((4, 4))
    save_model(keras.Model(x, keras.layers.Dense(2)(x)), tmp_path / "generator.keras")
    with pytest.raises(ValueError, match=r"generator.keras takes inputs of shape "
                                         r"\[\(None, 4, 4\)\], not a batch of noise vectors"):
        load_generator(tmp_path / "generator.keras")


def _label_case(case: str) -> keras.Model:
    z = keras.Input((4,))
    if case == "one input with an embedding":  # claims classes it cannot be given
        return keras.Model(z, keras.layers.Embedding(10, 2, name="label_embedding")(z))
    other = keras.Input((), dtype="float32" if case == "float label" else "int32")
    if case == "no embedding":
        second = keras.layers.Reshape((1,))(other)
    else:  # "float label"
        second = keras.layers.Embedding(10, 1, name="label_embedding")(other)
    return keras.Model([z, other], keras.layers.Concatenate()([z, second]))


@pytest.mark.parametrize("case, shapes", [
    ("no embedding", r"\[\(None, 4\), \(None,\)\]"),
    ("float label", r"\[\(None, 4\), \(None,\)\]"),
    ("one input with an embedding", r"\[\(None, 4\)\]")])
def test_a_generator_whose_inputs_do_not_match_its_label_embedding_is_named(tmp_path, case,
                                                                            shapes):
    # [z, int label] is a conditional generator's input only with the class embedding that
    # says how many classes it draws, and only then.
    save_model(_label_case(case), tmp_path / "generator.keras")
    with pytest.raises(ValueError, match=rf"generator.keras takes inputs of shape {shapes}, "
                                         r"not a batch of noise vectors"):
        load_generator(tmp_path / "generator.keras")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("classifier")
    prepared = write_digit_dataset(root / "mnist")
    train_classifier(prepared, root / "classifier", ClassifierConfig(epochs=1, batch=32), 0)
    return root / "classifier"


def test_a_crafted_classifier_with_a_matching_sha256_is_named(classifier, tmp_path):
    """info.json guards against accidents; a consistent pair of crafted files must still
    fail as one error naming the model file."""
    copy = tmp_path / "classifier"
    copy.mkdir()
    (copy / "classifier.keras").write_bytes((classifier / "classifier.keras").read_bytes())
    path = _with_config(copy / "classifier.keras",
                        lambda c: _dense_config(c).update(units="abc"))
    info = json.loads((classifier / "info.json").read_text())
    (copy / "info.json").write_text(json.dumps({**info, "sha256": sha256_file(path)}))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} cannot be loaded as a Keras "
                                         r"model \(TypeError: .*\); re-run `dvc repro "
                                         r"classifier`$"):
        load_feature_extractor(copy)


@pytest.mark.parametrize("text, message", [
    ("", r"info.json: not valid JSON"),
    ('{"trained": true}', r"info.json: 'num_classes' must be of type int"),
    ('{"trained": "yes"}', r"info.json: no 'trained': true/false"),
])
def test_a_bad_info_json_is_named(classifier, tmp_path, text, message):
    copy = tmp_path / "classifier"
    copy.mkdir()
    (copy / "classifier.keras").write_bytes((classifier / "classifier.keras").read_bytes())
    (copy / "info.json").write_text(text)
    with pytest.raises(ValueError, match=rf"{message}.*; re-run `dvc repro classifier`$"):
        load_feature_extractor(copy)


def _samples(directory: Path, x: np.ndarray) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / "samples.npz", x=x)
    return directory


def test_load_samples_reads_only_the_first_n(tmp_path, digits):
    meta = read_meta(digits)
    x = np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    got = load_samples(_samples(tmp_path / "s", x), 20, meta)
    assert got.flags.writeable and np.array_equal(got, x[:20])
    assert np.array_equal(load_samples(tmp_path / "s", 1000, meta), x)


def _crafted_header(path: Path) -> None:
    """A samples.npz whose header claims 10**12 samples: read in full, that is 784 TB."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28, 1)}
    with zipfile.ZipFile(path / "samples.npz", "w") as archive, archive.open("x.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(784 * 3))


@pytest.mark.parametrize("damage, reason", [
    (lambda d: _truncate(d / "samples.npz"),
     r"is not a complete samples file \(BadZipFile: File is not a zip file\)"),
    (lambda d: _overwrite(d / "samples.npz", b"x = 1"),
     r"is not a complete samples file \(BadZipFile: .*\)"),
    (lambda d: _samples(d, np.zeros((5, 28, 28, 1), np.float32)),
     r"holds float32 samples \[5, 28, 28, 1\], but the prepared mnist data is uint8 "
     r"\[N, 28, 28, 1\] with N > 0"),
    (lambda d: _samples(d, np.zeros((0, 28, 28, 1), np.uint8)),
     r"holds uint8 samples \[0, 28, 28, 1\], .* with N > 0"),
    (_crafted_header, r"ends inside sample 3"),
])
def test_a_bad_samples_file_is_named(tmp_path, digits, damage, reason):
    samples = _samples(tmp_path / "samples", np.zeros((5, 28, 28, 1), np.uint8))
    damage(samples)
    with pytest.raises(ValueError, match=rf"samples.npz {reason}; re-run `dvc repro sample`$"):
        load_samples(samples, 100, read_meta(digits))


def _stage(workdir: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=workdir,
                          env=ENV, capture_output=True, text=True, timeout=300)


def _one_line(done: subprocess.CompletedProcess) -> str:
    """The error line of a failed stage, which must be its whole report: no traceback."""
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), done.stderr[-3000:]
    return line


def _workdir(tmp_path: Path, **params) -> Path:
    write_digit_dataset(tmp_path / "data/prepared/mnist")
    write_params(tmp_path, **params)
    return tmp_path


@pytest.mark.parametrize("case", ["truncated", "crafted config"])
def test_sample_stage_reports_a_bad_generator_in_one_line(tmp_path, case):
    work = _workdir(tmp_path, sample={"n": 10, "batch": 10, "grid": 2})
    generator = BAD_MODELS[case][0](_generator(work / "generator.keras"))
    line = _one_line(_stage(work, "sample.py", str(generator), str(generator),
                            "data/prepared/mnist", "samples", "reports/sample"))
    assert line.startswith(f"error: {generator} ") and line.endswith("re-run `dvc repro train`")
    assert not (work / "samples").exists()


def test_classifier_stage_names_a_corrupt_shard_in_one_line(tmp_path):
    work = _workdir(tmp_path, classifier={"epochs": 1, "batch": 16, "lr": 0.003})
    shard = work / "data/prepared/mnist/train-00001-of-00002.tfrecord.gz"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    line = _one_line(_stage(work, "classifier.py", "data/prepared/mnist", "models/classifier",
                            "metrics/classifier.json"))
    assert re.fullmatch(rf"error: data/prepared/mnist/{shard.name} is corrupt \(.+\); "
                        r"re-run `dvc repro prepare`", line), line
    assert not (work / "models/classifier/classifier.keras").exists()


def test_train_stage_refuses_a_meta_json_whose_shape_the_shards_contradict(tmp_path):
    """The issue's case: shape [784] on MNIST shards trained a mask MLP on raw pixels."""
    work = _workdir(tmp_path, train=TINY_TRAIN, model=TINY_MODEL)
    meta_json = work / "data/prepared/mnist/meta.json"
    meta_json.write_text(json.dumps({**json.loads(meta_json.read_text()), "shape": [784]}))
    done = _stage(work, "train.py", "data/prepared/mnist", "models/classifier",
                  "data/reference/mnist", "models", "models/checkpoints", "metrics/train.json",
                  "metrics/train_curves.tsv", "logs/train", "reports/train",
                  "metrics/eval_curves.tsv", "dvclive/train")
    line = _one_line(done)
    assert re.fullmatch(r"error: data/prepared/mnist/train-00000-of-00002.tfrecord.gz: its first "
                        r"sample holds values up to 255, but meta.json's shape \[784\] is a "
                        r"mask's, whose values are 0 and 1; re-run `dvc repro prepare`", line), line
    assert not (work / "models/generator.keras").exists()


def _kill_once_writing(proc: subprocess.Popen, work: Path) -> None:
    """SIGKILL ``sample`` once it has begun writing into samples/, checking (with SIGSTOP
    first) that it is still on samples.npz: the grid, written next, is not there yet."""
    deadline = time.monotonic() + 240
    while not (work / "samples").is_dir() or not any((work / "samples").iterdir()):
        assert proc.poll() is None, f"sample ended before writing: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "sample never started writing"
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)
    try:
        assert not (work / "reports/sample/grid.png").exists(), "the kill came too late"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def test_a_killed_sample_leaves_no_samples_file_and_evaluate_says_so_in_one_line(tmp_path):
    # 30,000 samples of 784 noisy bytes take a second or two to compress: a wide window.
    work = _workdir(tmp_path, sample={"n": 30_000, "batch": 10_000, "grid": 2},
                    evaluate={"n": 40, "kid_subsets": 2, "kid_subset_size": 10, "pr_k": 3,
                              "swd_patches": 2})
    generator = _generator(work / "generator.keras")
    proc = subprocess.Popen([sys.executable, str(ROOT / "stages/sample.py"), str(generator),
                             str(generator), "data/prepared/mnist", "samples", "reports/sample"],
                            cwd=work,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _kill_once_writing(proc, work)
    assert not (work / "samples/samples.npz").exists()
    evaluate = ["evaluate.py", "data/prepared/mnist", "samples", "models/classifier",
                "data/reference/mnist", "metrics/eval.json", "metrics/eval_plots"]
    assert _one_line(_stage(work, *evaluate)) == (
        "error: samples/samples.npz not found; run `dvc repro sample`")
    # What an in-place write would have left: the killed write's partial file, as the output.
    (partial,) = (work / "samples").glob(".samples.tmp-*.npz")
    partial.rename(work / "samples/samples.npz")
    assert re.fullmatch(r"error: samples/samples.npz is not a complete samples file "
                        r"\(BadZipFile: .+\); re-run `dvc repro sample`",
                        _one_line(_stage(work, *evaluate)))
    assert not (work / "metrics/eval.json").exists()
