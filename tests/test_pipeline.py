"""The real pipeline: `dvc repro` / `dvc exp run` in a temporary clone; an atomic prepare."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_MODEL, write_params
from PIL import Image

BIN = str(Path(sys.executable).parent)


def _env(repo: Path) -> dict:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"],
            "PYTHONPATH": str(repo / "src"), "DVC_NO_ANALYTICS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2", "GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_EMAIL": "t@example.com"}


def _run(cmd: list[str], repo: Path, timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=repo, env=_env(repo), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A clone of this repository with tiny params, committed."""
    path = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    write_params(path,
                 train={"steps": 4, "batch": 16, "log_every": 2, "sample_every": 2,
                        "checkpoint_every": 2},
                 model=TINY_MODEL,
                 sample={"n": 200, "batch": 100},
                 classifier={"epochs": 1},
                 evaluate={"n": 200, "kid_subsets": 5, "kid_subset_size": 50,
                           "swd_patches": 8})
    _run(["git", "commit", "-qam", "tiny params"], path)
    return path


def test_dvc_repro_then_experiment_reruns_only_what_changed(repo):
    first = _run(["dvc", "repro"], repo)
    assert _stages_run(first) == {"prepare", "train", "sample", "classifier", "evaluate"}
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    for key in ("fid", "kid", "precision", "recall", "mode_coverage", "swd"):
        assert key in json.dumps(metrics), key
    assert (repo / "data/prepared/mnist/meta.json").is_file()
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "baseline run"], repo)

    again = _run(["dvc", "repro"], repo)
    assert _stages_run(again) == set()
    assert "up to date" in again

    train_before = json.loads((repo / "metrics/train.json").read_text())
    exp = _run(["dvc", "exp", "run", "-S", "train.lambda=5"], repo)
    assert _stages_run(exp) == {"train", "sample", "evaluate"}
    train_after = json.loads((repo / "metrics/train.json").read_text())
    assert train_after["critic_loss"] != train_before["critic_loss"]

    diff = _run(["dvc", "metrics", "diff", "--json"], repo)
    changed = json.loads(diff)
    assert "metrics/train.json" in changed and "critic_loss" in changed["metrics/train.json"]
    assert "metrics/eval.json" in changed


def _write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def test_killed_prepare_leaves_no_complete_looking_output(tmp_path):
    _write_images(tmp_path / "data/raw/images", 3000)
    write_params(tmp_path, data={"name": "folder", "shards": 2, "workers": 1,
                                 "folder": {"path": "data/raw/images", "crop": None,
                                            "resize": 32, "filter": "bicubic",
                                            "test_fraction": 0.1}})
    out = tmp_path / "data/prepared/folder"
    cmd = [sys.executable, str(ROOT / "stages/prepare.py"), str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(ROOT), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(out.parent.glob(".folder.tmp-*/train-*")) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the writing of the shards
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()

    # A complete run succeeds; a second killed run leaves that complete output untouched.
    subprocess.run(cmd, cwd=tmp_path, env=_env(ROOT), check=True, capture_output=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["folder"]  # killed run's temp gone
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["train"] + meta["counts"]["test"] == 3000
    before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(ROOT), stderr=subprocess.PIPE)
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sorted((p.name, p.stat().st_size) for p in out.iterdir()) == before
