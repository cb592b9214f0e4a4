"""Faults at the stage boundaries: each stage script, run as a real process on bad input,
ends with one ``error:`` line that names the bad file, and no traceback.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, TINY_MODEL, TINY_TRAIN, write_digit_dataset, write_params

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}


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
    done = _stage(work, "train.py", "data/prepared/mnist", "models", "models/checkpoints",
                  "metrics/train.json", "metrics/train_curves.tsv", "logs/train", "reports/train")
    line = _one_line(done)
    assert re.fullmatch(r"error: data/prepared/mnist/train-00000-of-00002.tfrecord.gz: its first "
                        r"sample holds values up to 255, but meta.json's shape \[784\] is a "
                        r"mask's, whose values are 0 and 1; re-run `dvc repro prepare`", line), line
    assert not (work / "models/generator.keras").exists()
