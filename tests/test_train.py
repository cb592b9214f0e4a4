"""The training loop end to end: outputs, determinism, exact resume after SIGKILL, NaN guard."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    ROOT,
    TINY_MODEL,
    TINY_TRAIN,
    cluster_hosts,
    run_cluster,
    tf_config,
    write_digit_dataset,
    write_params,
)
from PIL import Image

from wgan.checkpoints import fingerprint, first_non_finite
from wgan.config import SampleConfig, parse_params
from wgan.metrics.masks import is_valid_mask
from wgan.model_files import generator_classes
from wgan.models import build_models
from wgan.prepared.format import read_meta
from wgan.prepared.write import Source, write_prepared
from wgan.sample import load_generator, write_samples
from wgan.spectral_norm import SpectralNorm
from wgan.train import TrainOutputs, train
from wgan.training_log import CurveFile
from wgan.training_setup import critic_iterations, critic_updates_before
from wgan.variants import VARIANTS

STAGE = [sys.executable, str(ROOT / "stages/train.py"), "data/prepared/mnist",
         "models/classifier", "data/reference/mnist", "models", "models/checkpoints",
         "metrics/train.json", "metrics/train_curves.tsv", "logs/train", "reports/train",
         "metrics/eval_curves.tsv", "dvclive/train"]


def _params(**train):
    return parse_params({"train": {**TINY_TRAIN, **train}, "model": TINY_MODEL})


def _weights(path: Path) -> list[np.ndarray]:
    return [w for w in keras.models.load_model(path, compile=False).get_weights()]


def _tensorboard(logdir: Path) -> tuple[dict, list[int]]:
    """{(tag, step): scalar} and the steps of the image summaries in ``logdir``'s events."""
    scalars, images = {}, []
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "fixed_noise_samples":
                    images.append(event.step)
                else:
                    scalars[value.tag, event.step] = float(tf.make_ndarray(value.tensor))
    return scalars, images


