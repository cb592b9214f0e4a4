"""Block convolutions: the same maths as Keras' 4×4 stride-2 layers, used only where faster."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from wgan.block_conv import (
    BlockConv2D,
    BlockConv2DTranspose,
    block_conv2d,
    block_conv2d_transpose,
    with_stock_layers,
)
from wgan.config import parse_params
from wgan.models import ClipWeights, build_models


def _close(a, b):
    scale = float(tf.reduce_max(tf.abs(b)))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * scale + 1e-6)


def _value_and_grads(fn, x, kernel, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = fn(x, kernel)
        loss = tf.reduce_sum(y * upstream)
    return [y, *tape.gradient(loss, [x, kernel])]


@pytest.mark.parametrize("shape", [(3, 28, 28, 1), (2, 8, 6, 3), (2, 4, 4, 2)])
def test_block_conv2d_matches_conv2d_with_gradients(shape):
    b, h, w, c = shape
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    kernel = tf.constant(rng.normal(size=(4, 4, c, 5)), tf.float32)
    upstream = tf.constant(rng.normal(size=(b, h // 2, w // 2, 5)), tf.float32)
    ours = _value_and_grads(block_conv2d, x, kernel, upstream)
    stock = _value_and_grads(lambda x, k: tf.nn.conv2d(x, k, 2, "SAME"), x, kernel, upstream)
    for a, e in zip(ours, stock, strict=True):
        _close(a, e)


@pytest.mark.parametrize("shape", [(3, 14, 14, 6), (2, 3, 5, 4)])
def test_block_conv2d_transpose_matches_conv2d_transpose_with_gradients(shape):
    b, h, w, c = shape
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    kernel = tf.constant(rng.normal(size=(4, 4, 2, c)), tf.float32)
    upstream = tf.constant(rng.normal(size=(b, 2 * h, 2 * w, 2)), tf.float32)

    def stock_fn(x, k):
        return tf.nn.conv2d_transpose(x, k, [b, 2 * h, 2 * w, 2], 2, "SAME")

    ours = _value_and_grads(block_conv2d_transpose, x, kernel, upstream)
    stock = _value_and_grads(stock_fn, x, kernel, upstream)
    for a, e in zip(ours, stock, strict=True):
        _close(a, e)


@pytest.mark.parametrize("jit", [False, True])
def test_penalty_second_backward_matches_stock_conv(jit):
    # WGAN-GP differentiates ||dD/dx||^2 with respect to the weights: a double backward.
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(4, 28, 28, 1)), tf.float32)
    kernel = tf.constant(rng.normal(size=(4, 4, 1, 8)), tf.float32)

    def penalty_grad(conv):
        @tf.function(jit_compile=jit)
        def grad(x, kernel):
            with tf.GradientTape() as outer:
                outer.watch(kernel)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    score = tf.reduce_sum(tf.nn.leaky_relu(conv(x, kernel), 0.2) ** 2)
                norm = tf.reduce_sum(inner.gradient(score, x) ** 2)
            return outer.gradient(norm, kernel)
        return grad(x, kernel)

    _close(penalty_grad(block_conv2d), penalty_grad(lambda x, k: tf.nn.conv2d(x, k, 2, "SAME")))


def test_block_layers_refuse_what_they_do_not_compute():
    with pytest.raises(ValueError, match="SAME 4×4 stride-2"):
        BlockConv2D(8, 3, 2, padding="same")
    with pytest.raises(ValueError, match="SAME 4×4 stride-2"):
        BlockConv2DTranspose(8, 4, 1, padding="same")
    with pytest.raises(ValueError, match="SAME 4×4 stride-2"):
        BlockConv2DTranspose(8, 4, 2, padding="same", output_padding=1)
    with pytest.raises(ValueError, match="even image sides, got 7×8"):
        block_conv2d(tf.zeros([1, 7, 8, 1]), tf.zeros([4, 4, 1, 2]))


@pytest.mark.parametrize("shape, xla, expected", [
    ((28, 28, 1), True, True),    # grey images in an XLA step: the measured gain
    ((28, 28, 1), False, False),  # without XLA the block form is slower
    ((32, 32, 3), True, False),   # colour: no measured gain
])
def test_build_models_uses_block_layers_for_grey_images_under_xla(shape, xla, expected):
    generator, critic = build_models(parse_params({}).model, shape, xla=xla)
    first_conv = [la for la in critic.layers if isinstance(la, keras.layers.Conv2D)][0]
    last_conv = [la for la in generator.layers if isinstance(la, keras.layers.Conv2DTranspose)][-1]
    assert isinstance(first_conv, BlockConv2D) is expected
    assert isinstance(last_conv, BlockConv2DTranspose) is expected
    blocks = [la for m in (generator, critic) for la in m.layers
              if isinstance(la, (BlockConv2D, BlockConv2DTranspose))]
    assert len(blocks) == (2 if expected else 0)  # only the single-channel layers


def test_saved_models_have_stock_layers_and_the_same_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    generator, critic = build_models(parse_params({}).model, (28, 28, 1), xla=True)
    z = tf.random.normal([3, 100])
    for model, x in ((generator, z), (critic, generator(z, training=False))):
        path = tmp_path / f"{model.name}.keras"
        with_stock_layers(model).save(path)
        loaded = keras.models.load_model(path, compile=False)  # no custom objects needed
        assert not any(isinstance(la, (BlockConv2D, BlockConv2DTranspose))
                       for la in loaded.layers)
        _close(loaded(x, training=False), model(x, training=False))


def test_a_clipped_critic_converts_saves_and_loads_with_its_clip(tmp_path):
    # wgan's critic carries ClipWeights constraints through the conversion and the file.
    _, critic = build_models(parse_params({}).model, (28, 28, 1), clip=0.01, xla=True)
    with_stock_layers(critic).save(tmp_path / "critic.keras")
    loaded = keras.models.load_model(tmp_path / "critic.keras", compile=False)
    conv = loaded.layers[1]
    assert type(conv) is keras.layers.Conv2D
    assert isinstance(conv.kernel_constraint, ClipWeights) and conv.kernel_constraint.clip == 0.01
