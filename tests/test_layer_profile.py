"""The layer profile's bookkeeping against XLA's own count (benchmarks/layer_profile.py).

Its per-pass FLOP formula and its table of how often an iteration runs each pass are
what the profile's shares rest on; both are checked against ``hlo_flops`` of real
compiled code on a tiny default-shaped model. The timing itself is covered by the
benchmark smoke test.
"""

import pytest
import tensorflow as tf

from benchmarks.hlo_flops import hlo_flops
from benchmarks.layer_profile import (
    PASSES,
    SHAPE,
    gemm,
    pass_function,
    passes_per_iteration,
    weight_layers,
)
from benchmarks.train_steps import _setup, _step_flops

BATCH = 4


@pytest.fixture(scope="module")
def tiny():
    cfg, setup, _ = _setup(SHAPE, {"base_channels": 4, "z_dim": 8}, "wgan-gp", True, BATCH,
                           {"n_critic": 2})
    return cfg, setup, weight_layers(setup.generator, setup.critic, BATCH)


def _counted_by_hlo(layer, pass_name) -> bool:
    """XLA rewrites a dot whose inner dimension is 1 (the critic's dense backprop-input)
    into a multiply, which hlo_flops does not count."""
    return gemm(layer, pass_name)[1] > 1


def _analytic(layers, n_critic: int) -> tuple[float, float]:
    """(FLOPs of every pass, of the critic's one-unit dense layer alone)."""
    runs = [(layer, runs) for layer, _ in layers
            for runs in passes_per_iteration(layer, n_critic).values()]
    return (sum(n * layer.flops for layer, n in runs),
            sum(n * layer.flops for layer, n in runs if layer.name == "critic.dense"))


def test_pass_counts_add_up_to_the_compiled_steps_flops(tiny):
    _, setup, layers = tiny
    assert [layer.name for layer, _ in layers] == [
        "critic.conv1", "critic.conv2", "critic.dense",
        "generator.dense", "generator.deconv1", "generator.deconv2"]
    real = tf.zeros([BATCH, *SHAPE])
    hlo = _step_flops(setup.steps, real, tf.constant([0, 1], tf.int64))
    # n_critic = 0 leaves the generator step; one more critic step adds one critic step.
    # XLA turns some products with the one-unit dense layer (inner dimension 1, or a
    # constant operand) into multiplies and reductions, which hlo_flops does not count:
    # that layer is the only allowed difference, and it is 1 FLOP in 500 at the default.
    (generator, g_dense), (both, both_dense) = _analytic(layers, 0), _analytic(layers, 1)
    for step, flops, dense in (("generator", generator, g_dense),
                               ("critic", both - generator, both_dense - g_dense)):
        assert 0 <= flops - hlo[step] <= dense, (step, flops, hlo[step], dense)


def test_each_timed_call_is_one_pass_of_the_formulas_flops(tiny):
    _, _, layers = tiny
    for layer, keras_layer in layers:
        x = tf.zeros([BATCH, *keras_layer.input.shape[1:]])
        dy = tf.zeros([BATCH, *keras_layer.output.shape[1:]])
        for pass_name in PASSES:
            if not _counted_by_hlo(layer, pass_name):
                continue
            fn = pass_function(keras_layer, pass_name)
            hlo = hlo_flops(fn.experimental_get_compiler_ir(x, dy)(stage="optimized_hlo"))
            assert hlo["total"] == pytest.approx(layer.flops, rel=1e-9), (layer.name, pass_name)
