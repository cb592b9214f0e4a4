"""Spectral normalization: a layer computes with W / σ(W), σ the largest singular value.

Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks"
(arXiv:1802.05957), Sec. 2.1 and Algorithm 1. A dense layer then has Lipschitz constant
at most 1 (a convolution roughly so, see below), as the leaky ReLUs have, which bounds
the critic's without a penalty or clipping. σ is estimated by one power iteration per
training forward pass from a vector u kept between steps, as the authors' Chainer code
does (pfnet-research/chainer-gan-lib, ``common/sn``); the gradient flows through σ(W)
into W, not around it.

A convolution kernel [kh, kw, in, out] is normalised as the matrix [kh·kw·in, out]: the
transpose of Miyato's reshape of the (out, in, kh, kw) kernel to (out, in·kh·kw), so the
same singular values. That bounds the reshaped kernel, not the convolution as an
operator on images (whose norm can be larger): the paper's convention all the same.

Why not ``keras.layers.SpectralNormalization``: in training it writes W/σ into the kernel
variable, so the optimizer updates the normalised matrix and no gradient passes through
σ; and its u has no cross-replica aggregation.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["SpectralNorm", "spectral_norm_estimate"]

_EPS = 1e-12  # in the normalisation of u and v; as the authors' code


def _normalize(x):
    return x / (ops.sqrt(ops.sum(ops.square(x))) + _EPS)


def spectral_norm_estimate(matrix, u, iterate: bool):
    """(σ, u'): the estimate of ``matrix``'s largest singular value, and the new u.

    ``matrix`` [n, m], ``u`` [m] the current estimate of its top right singular vector.
    With ``iterate`` one power iteration: v = Mu/‖Mu‖, u' = Mᵀv/‖Mᵀv‖, σ = vᵀMu'.
    Without, σ = ‖Mu‖ from u as it is (what inference uses: no state changes). The
    vectors carry no gradient; σ does, through ``matrix``.
    """
    u = ops.stop_gradient(u)
    v = ops.stop_gradient(_normalize(ops.matmul(matrix, u)))
    if iterate:
        u = ops.stop_gradient(_normalize(ops.matmul(ops.transpose(matrix), v)))
    return ops.sum(v * ops.matmul(matrix, u)), u


@keras.saving.register_keras_serializable(package="wgan")
class SpectralNorm(keras.layers.Wrapper):
    """Wraps a layer with a ``kernel`` (Dense, Conv2D) so that it computes with W/σ(W).

    ``u`` is a non-trainable weight (so it is in ``model.weights``, hence in every
    training checkpoint, and exact resume stays exact) with
    ``aggregation="only_first_replica"``: every replica computes the same u' from the
    same mirrored W and u, and the first replica's value is written to all, so the
    copies never diverge. A training call (``training=True``) runs one power iteration
    and stores u'; any other call only reads u.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        # The kernel and u are read in float32 even under mixed precision; the wrapped
        # layer casts the normalised kernel to its compute dtype itself.
        kwargs.setdefault("autocast", False)
        super().__init__(layer, **kwargs)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.u = self.add_weight(
            shape=(self.layer.kernel.shape[-1],), initializer=keras.initializers.RandomNormal(),
            trainable=False, name="u", aggregation="only_first_replica")

    def call(self, inputs, training=False):
        kernel = self.layer.kernel
        matrix = ops.reshape(ops.convert_to_tensor(kernel), (-1, kernel.shape[-1]))
        sigma, u = spectral_norm_estimate(matrix, self.u, iterate=bool(training))
        if training:
            self.u.assign(u)
        with keras.StatelessScope(state_mapping=[(kernel, kernel / sigma)]):
            return self.layer(inputs)
