"""model.init: each choice's initial weights have the distribution its papers used, per seed;
model.conditional: a generator of (z, label) and a critic with one output per class."""

import json
import re

import keras
import numpy as np
import pytest
from conftest import TINY_MODEL, TINY_TRAIN

from wgan.checkpoints import fingerprint
from wgan.config import ModelConfig, parse_params
from wgan.generation import generate, generator_inputs
from wgan.model_files import generator_classes
from wgan.models import build_models, class_score
from wgan.prepared.format import read_meta, to_uint8
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


def test_a_conditional_pair_draws_per_label_and_scores_per_class():
    # The generator: the same noise at two labels gives two images. The critic: one linear
    # output per class, of which class_score takes each row's label's.
    config = ModelConfig(**{**MODEL, "critic_norm": "none", "conditional": True})
    generator, critic = build_models(config, SHAPE, num_classes=10)
    assert generator_classes(generator) == 10 and critic.output.shape[1:] == (10,)
    z = np.random.default_rng(0).normal(size=(2, 32)).astype(np.float32)
    zeros, ones = (np.asarray(generator([z, np.full(2, k, np.int32)])) for k in (0, 1))
    assert np.abs(zeros - ones).max() > 1e-3
    scores = np.arange(20, dtype=np.float32).reshape(2, 10)
    assert class_score(scores, np.array([3, 7])).numpy().tolist() == [[3.0], [17.0]]
    plain, _ = build_models(ModelConfig(**MODEL), SHAPE, num_classes=10)
    assert generator_classes(plain) is None and len(plain.inputs) == 1


@pytest.mark.parametrize("shape, classes, message", [
    (SHAPE, None, "model.conditional: true needs class labels, but the prepared data has "
                  "none (meta.json num_classes: null); set model.conditional: false"),
    ((16,), 2, "model.conditional: true applies to the dcgan only; set model.conditional: "
               "false for this data")])
def test_a_conditional_model_without_labels_or_a_dcgan_is_refused(shape, classes, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_models(ModelConfig(**{**MODEL, "conditional": True}), shape, num_classes=classes)


def test_generate_draws_sample_i_as_class_i_mod_k():
    # Every K samples hold each class once, whatever the batch: the stream's i-th sample
    # is the generator's output for the i-th noise vector at label i mod K.
    config = ModelConfig(**{**MODEL, "critic_norm": "none", "conditional": True})
    generator, _ = build_models(config, SHAPE, num_classes=10)
    samples = generate(generator, 23, 7, seed=5, is_image=True)
    z = np.random.default_rng(5).standard_normal((23, 32), dtype=np.float32)
    expected = to_uint8(np.asarray(generator([z, np.arange(23, dtype=np.int32) % 10],
                                             training=False)), True)
    assert np.array_equal(samples, expected)
    assert generator_inputs(z[:3], 19, 10)[1].tolist() == [9, 0, 1]
