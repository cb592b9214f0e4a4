"""One critic update and one generator update, for any variant, under any strategy.

The variant picks a loss and a penalty by name (:data:`VARIANT_PARTS`); the critic
loss is always ``adversarial + penalty_weight * penalty``, built per example and
averaged against the global batch. Each replica function is wrapped once in a
``tf.function`` that runs it on every replica and sums the per-replica metrics,
so the returned numbers are global means. Inputs are tensors only (no retracing).

Speed (see BENCHMARKS.md), none of which changes what is computed:

- On one replica with ``train.jit_compile`` the whole step (gradients, update, weight
  clipping, metrics) is one XLA cluster, not just the gradient math.
- The penalty's second backward pass skips the zero branch. TensorFlow's gradient of
  ``LeakyReluGrad`` returns ``zeros_like(features)``, which the outer tape then
  back-propagates through the whole forward pass of the penalty points (a conv
  backprop-filter and backprop-input on zeros, ~15% of a WGAN-GP critic step). For a
  critic built only of conv/dense layers and (leaky) ReLUs — piecewise linear, so its
  activation pattern has zero derivative — the penalty's forward pass runs off the outer
  tape on pre-read weight tensors (``stateless_call``); the backward ops that carry the
  true dependence on the weights are still recorded. Any other critic (e.g.
  ``critic_norm: layer``) takes the plain path, and so does mixed precision, whose
  float16 copies of the weights are made inside the layers, where the tape cannot see them.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from wgan.config import TrainConfig
from wgan.distribution import global_noise, global_std
from wgan.losses import get_loss
from wgan.penalties import get_penalty, interpolates, perturbed

__all__ = ["VARIANT_PARTS", "TrainSteps", "make_train_steps", "compiles_with_xla"]

# Layers whose input gradient depends on the weights but not (a.e.) on the activations.
# Their ops must take the weight tensors as they are (no reshape inside the layer), or the
# off-tape penalty loses that weight's gradient; wgan.block_conv's subclasses comply.
_PIECEWISE_LINEAR = (keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.Dense,
                     keras.layers.LeakyReLU, keras.layers.ReLU, keras.layers.Flatten,
                     keras.layers.Reshape)

# variant -> (loss name, penalty name)
VARIANT_PARTS = {
    "gan": ("non_saturating", "none"),
    "wgan": ("wasserstein", "none"),
    "wgan-gp": ("wasserstein", "gp"),
    "wgan-lp": ("wasserstein", "lp"),
}


@dataclass
class TrainSteps:
    critic_step: object  # (real PerReplica batch, seed [2] int64) -> metrics dict
    generator_step: object  # (seed [2] int64) -> metrics dict


def _seeds(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    """Independent stateless seeds for the n noise tensors of one step."""
    return list(tf.unstack(tf.random.experimental.stateless_split(seed, n)))


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


def compiles_with_xla(train: TrainConfig, strategy: tf.distribute.Strategy) -> bool:
    """Whether :func:`make_train_steps` compiles the whole step with XLA.

    Only on one replica: with several, the synchronised BatchNorm all-reduce cannot sit
    inside an XLA cluster, so the step stays uncompiled.
    """
    return train.jit_compile and strategy.num_replicas_in_sync == 1


def make_train_steps(
    strategy: tf.distribute.Strategy,
    generator: keras.Model,
    critic: keras.Model,
    g_opt: keras.optimizers.Optimizer,
    c_opt: keras.optimizers.Optimizer,
    train: TrainConfig,
    z_dim: int,
    ema: list[tf.Variable] | None = None,
) -> TrainSteps:
    """Build the two distributed step functions for a resolved ``train`` config."""
    loss_name, penalty_name = VARIANT_PARTS[train.variant]
    loss, penalty = get_loss(loss_name), get_penalty(penalty_name)
    batch = train.batch
    weight = train.penalty_weight or 0.0
    perturb = train.variant == "wgan-lp" and train.lp_sampling == "perturb"
    step_function = (tf.function(jit_compile=True) if compiles_with_xla(train, strategy)
                     else tf.function)
    off_tape = (penalty_name != "none" and _piecewise_linear(critic)
                and _computes_in_variable_dtype(critic))

    def average(per_example: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_example, global_batch_size=batch)

    def penalty_points(real, fake, seed):
        if perturb:
            # Global noise [2, B, ...] sliced on the batch axis keeps reals first.
            noise = global_noise("normal", [2, batch, *real.shape[1:]], seed, axis=1)
            return perturbed(real, fake, tf.reshape(noise, [-1, *real.shape[1:]]), train.perturb,
                             global_std(tf.concat([real, fake], axis=0)))
        return interpolates(real, fake, global_noise("uniform", [batch], seed))

    def penalty_critic(tape: tf.GradientTape):
        """The critic as the penalty calls it (see the module docstring for ``off_tape``)."""
        if not off_tape:
            return critic
        # Read under ``tape`` so the backward ops that use these tensors reach the weights.
        weights = [tf.convert_to_tensor(v) for v in critic.trainable_variables]
        state = [tf.convert_to_tensor(v) for v in critic.non_trainable_variables]

        def call(points):
            with tape.stop_recording():
                return critic.stateless_call(weights, state, points)[0]

        return call

    def critic_grads(real, seed):
        z_seed, point_seed = _seeds(seed, 2)
        z = global_noise("normal", [batch, z_dim], z_seed)
        fake = tf.stop_gradient(generator(z, training=True))
        real = tf.cast(real, fake.dtype)
        with tf.GradientTape() as tape:
            d_real = critic(real, training=True)
            d_fake = critic(fake, training=True)
            adversarial = loss.critic(d_real, d_fake)
            points = penalty_points(real, fake, point_seed)
            pen, norms = penalty(penalty_critic(tape), points)
            # Fold the 2B perturbed points back onto the B examples they came from.
            pen = tf.reduce_mean(tf.reshape(pen, [-1, tf.shape(adversarial)[0]]), axis=0)
            total = average(adversarial + weight * pen)
            scaled = c_opt.scale_loss(total)
        grads = tape.gradient(scaled, critic.trainable_variables)
        metrics = {
            "critic_loss": total,
            "wasserstein": -average(adversarial),
            "penalty": average(pen),
            "grad_norm": tf.reduce_sum(norms) / tf.cast(tf.size(norms), tf.float32)
            / tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32),
        }
        return grads, metrics

    def generator_grads(seed):
        z = global_noise("normal", [batch, z_dim], seed)
        with tf.GradientTape() as tape:
            fake = generator(z, training=True)
            total = average(loss.generator(critic(fake, training=True)))
            scaled = g_opt.scale_loss(total)
        return tape.gradient(scaled, generator.trainable_variables), {"generator_loss": total}

    replicas = strategy.num_replicas_in_sync

    def clip_summed(grads, opt):
        """Clip the gradient the optimizer will apply: the sum over replicas.

        Runs in cross-replica context between the gradient and the update. The result
        is divided by the replica count because the optimizer sums it again. Under mixed
        precision the gradients still carry the loss scale (``apply`` divides it out), so
        the threshold is scaled with them.
        """
        if train.grad_clip is None:
            return grads
        summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]
        scale = tf.cast(getattr(opt, "dynamic_scale", 1.0), tf.float32)
        clipped, _ = tf.clip_by_global_norm(summed, train.grad_clip * scale)
        return [g / replicas for g in clipped]

    def local(grads):
        # Clipped gradients arrive as one host tensor; copy them onto this replica's device.
        return [tf.identity(g) for g in grads]

    def apply_critic(grads):
        c_opt.apply(local(grads), critic.trainable_variables)

    def apply_generator(grads):
        g_opt.apply(local(grads), generator.trainable_variables)
        if ema is not None:
            # Warm-up as in tf.train.ExponentialMovingAverage(num_updates=k): the decay of
            # update k is min(ema, k / (k + 9)), so the random initial weights do not
            # linger in the average of a short run (0.999^2000 would still be 14%).
            k = tf.cast(g_opt.iterations, tf.float32)
            decay = tf.minimum(train.ema, k / (k + 9.0))
            for average_var, var in zip(ema, generator.weights, strict=True):
                average_var.assign(decay * average_var + (1.0 - decay) * var)

    def summed(per_replica: dict) -> dict:
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    @step_function
    def critic_step(real, seed):
        grads, metrics = strategy.run(critic_grads, args=(real, seed))
        strategy.run(apply_critic, args=(clip_summed(grads, c_opt),))
        return summed(metrics)

    @step_function
    def generator_step(seed):
        grads, metrics = strategy.run(generator_grads, args=(seed,))
        strategy.run(apply_generator, args=(clip_summed(grads, g_opt),))
        return summed(metrics)

    return TrainSteps(critic_step, generator_step)
