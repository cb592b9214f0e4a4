"""The reference: a straightforward TF2 WGAN-GP loop, timed beside ours.

The step-time target is stated against loops like this measured on this machine: a plain
``tf.function`` loop at about 0.9 s per iteration and the same loop with XLA at about
0.5 s (dcgan 28×28 width 64, batch 64), so the 0.45 s target is 0.9× the XLA reference.
This machine's speed drifts by ±20% from hour to hour, so the headline benchmark times
this loop in the same process, alternating rounds with ours, and reports the ratio as
well as the raw seconds.

The loop is what a tutorial writes from the WGAN-GP paper's Algorithm 1
(arXiv:1704.00028): the same models and Adam settings that ``wgan.train`` builds, the
critic called on real, fake and the interpolates in turn, the penalty from a nested
``GradientTape`` around the critic, one ``tf.function`` per step (``jit_compile`` for the
XLA variant) and the optimizer update inside it. Noise is stateless (seeded per step), as
op determinism requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from wgan.config import TrainConfig
from wgan.training_setup import build_training


@dataclass
class ReferenceSteps:
    critic_step: object  # (real [B, H, W, C], seed [2] int64) -> critic loss
    generator_step: object  # (seed [2] int64) -> generator loss


def reference_steps(model_config, shape: tuple[int, ...], cfg: TrainConfig, z_dim: int,
                    xla: bool) -> ReferenceSteps:
    """Fresh models and optimizers (stock Keras layers) with the textbook WGAN-GP steps."""
    run = build_training(model_config, cfg, shape, tf.distribute.get_strategy(), seed=0,
                         xla_layers=False)
    generator, critic, g_opt, c_opt = run.generator, run.critic, run.g_opt, run.c_opt
    batch, lam = cfg.batch, cfg.penalty_weight

    @tf.function(jit_compile=xla)
    def critic_step(real, seed):
        z = tf.random.stateless_normal([batch, z_dim], seed)
        alpha = tf.random.stateless_uniform([batch, 1, 1, 1], seed + 1)
        with tf.GradientTape() as tape:
            fake = generator(z, training=True)
            d_real = critic(real, training=True)
            d_fake = critic(fake, training=True)
            x_hat = alpha * real + (1.0 - alpha) * fake
            with tf.GradientTape() as inner:
                inner.watch(x_hat)
                d_hat = critic(x_hat, training=True)
            grad = inner.gradient(d_hat, x_hat)
            norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]) + 1e-10)
            loss = (tf.reduce_mean(d_fake) - tf.reduce_mean(d_real)
                    + lam * tf.reduce_mean(tf.square(norm - 1.0)))
        c_opt.apply(tape.gradient(loss, critic.trainable_variables), critic.trainable_variables)
        return loss

    @tf.function(jit_compile=xla)
    def generator_step(seed):
        z = tf.random.stateless_normal([batch, z_dim], seed)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(critic(generator(z, training=True), training=True))
        g_opt.apply(tape.gradient(loss, generator.trainable_variables),
                    generator.trainable_variables)
        return loss

    return ReferenceSteps(critic_step, generator_step)
