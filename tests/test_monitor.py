"""Evaluation during training: curves, the best checkpoint, the target, and agreement with
the evaluate stage on the same samples."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT, TINY_MODEL, TINY_TRAIN, write_digit_dataset, write_params

from wgan.classifier import train_classifier
from wgan.config import EvaluateConfig, SampleConfig, parse_params
from wgan.evaluate import evaluate
from wgan.generation import generate
from wgan.health import run_health
from wgan.monitor import build_monitor
from wgan.prepared.format import read_meta
from wgan.reference import write_reference
from wgan.sample import write_samples
from wgan.train import TrainOutputs, train

EVAL = {"eval_every": 2, "eval_n": 40, "target_ratio": 1000.0}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Digits with a trained domain classifier and reference features, as the pipeline's
    classifier and reference stages make."""
    root = tmp_path_factory.mktemp("labelled")
    prepared = write_digit_dataset(root / "prepared", n_train=96, n_test=48)
    params = parse_params({"classifier": {"epochs": 1, "batch": 32}})
    train_classifier(prepared, root / "classifier", params.classifier, 0)
    write_reference(prepared, root / "classifier", root / "reference", params)
    return prepared, root / "classifier", root / "reference"


def _params(**train):
    return parse_params({"train": {**TINY_TRAIN, **EVAL, **train}, "model": TINY_MODEL})


def _curve(out: TrainOutputs) -> list[dict]:
    lines = out.eval_curves.read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, map(float, line.split("\t")), strict=True)) for line in lines[1:]]


def test_evaluations_write_a_curve_and_keep_the_best_generator(tmp_path, labelled):
    prepared, classifier, reference = labelled
    out = TrainOutputs.under(tmp_path)
    summary = train(_params(), prepared, out, classifier, reference)
    rows = _curve(out)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"fid", "recall", "mode_coverage", "swd"} <= set(rows[0])
    assert all(r["eval_seconds"] > 0 for r in rows)
    seconds = [r["train_seconds"] for r in rows]
    assert seconds == sorted(seconds) and seconds[-1] <= summary["wall_time_s"]
    best = min(rows, key=lambda r: r["fid"])
    assert summary["primary_metric"] == "fid" and summary["primary_lower_is_better"]
    assert summary["best_step"] == best["step"]
    assert summary["best_fid"] == pytest.approx(best["fid"], rel=1e-5)
    assert summary["final_fid"] == pytest.approx(rows[-1]["fid"], rel=1e-5)
    assert summary["best_train_seconds"] == pytest.approx(best["train_seconds"], rel=1e-5)
    assert summary["target_step"] == 2  # the first evaluation, with this generous ratio
    # DVCLive holds the latest evaluation (what `dvc exp show` shows of a running run).
    live = json.loads((out.live / "metrics.json").read_text())
    assert live["step"] == 6 and live["eval"]["fid"] == pytest.approx(rows[-1]["fid"], rel=1e-5)
    # generator_best.keras is the generator at the best evaluation: scored again, it gives
    # that evaluation's FID.
    monitor = build_monitor(prepared, classifier, reference, read_meta(prepared), 40, 0)
    best_model = keras.models.load_model(out.models / "generator_best.keras", compile=False)
    assert monitor.score(best_model)["fid"] == pytest.approx(best["fid"], rel=1e-4)


def test_the_curves_last_point_is_what_the_evaluate_stage_scores(tmp_path, labelled):
    # Same samples (the sample stage draws the same noise first), same scorers.
    prepared, classifier, reference = labelled
    out = TrainOutputs.under(tmp_path / "run")
    train(_params(eval_n=48), prepared, out, classifier, reference)
    last = _curve(out)[-1]
    write_samples(out.models / "generator.keras", prepared, tmp_path / "samples",
                  tmp_path / "report", SampleConfig(n=48), 0)
    metrics = evaluate(prepared, tmp_path / "samples", classifier, reference,
                       tmp_path / "plots", EvaluateConfig(n=48), 0)
    for name in ("fid", "recall", "precision", "mode_coverage", "classifier_score"):
        assert last[name] == pytest.approx(metrics["classifier"][name]["value"], rel=1e-4,
                                           abs=1e-6), name
    assert last["swd"] == pytest.approx(metrics["swd"]["avg"]["value"], rel=1e-4)


