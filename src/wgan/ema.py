"""Exponential moving average of the generator's weights, the generator a run samples from.

Averaging the generator over its last updates smooths the oscillation of adversarial
training (Yazıcı et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training",
arXiv:1806.04498).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["ema_decay", "update_ema"]


def ema_decay(rate: float, updates: tf.Tensor) -> tf.Tensor:
    """min(rate, k / (k + 9)) after k updates: the warm-up of
    ``tf.train.ExponentialMovingAverage(num_updates=k)``, so the random initial weights
    do not linger in the average of a short run (0.999^2000 would still be 14%)."""
    k = tf.cast(updates, tf.float32)
    return tf.minimum(rate, k / (k + 9.0))


def update_ema(averages: list[tf.Variable], weights: list[tf.Variable], rate: float,
               updates: tf.Tensor) -> None:
    """averages ← d·averages + (1 − d)·weights with d = :func:`ema_decay` (rate, updates)."""
    decay = ema_decay(rate, updates)
    for average, weight in zip(averages, weights, strict=True):
        average.assign(decay * average + (1.0 - decay) * weight)
