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
import yaml
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
    """A clone of this repository with tiny params, committed. Without XLA, whose
    compile is most of a tiny train stage's time (test_train runs the stage with it)."""
    path = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    write_params(path,
                 train={"steps": 4, "batch": 16, "log_every": 2, "sample_every": 2,
                        "checkpoint_every": 2, "jit_compile": False, "eval_n": 200},
                 model=TINY_MODEL,
                 sample={"n": 200, "batch": 100},
                 classifier={"epochs": 1},
                 evaluate={"n": 200, "kid_subsets": 5, "kid_subset_size": 50,
                           "swd_patches": 8})
    _run(["git", "commit", "-qam", "tiny params"], path)
    return path


def test_dvc_repro_then_experiment_reruns_only_what_changed(repo):
    first = _run(["dvc", "repro"], repo)
    assert _stages_run(first) == {"prepare", "classifier", "reference", "train", "sample",
                                  "evaluate"}
    info = json.loads((repo / "data/reference/mnist/info.json").read_text())
    assert info["classifier"]["file"] == "classifier.npz" and "reason" in info["inception"]
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    for key in ("fid", "kid", "precision", "recall", "mode_coverage", "swd"):
        assert key in json.dumps(metrics), key
    assert (repo / "data/prepared/mnist/meta.json").is_file()
    # The evaluation during training (at the end of these 4 steps) reaches DVC's metrics.
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], repo))
    assert "fid" in json.dumps(shown) and "dvclive/train/metrics.json" in json.dumps(shown)
    train_metrics = json.loads((repo / "metrics/train.json").read_text())
    assert train_metrics["best_step"] == 4 and train_metrics["health"] is not None
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "baseline run"], repo)

    again = _run(["dvc", "repro"], repo)
    assert _stages_run(again) == set()
    assert "up to date" in again

    # data.workers is not tracked; another dataset's section re-runs prepare, whose
    # output (meta.json included) is identical, so nothing downstream runs.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["workers"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "up to date" in _run(["dvc", "status"], repo)
    params["data"]["celeba"]["resize"] = 32
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _stages_run(_run(["dvc", "repro"], repo)) == {"prepare"}
    _run(["git", "checkout", "--", "params.yaml", "dvc.lock"], repo)

    train_before = json.loads((repo / "metrics/train.json").read_text())
    exp = _run(["dvc", "exp", "run", "-S", "train.lambda=5"], repo)
    assert _stages_run(exp) == {"train", "sample", "evaluate"}
    train_after = json.loads((repo / "metrics/train.json").read_text())
    assert train_after["critic_loss"] != train_before["critic_loss"]

    diff = _run(["dvc", "metrics", "diff", "--json"], repo)
    changed = json.loads(diff)
    assert "metrics/train.json" in changed and "critic_loss" in changed["metrics/train.json"]
    assert "metrics/eval.json" in changed

    # A sweep over variants × λ: the workspace keeps λ = 5, which gan does not read; its
    # run goes ahead, says so, and records it. Only train reads it (test_study's queue runs
    # gan through sample and evaluate).
    exp = _run(["dvc", "exp", "run", "-S", "train.variant=gan", "train"], repo)
    assert "notice: train.lambda=5.0 is not read by variant 'gan'; ignored" in exp
    resolved = json.loads((repo / "models/train_config.json").read_text())
    assert resolved["ignored"] == {"train.lambda": 5.0}
    assert resolved["train"]["variant"] == "gan" and resolved["train"]["lambda"] is None


def _write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def test_an_os_error_is_one_line_naming_the_path(tmp_path):
    write_params(tmp_path)
    (tmp_path / "blocker").write_text("a file where the output's directory should be")
    proc = subprocess.run([sys.executable, str(ROOT / "stages/prepare.py"), "blocker/mnist"],
                          cwd=tmp_path, env=_env(ROOT), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert re.fullmatch(r"error: \[Errno \d+\] .*'blocker'", proc.stderr.strip().splitlines()[-1])


def _kill_while_writing(proc: subprocess.Popen, out: Path) -> None:
    """SIGKILL a prepare as soon as its first shard file exists, checking (with SIGSTOP
    first) that the kill really lands before the output is complete."""
    deadline = time.time() + 120
    while not list(out.parent.glob(f".{out.name}.tmp-*/train-*")) and time.time() < deadline:
        assert proc.poll() is None, "prepare ended before writing a shard"
        time.sleep(0.02)
    proc.send_signal(signal.SIGSTOP)
    try:
        tmp = list(out.parent.glob(f".{out.name}.tmp-*"))
        assert tmp and not (tmp[0] / "meta.json").exists(), "the kill came too late"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_killed_prepare_leaves_no_complete_looking_output(tmp_path):
    _write_images(tmp_path / "data/raw/images", 3000)
    write_params(tmp_path, data={"name": "folder", "shards": 2, "workers": 1,
                                 "folder": {"path": "data/raw/images", "crop": None,
                                            "resize": 32, "filter": "bicubic",
                                            "test_fraction": 0.1}},
                 model={"conditional": False})  # unlabelled images
    out = tmp_path / "data/prepared/folder"
    cmd = [sys.executable, str(ROOT / "stages/prepare.py"), str(out)]
    _kill_while_writing(subprocess.Popen(cmd, cwd=tmp_path, env=_env(ROOT)), out)
    assert not out.exists()

    # A complete run succeeds; a second killed run leaves that complete output untouched.
    subprocess.run(cmd, cwd=tmp_path, env=_env(ROOT), check=True, capture_output=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["folder"]  # killed run's temp gone
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["train"] + meta["counts"]["test"] == 3000
    before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    _kill_while_writing(subprocess.Popen(cmd, cwd=tmp_path, env=_env(ROOT)), out)
    assert sorted((p.name, p.stat().st_size) for p in out.iterdir()) == before


def _imported_files(path: Path, src: Path, seen: set[Path]) -> set[Path]:
    """Files of the ``wgan`` modules that ``path`` imports, transitively (package
    ``__init__`` files included, except the top package's, which holds only a docstring)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "wgan":
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "wgan"]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for i in range(2, len(parts) + 1):  # every package on the way, then the module
                base = src.joinpath(*parts[:i])
                for file in (base.with_suffix(".py"), base / "__init__.py"):
                    if file.is_file() and file not in seen:
                        seen.add(file)
                        _imported_files(file, src, seen)
    return seen


def test_every_stage_depends_on_the_code_it_imports():
    """Editing any module a stage runs (e.g. a variant default in config.py) must make
    `dvc repro` re-run that stage, so each imported file is a dep or inside one."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        deps = [ROOT / d for d in stage["deps"]]
        script = ROOT / "stages" / f"{name}.py"
        assert script in deps, f"{name}: the stage script is not a dep"
        for file in sorted(_imported_files(script, ROOT / "src", set())):
            covered = any(file == d or d in file.parents for d in deps)
            assert covered, f"{name}: imports {file.relative_to(ROOT)}, which is not in its deps"


def test_only_prepare_depends_on_the_prepared_writer():
    """Editing the writer must re-run `prepare` alone (its output stays byte-identical,
    so nothing after it runs); with the test above, this keeps every later stage from
    importing it, e.g. through ``wgan/prepared/__init__.py``."""
    import yaml

    writer = ROOT / "src/wgan/prepared/write.py"
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        deps = [ROOT / d for d in stage["deps"]]
        covered = any(writer == d or d in writer.parents for d in deps)
        assert covered == (name == "prepare"), f"{name}: depends on the writer: {covered}"
