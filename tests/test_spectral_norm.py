"""Spectral normalization against numpy's SVD; its u vector under replicas and XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from step_harness import run_steps

from wgan.spectral_norm import SpectralNorm, spectral_norm_estimate

RNG = np.random.default_rng(0)


def _dense():
    return keras.layers.Dense(7)


def _conv():
    return keras.layers.Conv2D(6, 4, 2, padding="same")


def _miyato_matrix(kernel: np.ndarray) -> np.ndarray:
    """The paper's matrix: the kernel as (out, in·kh·kw) (Dense: (out, in))."""
    out = kernel.shape[-1]
    return np.moveaxis(kernel, -1, 0).reshape(out, -1)


def _built(make, x):
    layer = SpectralNorm(make())
    layer(x)
    return layer


@pytest.mark.parametrize("make, x_shape", [(_dense, (3, 11)), (_conv, (3, 8, 8, 5))])
def test_power_iteration_reaches_the_largest_singular_value(make, x_shape):
    x = RNG.normal(size=x_shape).astype(np.float32)
    layer = _built(make, x)
    kernel, bias = (w.numpy() for w in layer.layer.weights)
    top = np.linalg.svd(_miyato_matrix(kernel), compute_uv=False)[0]
    for _ in range(300):
        layer(x, training=True)
    matrix = tf.reshape(kernel, [-1, kernel.shape[-1]])
    sigma, _ = spectral_norm_estimate(matrix, layer.u, iterate=False)
    assert float(sigma) == pytest.approx(top, rel=1e-5)
    # The layer computes with W/σ(W), its own kernel left as it was.
    plain = make()
    plain.build(x_shape)
    plain.set_weights([kernel / top, bias])
    np.testing.assert_allclose(layer(x), plain(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(layer.layer.kernel.numpy(), kernel)


def test_only_training_calls_move_u_one_iteration_each():
    x = RNG.normal(size=(3, 11)).astype(np.float32)
    layer = _built(_dense, x)
    u0 = layer.u.numpy()
    layer(x)
    np.testing.assert_array_equal(layer.u.numpy(), u0)
    layer(x, training=True)
    matrix = tf.reshape(layer.layer.kernel, [-1, 7])
    _, expected = spectral_norm_estimate(matrix, u0, iterate=True)
    np.testing.assert_allclose(layer.u.numpy(), expected, rtol=1e-6)
    assert np.max(np.abs(layer.u.numpy() - u0)) > 1e-3


def test_the_gradient_passes_through_sigma():
    """With u converged, d/dW of c·(xW/σ(W)) is what TensorFlow's SVD gradient gives."""
    x = RNG.normal(size=(3, 11)).astype(np.float32)
    c = RNG.normal(size=(3, 7)).astype(np.float32)
    layer = _built(_dense, x)
    for _ in range(300):
        layer(x, training=True)
    kernel = tf.constant(layer.layer.kernel.numpy())
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(c * layer(x))
    got = tape.gradient(out, layer.layer.kernel)
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        sigma = tf.linalg.svd(kernel, compute_uv=False)[0]
        out = tf.reduce_sum(c * (x @ (kernel / sigma)))
    np.testing.assert_allclose(got, tape.gradient(out, kernel), rtol=1e-3, atol=1e-5)


def test_xla_updates_u_as_eager_does():
    x = RNG.normal(size=(3, 8, 8, 5)).astype(np.float32)
    layer = _built(_conv, x)
    u0 = layer.u.numpy()
    outputs = {}
    for name, call in [("eager", layer),
                       ("xla", tf.function(layer.__call__, jit_compile=True))]:
        layer.u.assign(u0)
        for _ in range(5):
            out = call(x, training=True)
        outputs[name] = out.numpy(), layer.u.numpy()
    np.testing.assert_allclose(outputs["xla"][0], outputs["eager"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["xla"][1], outputs["eager"][1], rtol=1e-5, atol=1e-6)


def _u_vectors(weights):
    return [w for w, path in zip(weights["critic"], weights["critic_paths"], strict=True)
            if path.endswith("/u")]


@pytest.mark.parametrize("variant", ["wgan-sn", "sngan"])
def test_two_replicas_end_with_the_u_of_one_device(variant, two_cpus):
    one, _ = run_steps(tf.distribute.get_strategy(), variant, k=3)
    two, _ = run_steps(two_cpus, variant, k=3)
    untrained, _ = run_steps(tf.distribute.get_strategy(), variant, k=0)
    # dcgan 28×28: two convolutions and the output layer.
    assert len(_u_vectors(one)) == 3
    for u1, u2, u0 in zip(_u_vectors(one), _u_vectors(two), _u_vectors(untrained),
                          strict=True):
        np.testing.assert_allclose(u2, u1, atol=1e-6)
        assert np.max(np.abs(u1 - u0)) > 1e-3


def test_the_first_replicas_u_is_written_to_every_replica(two_cpus):
    """Replicas compute the same u' from the same W and u, so the equality above would hold
    even with per-replica copies; here the copies are made to differ, and one training
    call must leave every replica with the first replica's u'."""
    x = RNG.normal(size=(4, 11)).astype(np.float32)
    with two_cpus.scope():
        layer = _built(_dense, x)
    first, second = layer.u.value.values
    second.assign(-3.0 * first)
    _, expected = spectral_norm_estimate(tf.reshape(layer.layer.kernel, [-1, 7]),
                                         first.numpy(), iterate=True)
    tf.function(lambda: two_cpus.run(layer, args=(x,), kwargs={"training": True}))()
    for copy in layer.u.value.values:
        np.testing.assert_allclose(copy.numpy(), expected, rtol=1e-6)