def test_a_resumed_run_keeps_its_best_and_its_curve(tmp_path, labelled):
    prepared, classifier, reference = labelled
    straight = TrainOutputs.under(tmp_path / "straight")
    whole = train(_params(), prepared, straight, classifier, reference)
    resumed = TrainOutputs.under(tmp_path / "resumed")
    train(_params(steps=4), prepared, resumed, classifier, reference)
    again = train(_params(), prepared, resumed, classifier, reference)
    for key in ("best_fid", "best_step", "final_fid", "target_step"):
        assert again[key] == whole[key], key
    strip = [{k: v for k, v in r.items() if k not in ("train_seconds", "eval_seconds")}
             for r in _curve(straight)]
    assert strip == [{k: v for k, v in r.items() if k not in ("train_seconds", "eval_seconds")}
                     for r in _curve(resumed)]


def test_without_evaluations_the_final_generator_stands_in_for_the_best(tmp_path, labelled):
    prepared, classifier, reference = labelled
    out = TrainOutputs.under(tmp_path)
    summary = train(_params(eval_every=None), prepared, out, classifier, reference)
    assert summary["primary_metric"] is None and summary["best_step"] is None
    assert not out.eval_curves.exists()
    final, best = (keras.models.load_model(out.models / name, compile=False)
                   for name in ("generator.keras", "generator_best.keras"))
    for a, b in zip(final.get_weights(), best.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _generator(path, seed: int):
    keras.utils.set_random_seed(seed)
    z = keras.Input((8,))
    x = keras.layers.Reshape((28, 28, 1))(keras.layers.Dense(784, "tanh")(z))
    keras.Model(z, x).save(path)
    return keras.models.load_model(path, compile=False)


@pytest.mark.parametrize("choice", ["final", "best"])
def test_sample_generator_picks_the_final_or_the_best(tmp_path, labelled, choice):
    prepared, *_ = labelled
    generators = {"final": _generator(tmp_path / "generator.keras", 1),
                  "best": _generator(tmp_path / "generator_best.keras", 2)}
    write_params(tmp_path, sample={"n": 16, "batch": 8, "generator": choice})
    proc = subprocess.run([sys.executable, str(ROOT / "stages/sample.py"),
                           "generator.keras", "generator_best.keras", str(prepared),
                           "samples", "report"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(tmp_path / "samples/samples.npz") as npz:
        np.testing.assert_array_equal(npz["x"], generate(generators[choice], 16, 8, 0, True))
        other = generators["best" if choice == "final" else "final"]
        assert not np.array_equal(npz["x"], generate(other, 16, 8, 0, True))


def test_the_run_health_is_judged_from_the_runs_curve(tmp_path, labelled):
    prepared, classifier, reference = labelled
    out = TrainOutputs.under(tmp_path)
    params = _params()
    summary = train(params, prepared, out, classifier, reference)
    rows = _curve(out)
    last = rows[-1]
    expected = run_health([(int(r["step"]), r["fid"]) for r in rows], lower_is_better=True,
                          floor=summary["floor_fid"], diverged=False,
                          final_coverage=last["mode_coverage"], num_classes=10,
                          final_recall=last["recall"], thresholds=params.health)
    assert summary["health"] == expected
    # Six steps of a tiny model cover few digits: a collapse, and it is called one.
    collapsed = last["mode_coverage"] <= 5 or last["recall"] < params.health.collapse_recall
    assert (summary["health"] == "collapsed") == collapsed
