"""Penalties on the critic's input gradient (Lipschitz penalties, R1), as pure functions.

A penalty takes the critic as a plain callable and the points x̂ where the
constraint is enforced, and returns per-point values of shape ``[N]`` and the
gradient norms ‖∇D(x̂)‖₂ (for logging). How x̂ is drawn is separate
(:func:`interpolates`, :func:`perturbed`), so every piece is testable with
constants. Nothing here knows about replicas or the global batch.

:func:`penalty_critic` is the critic as the training step hands it to a penalty. For a
critic built only of conv/dense layers and (leaky) ReLUs — piecewise linear, so its
activation pattern has zero derivative — the penalty's forward pass runs off the outer
tape on pre-read weight tensors (``stateless_call``); the backward ops that carry the
true dependence on the weights are still recorded. Same gradient, less work:
TensorFlow's gradient of ``LeakyReluGrad`` returns ``zeros_like(features)``, which the
outer tape would otherwise back-propagate through the whole forward pass of the penalty
points (~15% of a WGAN-GP critic step). Any other critic (e.g. ``critic_norm: layer``)
is returned as it is, and so is one under mixed precision, whose float16 copies of the
weights are made inside the layers, where the tape cannot see them.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

__all__ = [
    "PENALTIES",
    "get_penalty",
    "gradient_penalty",
    "lipschitz_penalty",
    "no_penalty",
    "r1_penalty",
    "interpolates",
    "perturbed",
    "penalty_critic",
    "runs_off_tape",
]

# Added to the squared norm before sqrt: the derivative of sqrt at 0 is infinite, so an
# exactly-zero gradient (e.g. a dead ReLU critic) would otherwise turn the update into NaN.
_NORM_EPS = 1e-10


def interpolates(real: tf.Tensor, fake: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """x̂ = α·x + (1 − α)·G(z), with one α ~ U[0, 1] per example.

    See "Improved Training of Wasserstein GANs" (arXiv:1704.00028), Algorithm 1.
    Args: real, fake: [B, ...]; alpha: [B] in [0, 1].
    Returns: [B, ...].
    """
    if alpha.shape.rank != 1:
        raise ValueError(f"alpha must have shape [B], got {alpha.shape}")
    alpha = tf.reshape(tf.cast(alpha, real.dtype), [-1] + [1] * (real.shape.rank - 1))
    return alpha * real + (1.0 - alpha) * fake


def perturbed(real: tf.Tensor, fake: tf.Tensor, noise: tf.Tensor, scale: float,
              sigma: tf.Tensor) -> tf.Tensor:
    """x̂ = concat(x, G(z)) + k·σ·n, n ~ N(0, 1), σ the standard deviation of the concatenation.

    The "perturbed" sampling of Petzka et al. 2017, "On the regularization of
    Wasserstein GANs" (arXiv:1709.08894), Sec. 5, as in the WGAN-TF2 project. σ is a
    statistic of the global batch, passed in (``wgan.distribution.global_std``), so N
    replicas perturb as one device does.
    Args: real, fake: [B, ...]; noise: [2B, ...]; scale: k ≥ 0; sigma: scalar σ.
    Returns: [2B, ...], reals first.
    """
    both = tf.concat([real, fake], axis=0)
    return both + scale * tf.cast(sigma, both.dtype) * tf.cast(noise, both.dtype)


def _squared_gradient_norms(critic: Callable, points: tf.Tensor) -> tf.Tensor:
    """‖∇D(x̂)‖₂² per point, over all non-batch axes, in float32."""
    with tf.GradientTape() as tape:
        tape.watch(points)
        outputs = tf.cast(critic(points), tf.float32)
    # A non-scalar target is summed, so row i holds dD(x̂_i)/dx̂_i (points are independent).
    grads = tf.cast(tape.gradient(outputs, points), tf.float32)
    return tf.reduce_sum(tf.square(grads), axis=list(range(1, grads.shape.rank)))


def _gradient_norms(critic: Callable, points: tf.Tensor) -> tf.Tensor:
    """‖∇D(x̂)‖₂ per point, in float32."""
    return tf.sqrt(_squared_gradient_norms(critic, points) + _NORM_EPS)


# Gradient penalty (WGAN-GP). Gulrajani et al. 2017, "Improved Training of Wasserstein
# GANs" (arXiv:1704.00028), Eq. 3. Lipschitz penalty (WGAN-LP): Petzka et al. 2017,
# "On the regularization of Wasserstein GANs" (arXiv:1709.08894), Eq. 8 — the one-sided
# version, which only penalises norms above the target.

def gradient_penalty(
    critic: Callable, points: tf.Tensor, target: float = 1.0, one_sided: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """P(x̂) = (‖∇D(x̂)‖₂ − target)², or max(0, ‖∇D(x̂)‖₂ − target)² when one-sided.

    Args:
      critic: callable mapping [N, ...] to [N] or [N, 1] (a Keras model, or any function).
      points: x̂, shape [N, ...].
      target: the Lipschitz constant to enforce (1 in both papers).
      one_sided: False for GP (two-sided), True for LP.
    Returns: (per-point penalty [N], per-point gradient norm [N]), float32.
    """
    norms = _gradient_norms(critic, points)
    excess = norms - target
    if one_sided:
        excess = tf.nn.relu(excess)
    return tf.square(excess), norms


def lipschitz_penalty(critic: Callable, points: tf.Tensor, target: float = 1.0):
    """WGAN-LP: :func:`gradient_penalty` with ``one_sided=True``."""
    return gradient_penalty(critic, points, target=target, one_sided=True)


# R1. Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?"
# (arXiv:1801.04406), Sec. 4.1: penalise the critic's gradient on the data only, so that
# at the equilibrium (generator on the data, critic flat there) nothing pulls away from it.

def r1_penalty(critic: Callable, points: tf.Tensor, target: float = 1.0):
    """R1(x) = ½‖∇D(x)‖₂² at real samples x; times ``train.lambda`` = γ gives γ/2·‖∇D(x)‖².

    ``target`` is unused (R1 pulls the gradient to 0). Returns (per-point penalty [N],
    per-point gradient norm [N]), float32.
    """
    squared = _squared_gradient_norms(critic, points)
    return 0.5 * squared, tf.sqrt(squared + _NORM_EPS)


def no_penalty(critic: Callable, points: tf.Tensor, target: float = 1.0):
    """Zero penalty (gan, wgan), so the critic loss is always ``adv + weight * penalty``."""
    zeros = tf.zeros(tf.shape(points)[:1], tf.float32)
    return zeros, zeros


PENALTIES: dict[str, Callable] = {
    "none": no_penalty,
    "gp": gradient_penalty,
    "lp": lipschitz_penalty,
    "r1": r1_penalty,
}


def get_penalty(name: str) -> Callable:
    """Look a penalty up by name; an unknown name lists the valid ones."""
    if name not in PENALTIES:
        raise ValueError(f"unknown penalty {name!r}; choose one of {sorted(PENALTIES)}")
    return PENALTIES[name]


# Layers whose input gradient depends on the weights but not (a.e.) on the activations.
# Their ops must take the weight tensors as they are (no reshape inside the layer), or the
# off-tape penalty loses that weight's gradient; wgan.block_conv's subclasses comply.
_PIECEWISE_LINEAR = (keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.Dense,
                     keras.layers.LeakyReLU, keras.layers.ReLU, keras.layers.Flatten,
                     keras.layers.Reshape)


def _layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _computes_in_variable_dtype(model: keras.Model) -> bool:
    """False under mixed precision: a layer casts its weights inside the call, off the tape."""
    return all(layer.compute_dtype == layer.variable_dtype
               for layer in _layers(model) if layer.weights)


def _piecewise_linear(model: keras.Model) -> bool:
    linear = keras.activations.get(None)
    return all(isinstance(layer, _PIECEWISE_LINEAR)
               and getattr(layer, "activation", linear) is linear for layer in _layers(model))


def runs_off_tape(critic: keras.Model) -> bool:
    """Whether :func:`penalty_critic` can take ``critic``'s forward pass off the outer tape."""
    return _piecewise_linear(critic) and _computes_in_variable_dtype(critic)


def penalty_critic(critic: keras.Model, tape: tf.GradientTape, off_tape: bool) -> Callable:
    """The critic as a penalty should call it inside ``tape`` (see the module docstring).

    ``off_tape`` is :func:`runs_off_tape` of the critic, decided once when the step is built.
    """
    if not off_tape:
        return critic
    # Read under ``tape`` so the backward ops that use these tensors reach the weights.
    weights = [tf.convert_to_tensor(v) for v in critic.trainable_variables]
    state = [tf.convert_to_tensor(v) for v in critic.non_trainable_variables]

    def call(points):
        with tape.stop_recording():
            return critic.stateless_call(weights, state, points)[0]

    return call
