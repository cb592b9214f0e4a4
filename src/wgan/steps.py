"""One critic update and one generator update, for any variant, under any strategy.

The variant (:data:`wgan.variants.VARIANTS`) picks a loss, a penalty and how the
penalty's points are drawn; the critic loss is always ``adversarial + penalty_weight *
penalty`` (lazy R1 leaves the penalty out of most updates: :class:`TrainSteps`), built per
example and averaged against the global batch. Each replica function is wrapped once in a
``tf.function`` that runs it on every replica and sums the per-replica metrics, so the
returned numbers are global means. Inputs are tensors
only (no retracing). On one replica with ``train.jit_compile`` the whole step
(gradients, update, weight clipping, metrics) is one XLA cluster. A class-conditional pair
(``model.conditional``) is scored at each example's label (:func:`_at_labels`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import keras
import tensorflow as tf

from wgan.config import TrainConfig
from wgan.distribution import global_noise, global_std
from wgan.ema import update_ema
from wgan.losses import get_loss
from wgan.models import class_score
from wgan.penalties import get_penalty, interpolates, penalty_critic, perturbed, runs_off_tape
from wgan.variants import get_variant

__all__ = ["TrainSteps", "make_train_steps", "compiles_with_xla"]


@dataclass
class TrainSteps:
    """The compiled steps, and what lazy R1 regularisation (``train.r1_every`` = k) needs.

    Lazy regularisation (Karras et al. 2020, StyleGAN2, arXiv:1912.04958, Sec. 3.1 and
    Appendix B) applies the R1 penalty on every k-th critic update only, with its weight
    multiplied by k, so that its expected gradient is unchanged:
    L_D = adversarial + k·(γ/2)·‖∇D(x)‖² on updates 0, k, 2k, ... and L_D = adversarial on
    the others, which skip the penalty's double backpropagation. ``last_penalty`` holds the
    ``penalty`` and ``grad_norm`` metrics of the latest regularised update, which the other
    updates report (empty when every update is regularised); it is checkpointed, so a
    resumed run logs what an uninterrupted one does.
    """

    critic_step: Callable  # (real or (real, labels) PerReplica batch, seed [2] int64) -> metrics
    generator_step: Callable  # (seed [2] int64) -> metrics dict
    r1_every: int = 1
    # The critic step without the penalty, compiled apart (no dead branch); lazy R1 only.
    unregularised_critic_step: Callable | None = None
    last_penalty: dict[str, tf.Variable] = field(default_factory=dict)

    def critic_update(self, real, seed: tf.Tensor, index: int) -> dict:
        """Critic update number ``index`` of the run (0-based): regularised when ``index``
        is a multiple of ``r1_every``. The index is a count of updates, not a tensor, so
        the choice between the two compiled steps costs no host sync."""
        if index % self.r1_every == 0:
            return self.critic_step(real, seed)
        return self.unregularised_critic_step(real, seed)


def _seeds(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    """Independent stateless seeds for the n noise tensors of one step."""
    return list(tf.unstack(tf.random.experimental.stateless_split(seed, n)))


def _scored_by_penalty(critic: Callable, penalty: Callable, real: tf.Tensor):
    """(D(x), penalty(D, x)) from the one forward pass the penalty makes over the real batch.

    R1 penalises the real batch itself, so the forward pass under the penalty's inner tape
    also gives the D(x) of the adversarial loss: one critic pass instead of two. With two
    separate passes over the same batch the step was not repeatable run to run
    (tests/repeat_probe.py). ``penalty`` must call the critic once, on ``real``.
    """
    outputs = []

    def scoring(x):
        outputs.append(critic(x, training=True))
        return outputs[-1]

    result = penalty(scoring, real)
    return outputs[0], result


def _at_labels(critic: Callable, labels: tf.Tensor | None) -> Callable:
    """``critic`` as a function of the images alone, scored at ``labels`` (None: as is)."""
    if labels is None:
        return critic
    return lambda x, **kwargs: class_score(critic(x, **kwargs), labels)


def _uniform_labels(classes: int, batch: int, seed: tf.Tensor) -> tf.Tensor:
    """This replica's slice of ``batch`` labels drawn uniformly from ``classes``."""
    u = global_noise("uniform", [batch], seed)
    return tf.minimum(tf.cast(u * classes, tf.int32), classes - 1)


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
    classes: int | None = None,
) -> TrainSteps:
    """Build the two distributed step functions for a resolved ``train`` config.

    ``classes``: a class-conditional pair (:mod:`wgan.models`). The critic step then takes
    ``(images, labels)``: the fakes are drawn for the real batch's labels and scored, with
    the penalty points, at them. The generator step draws uniform labels.
    """
    variant = get_variant(train.variant)
    loss, penalty = get_loss(variant.loss), get_penalty(variant.penalty)
    sampling = variant.point_sampling(train.lp_sampling)
    batch = train.batch
    # Lazy R1: the regularised updates carry the weight of the k-1 that skip the penalty.
    weight = (train.penalty_weight or 0.0) * train.r1_every
    step_function = (tf.function(jit_compile=True) if compiles_with_xla(train, strategy)
                     else tf.function)
    off_tape = variant.penalty != "none" and runs_off_tape(critic)

    def average(per_example: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_example, global_batch_size=batch)

    def penalty_points(real, fake, seed):
        if sampling == "perturb":
            # Global noise [2, B, ...] sliced on the batch axis keeps reals first.
            noise = global_noise("normal", [2, batch, *real.shape[1:]], seed, axis=1)
            return perturbed(real, fake, tf.reshape(noise, [-1, *real.shape[1:]]), train.perturb,
                             global_std(tf.concat([real, fake], axis=0)))
        return interpolates(real, fake, global_noise("uniform", [batch], seed))

    def generate(z, labels):
        return generator(z if labels is None else [z, labels], training=True)

    def critic_grads(real, seed, regularise):
        real, labels = real if classes else (real, None)
        z_seed, point_seed = _seeds(seed, 2)
        z = global_noise("normal", [batch, z_dim], z_seed)
        fake = tf.stop_gradient(generate(z, labels))
        real = tf.cast(real, fake.dtype)
        scored = _at_labels(critic, labels)
        with tf.GradientTape() as tape:
            if not regularise:  # no penalty, no double backpropagation
                d_real = scored(real, training=True)
            elif sampling == "real":
                d_real, (pen, norms) = _scored_by_penalty(scored, penalty, real)
            else:
                d_real = scored(real, training=True)
                points = penalty_points(real, fake, point_seed)
                # wgan-lp's perturbed points are the reals' then the fakes': labels twice.
                at = None if labels is None else tf.tile(
                    labels, [tf.shape(points)[0] // tf.shape(real)[0]])
                pen, norms = penalty(_at_labels(penalty_critic(critic, tape, off_tape), at),
                                     points)
            adversarial = loss.critic(d_real, scored(fake, training=True))
            if regularise:
                # Fold the 2B perturbed points back onto the B examples they came from.
                pen = tf.reduce_mean(tf.reshape(pen, [-1, tf.shape(adversarial)[0]]), axis=0)
                total = average(adversarial + weight * pen)
            else:
                total = average(adversarial)
            scaled = c_opt.scale_loss(total)
        grads = tape.gradient(scaled, critic.trainable_variables)
        metrics = {"critic_loss": total, "wasserstein": -average(adversarial)}
        if regularise:
            metrics["penalty"] = average(pen)
            metrics["grad_norm"] = (
                tf.reduce_sum(norms) / tf.cast(tf.size(norms), tf.float32)
                / tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32))
        return grads, metrics

    def generator_grads(seed):
        labels = None
        if classes:  # a split only here: unconditional runs keep their noise streams
            seed, label_seed = _seeds(seed, 2)
            labels = _uniform_labels(classes, batch, label_seed)
        z = global_noise("normal", [batch, z_dim], seed)
        with tf.GradientTape() as tape:
            fake = generate(z, labels)
            total = average(loss.generator(_at_labels(critic, labels)(fake, training=True)))
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
            update_ema(ema, generator.weights, train.ema, g_opt.iterations)

    def summed(per_replica: dict) -> dict:
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    last_penalty = {}
    if train.r1_every > 1:
        with strategy.scope():  # mirrored, so every replica reads the same value
            last_penalty = {k: tf.Variable(0.0, trainable=False, name=f"last_{k}")
                            for k in ("penalty", "grad_norm")}

    def critic_step_function(regularise: bool) -> Callable:
        @step_function
        def critic_step(real, seed):
            grads, metrics = strategy.run(partial(critic_grads, regularise=regularise),
                                          args=(real, seed))
            strategy.run(apply_critic, args=(clip_summed(grads, c_opt),))
            metrics = summed(metrics)
            for name, var in last_penalty.items():
                if regularise:
                    var.assign(metrics[name])
                else:
                    metrics[name] = var.read_value()
            return metrics

        return critic_step

    @step_function
    def generator_step(seed):
        grads, metrics = strategy.run(generator_grads, args=(seed,))
        strategy.run(apply_generator, args=(clip_summed(grads, g_opt),))
        return summed(metrics)

    return TrainSteps(critic_step_function(True), generator_step, train.r1_every,
                      critic_step_function(False) if last_penalty else None, last_penalty)
