"""model.init: each choice's initial weights have the distribution its papers used, per seed."""

import json

import keras
import numpy as np
import pytest
from conftest import TINY_MODEL, TINY_TRAIN

from wgan.checkpoints import fingerprint
from wgan.config import ModelConfig, parse_params
from wgan.models import build_models
from wgan.prepared.format import read_meta
from wgan.train import TrainOutputs, train

STD = 0.02
# Wide enough for many draws per kernel; a dcgan on 32×32×3 at base 16 has ~50 k weights.
SHAPE, MODEL = (32, 32, 3), {"base_channels": 16, "z_dim": 32, "critic_norm": "batch"}


def _weights(init: str, seed: int = 0, shape=SHAPE, spectral: bool = False,
             **model) -> dict[str, list[np.ndarray]]:
    """{"kernel": [...], "gamma": [...]} of a freshly built generator and critic."""
    keras.utils.set_random_seed(seed)
    models = build_models(ModelConfig(**{**MODEL, **model, "init": init}), shape,
                          spectral=spectral)
    out = {"kernel": [], "gamma": []}
    for m in models:
        for w in m.weights:
            name = w.path.rsplit("/", 1)[-1]
            if name in out:
                out[name].append(w.numpy())
    return out


# dcgan; the mask MLP; the spectrally normalised critic of wgan-sn/sngan (wrapped kernels)
@pytest.mark.parametrize("shape, spectral", [(SHAPE, False), ((64,), False), (SHAPE, True)])
def test_dcgan_init_draws_kernels_from_normal_0_002(shape, spectral):
    weights = _weights("dcgan", shape=shape, spectral=spectral, mlp_hidden=256)
    assert len(weights["kernel"]) == len(_weights("keras", shape=shape)["kernel"])
    for kernel in weights["kernel"]:
        if kernel.size < 500:
            continue  # too few draws to estimate a spread
        assert abs(kernel.std() - STD) < 0.1 * STD, kernel.shape
        assert abs(kernel.mean()) < 4 * STD / np.sqrt(kernel.size)
        assert np.abs(kernel).max() > 2 * STD  # untruncated: the tails are there
    if shape == SHAPE:  # BatchNorm scale N(1, 0.02), as the reference weights_init
        gamma = np.concatenate(weights["gamma"])
        assert abs(gamma.mean() - 1) < 0.01 and abs(gamma.std() - STD) < 0.2 * STD


def test_truncated_init_stays_within_two_sigma():
    # A normal truncated at ±2σ has std σ·0.8796 (its variance 1 − 2·2φ(2)/(2Φ(2) − 1)).
    for kernel in _weights("truncated")["kernel"]:
        assert np.abs(kernel).max() <= 2 * STD
        if kernel.size >= 500:
            assert abs(kernel.std() - 0.8796 * STD) < 0.1 * STD, kernel.shape
    assert all(np.all(g == 1) for g in _weights("truncated")["gamma"])


def test_keras_init_is_glorot_uniform():
    for kernel in _weights("keras")["kernel"]:
        *window, fan_in, fan_out = kernel.shape
        field = int(np.prod(window)) if window else 1
        limit = np.sqrt(6 / (field * (fan_in + fan_out)))
        assert np.abs(kernel).max() <= limit
        if kernel.size >= 500:  # uniform on [−limit, limit]: std limit/√3
            assert abs(kernel.std() - limit / np.sqrt(3)) < 0.1 * limit / np.sqrt(3)
    assert all(np.all(g == 1) for g in _weights("keras")["gamma"])


@pytest.mark.parametrize("init", ["keras", "dcgan", "truncated"])
def test_init_is_deterministic_under_the_run_seed(init):
    first, again, other = _weights(init, 0), _weights(init, 0), _weights(init, 1)
    for a, b, c in zip(first["kernel"], again["kernel"], other["kernel"], strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    # A fresh initializer per layer: two kernels of one shape are different draws.
    kernels = _weights(init, shape=(64,), mlp_hidden=64)["kernel"]
    same_shape = [k for k in kernels if k.shape == (64, 64)]
    assert len(same_shape) == 2 and not np.array_equal(*same_shape)


def test_init_is_recorded_and_changes_the_fingerprint(tmp_path, digits):
    meta = read_meta(digits)
    params = parse_params({"train": TINY_TRAIN, "model": {**TINY_MODEL, "init": "truncated"}})
    assert fingerprint(params, meta) != fingerprint(
        parse_params({"train": TINY_TRAIN, "model": TINY_MODEL}), meta)
    out = TrainOutputs.under(tmp_path)
    train(parse_params({"train": {**TINY_TRAIN, "steps": 1},
                        "model": {**TINY_MODEL, "init": "truncated"}}), digits, out)
    written = json.loads((out.models / "train_config.json").read_text())
    assert written["model"]["init"] == "truncated"