def test_training_writes_every_output_and_is_deterministic(tmp_path, digits):
    first = train(_params(jit_compile=True), digits, TrainOutputs.under(tmp_path / "a"))
    second = train(_params(jit_compile=True), digits, TrainOutputs.under(tmp_path / "b"))
    out = TrainOutputs.under(tmp_path / "a")
    for path in ("generator.keras", "critic.keras", "train_config.json"):
        assert (out.models / path).is_file()
    assert sorted(p.name for p in out.progress.iterdir()) == [
        "grid-000003.png", "grid-000006.png", "progress.gif"]
    rows = out.curves.read_text().splitlines()
    assert rows[0].split("\t") == ["step", "critic_loss", "generator_loss", "wasserstein",
                                   "penalty", "grad_norm", "lr"]
    assert [int(r.split("\t")[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    # TensorBoard holds every scalar of every step (the same values as the TSV) and the grids.
    scalars, images = _tensorboard(out.logs)
    for row in rows[1:]:
        step, *values = row.split("\t")
        for name, value in zip(rows[0].split("\t")[1:], values, strict=True):
            assert f"{scalars[name, int(step)]:.6g}" == value
    assert images == [3, 6]
    metrics = json.loads(out.metrics.read_text())
    assert metrics["steps"] == 6 and metrics["images_per_s"] > 0
    resolved = json.loads((out.models / "train_config.json").read_text())
    assert resolved["train"]["lambda"] == 10.0 and resolved["train"]["n_critic"] == 5
    assert resolved["model"]["arch"] == "dcgan" and resolved["model"]["base_channels"] == 4
    # Same params and seed on CPU: identical losses and weights.
    assert (first["critic_loss"], first["generator_loss"]) == (
        second["critic_loss"], second["generator_loss"])
    assert (tmp_path / "a/metrics/train_curves.tsv").read_text() == (
        tmp_path / "b/metrics/train_curves.tsv").read_text()


def test_wgan_under_xla_saves_stock_layers_with_their_clip(tmp_path, digits):
    # Grey images under XLA train block convolutions (wgan.block_conv); the saved files
    # hold the stock Keras layers, and the critic keeps its weight clipping.
    out = TrainOutputs.under(tmp_path)
    train(_params(variant="wgan", steps=2, jit_compile=True, ema=None), digits, out)
    critic = keras.models.load_model(out.models / "critic.keras", compile=False)
    convs = [la for la in critic.layers if isinstance(la, keras.layers.Conv2D)]
    assert [type(la) for la in convs] == [keras.layers.Conv2D] * 2
    assert {la.kernel_constraint.clip for la in convs} == {0.01}
    generator = keras.models.load_model(out.models / "generator.keras", compile=False)
    assert [type(la) for la in generator.layers if isinstance(la, keras.layers.Conv2DTranspose)
            ] == [keras.layers.Conv2DTranspose] * 2


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_and_saves_a_loadable_critic(tmp_path, digits, variant):
    out = TrainOutputs.under(tmp_path)
    result = train(_params(variant=variant, steps=3, jit_compile=True, ema=None), digits, out)
    assert np.isfinite(result["critic_loss"]) and np.isfinite(result["generator_loss"])
    critic = keras.models.load_model(out.models / "critic.keras", compile=False)
    wrapped = [type(la.layer) for la in critic.layers if isinstance(la, SpectralNorm)]
    spectral = VARIANTS[variant].critic_constraint == "spectral"
    assert wrapped == ([keras.layers.Conv2D] * 2 + [keras.layers.Dense] if spectral else [])


def test_lazy_r1_run_resumed_midway_ends_as_the_uninterrupted_one(tmp_path, digits, capsys):
    # gan-r1 takes 1 critic update per step: with r1_every 2, steps 1, 3, 5 are regularised
    # and the others log the penalty of the one before. Resumed after step 3, the run goes
    # on with an unregularised update, as the uninterrupted one does.
    lazy = dict(variant="gan-r1", r1_every=2, ema=None)
    straight, resumed = (TrainOutputs.under(tmp_path / name) for name in ("straight", "resumed"))
    train(_params(**lazy), digits, straight)
    train(_params(**lazy, steps=3), digits, resumed)
    capsys.readouterr()
    train(_params(**lazy), digits, resumed)
    assert "resuming from" in capsys.readouterr().err
    assert resumed.curves.read_text() == straight.curves.read_text()
    for model in ("generator.keras", "critic.keras"):
        for a, b in zip(_weights(straight.models / model), _weights(resumed.models / model),
                        strict=True):
            np.testing.assert_array_equal(a, b)
    rows = [r.split("\t") for r in straight.curves.read_text().splitlines()]
    penalty, grad_norm = (rows[0].index(k) for k in ("penalty", "grad_norm"))
    for odd, even in zip(rows[1::2], rows[2::2], strict=True):  # steps 1|2, 3|4, 5|6
        assert float(odd[penalty]) > 0 and (odd[penalty], odd[grad_norm]) == (
            even[penalty], even[grad_norm])
    resolved = json.loads((straight.models / "train_config.json").read_text())
    assert resolved["train"]["r1_every"] == 2


def test_a_different_seed_changes_the_losses(tmp_path, digits):
    a = train(_params(steps=2), digits, TrainOutputs.under(tmp_path / "a"))
    b = train(parse_params({"seed": 1, "train": {**TINY_TRAIN, "steps": 2},
                            "model": TINY_MODEL}), digits, TrainOutputs.under(tmp_path / "b"))
    assert a["critic_loss"] != b["critic_loss"]


def _run_stage(workdir: Path, **env):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    return subprocess.Popen(STAGE, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _workdir(path: Path, digits: Path, **train) -> Path:
    """A directory like a clone of the repo: data/ (the tiny digits) and params.yaml."""
    path.mkdir(exist_ok=True)
    if not (path / "data").exists():
        (path / "data").symlink_to(digits.parents[1])
    write_params(path, train={**TINY_TRAIN, **train}, model=TINY_MODEL)
    return path


def _cluster(workdirs: list[Path], hosts: list[str] | None = None) -> list[str]:
    """The train stage as a local cluster, worker i in ``workdirs[i]`` at ``hosts[i]`` (by
    default ports free now); each one's stderr."""
    hosts = hosts or cluster_hosts(len(workdirs))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = [{"args": STAGE, "cwd": work, "env": {**env, "TF_CONFIG": tf_config(hosts, i)}}
               for i, work in enumerate(workdirs)]
    return run_cluster(workers, workdirs[0].parent / f"logs-{workdirs[0].name}", timeout=400)


def _clusters_at_once(*clusters: list[Path]) -> list[list[str]]:
    """Independent clusters run side by side (:func:`_cluster` each). Their ports are
    drawn together, so no two workers of any of them share one."""
    hosts = iter(cluster_hosts(sum(len(workdirs) for workdirs in clusters)))
    with ThreadPoolExecutor(len(clusters)) as pool:
        runs = [pool.submit(_cluster, workdirs, [next(hosts) for _ in workdirs])
                for workdirs in clusters]
        return [run.result() for run in runs]


# wgan-sn: the spectral norm's u vectors must come back from the checkpoint too.
@pytest.mark.parametrize("variant", ["wgan-gp", "wgan-sn"])
def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path, digits, variant):
    train_cfg = {**TINY_TRAIN, "steps": 12, "checkpoint_every": 4, "sample_every": 2,
                 "jit_compile": True, "variant": variant}
    runs = {}
    for name in ("straight", "killed"):
        work = tmp_path / name
        work.mkdir()
        (work / "data").symlink_to(digits.parents[1])
        write_params(work, train=train_cfg, model=TINY_MODEL)
        runs[name] = work
    # The uninterrupted run goes alongside the killed and resumed ones: separate processes
    # in separate directories, so only the wall time is shared.
    straight = _run_stage(runs["straight"])
    killed = _run_stage(runs["killed"])
    # The manager's state file names ckpt-4 only once its files are complete (written
    # atomically after them): killing on ckpt-4.index alone could leave no usable checkpoint.
    state = runs["killed"] / "models/checkpoints/checkpoint"

    def saved() -> bool:
        return state.is_file() and '"ckpt-4"' in state.read_text()

    deadline = time.time() + 300
    while not saved() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert saved(), "no checkpoint appeared"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (runs["killed"] / "models/generator.keras").exists()  # it really died midway
    shutil.rmtree(runs["killed"] / "reports/train", ignore_errors=True)  # as `dvc repro` does

    resumed = _run_stage(runs["killed"])
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert "resuming from" in err
    _, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err[-2000:]
    for model in ("generator.keras", "critic.keras"):
        for a, b in zip(_weights(runs["straight"] / "models" / model),
                        _weights(runs["killed"] / "models" / model), strict=True):
            np.testing.assert_array_equal(a, b)
    curves = [(runs[n] / "metrics/train_curves.tsv").read_text() for n in runs]
    assert curves[0] == curves[1]
    # The progress grids and GIF cover the whole run, the part before the kill included.
    grids = [sorted((runs[n] / "reports/train").glob("grid-*.png")) for n in runs]
    assert [p.name for p in grids[1]] == [f"grid-{s:06d}.png" for s in range(2, 13, 2)]
    assert [p.read_bytes() for p in grids[0]] == [p.read_bytes() for p in grids[1]]
    gif = Image.open(runs["killed"] / "reports/train/progress.gif")
    assert gif.n_frames == 6


def test_two_worker_cluster_resumes_every_worker_from_the_chiefs_checkpoint(tmp_path, digits):
    """Two machines, two clones: only the chief (worker 0) keeps checkpoints. A restarted
    cluster must continue from the chief's step on every worker, and end where an
    uninterrupted run ends."""
    # Without lr decay: raising train.steps then resumes rather than starting fresh.
    cfg = {"strategy": "multi_worker", "steps": 4, "checkpoint_every": 2, "sample_every": 4,
           "lr_decay": False}
    straight = [_workdir(tmp_path / f"straight-{i}", digits, **cfg) for i in range(2)]
    resumed = [_workdir(tmp_path / f"resumed-{i}", digits, **{**cfg, "steps": 2})
               for i in range(2)]
    _clusters_at_once(straight, resumed)  # independent: separate directories and ports
    assert not (resumed[1] / "models").exists()  # the second "machine" keeps nothing
    resumed = [_workdir(work, digits, **cfg) for work in resumed]
    errs = _cluster(resumed)
    assert "resuming from" in errs[0]
    for model in ("generator.keras", "critic.keras"):
        for a, b in zip(_weights(straight[0] / "models" / model),
                        _weights(resumed[0] / "models" / model), strict=True):
            np.testing.assert_array_equal(a, b)
    assert (straight[0] / "metrics/train_curves.tsv").read_text() == (
        resumed[0] / "metrics/train_curves.tsv").read_text()


def test_a_forced_rerun_of_a_finished_run_writes_every_output_again(tmp_path, digits):
    """`dvc repro -f train` deletes the stage's non-persistent outputs and runs it; the run
    resumes at its last step, so no iteration runs, yet every output must be there."""
    out = TrainOutputs.under(tmp_path)
    first = train(_params(), digits, out)
    for path in [*out.models.glob("*.*"), out.progress, out.metrics]:  # not checkpoints/
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert out.checkpoints.parent == out.models and any(out.checkpoints.iterdir())
    second = train(_params(), digits, out)
    assert second["steps"] == first["steps"] == 6
    # The time and throughput are the whole run's, carried in the checkpoint, not the
    # few milliseconds of this no-op session.
    for key in ("wall_time_s", "images_per_s"):
        assert second[key] == pytest.approx(first[key], rel=0.2), key
    for key in ("critic_loss", "generator_loss", "wasserstein", "penalty"):
        assert second[key] == pytest.approx(first[key], rel=1e-5), key
    assert sorted(p.name for p in out.progress.iterdir()) == [
        "grid-000003.png", "grid-000006.png", "progress.gif"]
    assert all((out.models / m).is_file()
               for m in ("generator.keras", "critic.keras", "train_config.json"))


def test_checkpoint_from_other_params_is_not_resumed(tmp_path, digits, capsys):
    out = TrainOutputs.under(tmp_path)
    train(_params(steps=2), digits, out)
    summary = train(_params(steps=2, **{"lambda": 5.0}), digits, out)
    assert "different params (or by an older version); starting fresh" in capsys.readouterr().err
    assert summary["steps"] == 2
    # A checkpoint of an older layout (its stamp without "layout") is not resumed either.
    stamp = out.checkpoints / "fingerprint.json"
    stamp.write_text(json.dumps({"fingerprint": json.loads(stamp.read_text())["fingerprint"]}))
    train(_params(steps=2, **{"lambda": 5.0}), digits, out)
    assert "older version); starting fresh" in capsys.readouterr().err
    # Changing only how the run is watched keeps the fingerprint (and allows resume).
    meta = read_meta(digits)
    assert fingerprint(_params(steps=2), meta) == fingerprint(_params(steps=9, log_every=1), meta)
    assert fingerprint(_params(), meta) != fingerprint(_params(**{"lambda": 5.0}), meta)
    # Knobs the variant does not read do not force a restart; the ones it reads do.
    assert fingerprint(_params(), meta) == fingerprint(
        _params(lp_sampling="perturb", perturb=3.0, r1_every=16), meta)
    lp = {"variant": "wgan-lp", "lp_sampling": "perturb"}
    assert fingerprint(_params(**lp), meta) != fingerprint(_params(**lp, perturb=3.0), meta)
    assert fingerprint(_params(variant="wgan-lp"), meta) == fingerprint(
        _params(variant="wgan-lp", perturb=3.0), meta)


def test_lowering_steps_after_a_run_starts_fresh_with_the_shorter_runs_weights(
        tmp_path, digits, capsys):
    straight = TrainOutputs.under(tmp_path / "straight")
    train(_params(steps=4), digits, straight)
    out = TrainOutputs.under(tmp_path / "lowered")
    train(_params(steps=6), digits, out)
    summary = train(_params(steps=4), digits, out)  # as `dvc exp run -S train.steps=4`
    assert "is 6 steps in, past train.steps=4; starting fresh" in capsys.readouterr().err
    assert summary["steps"] == 4
    assert [int(r.split("\t")[0]) for r in out.curves.read_text().splitlines()[1:]] == [
        1, 2, 3, 4]
    for model in ("generator.keras", "critic.keras"):
        for a, b in zip(_weights(straight.models / model), _weights(out.models / model),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_each_configuration_is_its_own_tensorboard_run(tmp_path, digits):
    out = TrainOutputs.under(tmp_path)
    train(_params(steps=2), digits, out)
    train(_params(steps=2, variant="wgan"), digits, out)
    runs = sorted(out.logs.iterdir())
    assert sorted(run.name.rsplit("-", 1)[0] for run in runs) == ["wgan", "wgan-gp"]
    # A fresh start of a configuration replaces its run's events instead of adding to them.
    gp = next(run for run in runs if run.name.startswith("wgan-gp-"))
    shutil.rmtree(out.checkpoints)
    train(_params(steps=2), digits, out)
    assert len(list(gp.glob("events.out.tfevents.*"))) == 1
    scalars, images = _tensorboard(gp)
    assert sorted({step for _, step in scalars}) == [1, 2] and images == [2]


SAVE_GENERATOR = """
import sys
import keras
from wgan.config import parse_params
from wgan.model_files import save_model
from wgan.models import build_models
keras.utils.set_random_seed(0)
generator, _ = build_models(parse_params({"model": {"base_channels": 4, "z_dim": 8}}).model,
                            (28, 28, 1))
save_model(generator, sys.argv[1])
"""


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    """Two processes (as two runs of the stage) save one model seconds apart: Keras writes
    the time and id()-based shared-object ids, yet the files must be equal, or DVC would
    re-run sample and evaluate after every train that changed nothing."""
    paths = [tmp_path / f"{i}.keras" for i in range(2)]
    for path in paths:
        subprocess.run([sys.executable, "-c", SAVE_GENERATOR, str(path)], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    loaded = keras.models.load_model(paths[0], compile=False)
    keras.utils.set_random_seed(0)
    generator, _ = build_models(_params().model, (28, 28, 1))
    z = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    np.testing.assert_array_equal(loaded(z, training=False), generator(z, training=False))


def test_first_non_finite_names_the_weight():
    _, critic = build_models(_params().model, (28, 28, 1))
    assert first_non_finite(critic.weights) is None
    kernel = critic.weights[2]
    kernel.assign(tf.tensor_scatter_nd_update(kernel, [[0, 0, 0, 0]], [np.inf]))
    assert first_non_finite(critic.weights) == kernel.path


def test_non_finite_loss_stops_with_step_and_loss_named(tmp_path, digits):
    """A loss that overflows at once: the run ends diverged with the initial weights (its
    step-0 checkpoint); nothing non-finite is checkpointed."""
    out = TrainOutputs.under(tmp_path)
    summary = train(_params(**{"lambda": 1e38}, checkpoint_every=1), digits, out)
    assert summary["health"] == "diverged" and summary["steps"] == 0
    assert summary["diverged_at_step"] == 1
    assert re.fullmatch(r"step 1: critic_loss is (inf|nan)", summary["diverged_reason"])
    assert json.loads(out.metrics.read_text())["health"] == "diverged"
    assert [p.name for p in out.checkpoints.glob("ckpt-*.index")] == ["ckpt-0.index"]
    assert all(np.isfinite(w).all() for w in _weights(out.models / "generator.keras"))


# SGD at lr 1 with one critic update per step: finite for two steps, NaN at the third.
BLOWS_UP_AT_3 = {"optimizer": "sgd", "lr": 1.0, "n_critic": 1, "checkpoint_every": 1,
                 "log_every": 1}


def test_a_diverged_run_keeps_its_last_good_models(tmp_path, digits):
    """The models a diverged run saves are those of its last finite checkpoint: the same
    as a run stopped there, so ``sample`` and ``evaluate`` judge a real generator."""
    diverged = TrainOutputs.under(tmp_path / "diverged")
    summary = train(_params(**BLOWS_UP_AT_3), digits, diverged)
    assert (summary["health"], summary["diverged_at_step"], summary["steps"]) == (
        "diverged", 3, 2)
    stopped = TrainOutputs.under(tmp_path / "stopped")
    assert train(_params(**BLOWS_UP_AT_3, steps=2), digits, stopped)["health"] is None
    for name in ("generator.keras", "critic.keras"):
        for a, b in zip(_weights(diverged.models / name), _weights(stopped.models / name),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_stage_reports_bad_params_in_one_line(tmp_path, digits):
    (tmp_path / "data").mkdir(exist_ok=True)
    write_params(tmp_path, train={"variant": "wgan-xx"})
    proc = _run_stage(tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].startswith("error: train.variant: unknown choice")
    assert not (tmp_path / "models").exists()  # refused before any work


def test_a_conditional_run_saves_a_generator_of_noise_and_label(tmp_path, digits):
    # model.conditional end to end: labelled batches in, a [z, label] generator out, whose
    # samples the sample stage draws class by class; on data of other classes it refuses.
    params = parse_params({"train": TINY_TRAIN, "model": {**TINY_MODEL, "conditional": True}})
    train(params, digits, TrainOutputs.under(tmp_path))
    path = tmp_path / "models/generator.keras"
    assert generator_classes(load_generator(path)) == 10
    resolved = json.loads((tmp_path / "models/train_config.json").read_text())
    assert resolved["model"]["conditional"] is True
    config = SampleConfig(n=12, batch=5, grid=3)
    samples = write_samples(path, digits, tmp_path / "samples", tmp_path / "report", config, 0)
    assert samples.shape == (12, 28, 28, 1) and (tmp_path / "report/grid.png").is_file()
    other = shutil.copytree(digits, tmp_path / "other")
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "num_classes": 12}))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} draws 10 classes, but "
                                         rf"{re.escape(str(other))} has 12; retrain"):
        write_samples(path, other, tmp_path / "s2", tmp_path / "r2", config, 0)


def test_critic_warmup_schedule():
    assert [critic_iterations(s, 5, True) for s in (0, 24, 25, 499, 500, 501)] == [
        100, 100, 5, 5, 100, 5]
    assert critic_iterations(0, 5, False) == 5


@pytest.mark.parametrize("warmup", [False, True])
def test_critic_updates_before_a_step_count_the_schedule(warmup):
    # Lazy R1 picks its updates by this count, so it must be the run's, whatever the step.
    counted = np.cumsum([0] + [critic_iterations(s, 5, warmup) for s in range(1502)])
    assert [critic_updates_before(s, 5, warmup) for s in range(1503)] == counted.tolist()


def test_masks_stop_when_every_fixed_noise_sample_is_valid(tmp_path):
    # Two lengths only, so a small MLP learns valid masks within a few hundred steps.
    lengths = np.resize([6, 10], 256)
    masks = (np.arange(16)[None, :] < lengths[:, None]).astype(np.uint8)
    source = Source("mask", (16,), None, {"train": [(m, None) for m in masks]}, {"m": "x"},
                    {"train": 256})
    prepared = write_prepared(source, tmp_path / "prepared", 1, {}) and tmp_path / "prepared"
    params = parse_params({
        "data": {"name": "mask"},
        "model": {"mlp_hidden": 64, "z_dim": 8},
        # ema off: the check (like the saved model) uses the averaged generator, which
        # would lag the few hundred steps this test affords by ~1000 at decay 0.999.
        "train": {"variant": "wgan-gp", "steps": 2000, "batch": 32, "stop_when_valid": True,
                  "check_every": 10, "log_every": 10, "lr": 1e-3, "ema": None},
    })
    summary = train(params, prepared, TrainOutputs.under(tmp_path))
    assert summary["stopped_early"] and summary["steps"] < 2000
    generator = keras.models.load_model(tmp_path / "models/generator.keras", compile=False)
    samples = generator(np.random.default_rng(1).normal(size=(64, 8)).astype("float32"))
    assert is_valid_mask(np.asarray(samples) >= 0.5).mean() > 0.5


def test_ema_generator_is_saved_and_follows_its_warmed_up_decay(tmp_path, digits):
    plain = {}
    for steps in (1, 2, 3):
        plain[steps] = TrainOutputs.under(tmp_path / f"plain{steps}")
        train(_params(steps=steps, ema=None), digits, plain[steps])
    w = {k: _weights(out.models / "generator.keras") for k, out in plain.items()}
    keras.utils.set_random_seed(_params().seed)  # the initial weights, as train() builds them
    w[0] = build_models(_params().model, (28, 28, 1))[0].get_weights()
    for decay in (0.0, 0.999):
        out = TrainOutputs.under(tmp_path / str(decay))
        train(_params(steps=3, ema=decay), digits, out)
        averaged = _weights(out.models / "generator.keras")
        # Update k uses d_k = min(decay, k / (k + 9)): 0.1, 2/11, 0.25 for decay 0.999, so
        # the average is mostly the last weights, not the random initial ones.
        d = [min(decay, k / (k + 9)) for k in (1, 2, 3)]
        coef = {3: 1 - d[2], 2: d[2] * (1 - d[1]), 1: d[2] * d[1] * (1 - d[0]),
                0: d[2] * d[1] * d[0]}
        for i, got in enumerate(averaged):
            expected = sum(c * w[k][i] for k, c in coef.items())
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_linear_lr_decay_reaches_zero(tmp_path, digits):
    out = TrainOutputs.under(tmp_path)
    train(_params(steps=4, lr_decay=True, lr=1e-3), digits, out)
    rows = [r.split("\t") for r in out.curves.read_text().splitlines()[1:]]
    lrs = [float(r[-1]) for r in rows]
    np.testing.assert_allclose(lrs, [1e-3, 7.5e-4, 5e-4, 2.5e-4], rtol=1e-5)


def _damage_newest(out: TrainOutputs, how: str) -> Path:
    """Damage the newest checkpoint as a crash or a bad disk would; return its prefix."""
    newest = tf.train.latest_checkpoint(out.checkpoints)
    data = next(Path(newest).parent.glob(Path(newest).name + ".data-*"))
    index = Path(newest + ".index")
    if how == "truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif how == "flipped":
        blob = bytearray(data.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        data.write_bytes(bytes(blob))
    else:  # an empty index
        index.write_bytes(b"")
    return Path(newest)


@pytest.fixture(scope="module")
def straight_six(tmp_path_factory) -> tuple[Path, TrainOutputs]:
    """The tiny digits and an uninterrupted 6-step run on them, shared read-only."""
    root = tmp_path_factory.mktemp("straight")
    digits = write_digit_dataset(root / "data/prepared/mnist")
    straight = TrainOutputs.under(root / "run")
    train(_params(steps=6), digits, straight)
    return digits, straight


@pytest.mark.parametrize("how", ["truncated", "flipped", "empty index"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, straight_six,
                                                                  capsys, how):
    digits, straight = straight_six
    out = TrainOutputs.under(tmp_path / "damaged")
    train(_params(steps=4), digits, out)  # checkpoints at steps 2 and 4
    newest = _damage_newest(out, how)
    capsys.readouterr()
    train(_params(steps=6), digits, out)
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is damaged (" in err
    assert f"resuming from {newest.with_name('ckpt-2')}" in err
    # Resumed exactly from step 2: the same weights as a run never interrupted.
    for model in ("generator.keras", "critic.keras"):
        for a, b in zip(_weights(straight.models / model), _weights(out.models / model),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_no_readable_checkpoint_or_a_garbled_stamp_starts_fresh(tmp_path, digits, capsys):
    out = TrainOutputs.under(tmp_path)
    train(_params(steps=4), digits, out)
    for prefix in tf.train.get_checkpoint_state(out.checkpoints).all_model_checkpoint_paths:
        Path(prefix + ".index").write_bytes(b"\0" * 10)
    capsys.readouterr()
    summary = train(_params(steps=4), digits, out)
    assert f"no readable checkpoint in {out.checkpoints}; starting fresh" in (
        capsys.readouterr().err)
    assert summary["steps"] == 4
    (out.checkpoints / "fingerprint.json").write_text("{not json")
    train(_params(steps=4), digits, out)
    assert f"{out.checkpoints / 'fingerprint.json'} is unreadable (" in capsys.readouterr().err


def test_a_curve_line_torn_by_a_kill_is_dropped_on_resume(tmp_path):
    # kill -9 during an append can leave half a row; the resumed run redraws it.
    path = tmp_path / "curves.tsv"
    path.write_text("step\tloss\n1\t0.5\n2\t0.25\n3\t0.")  # "3\t0.125\n" cut short
    curves = CurveFile(path, ("step", "loss"), resume_at=4)
    assert curves.rows == [{"step": 1.0, "loss": 0.5}, {"step": 2.0, "loss": 0.25}]
    assert path.read_text() == "step\tloss\n1\t0.5\n2\t0.25\n"
