"""Everything that trains, built one way: models, optimizers, EMA copy, counters, steps.

:func:`build_training` is what ``wgan.train`` runs, and what the tests and benchmarks
build, so a step measured or tested is the step that trains. Everything is created in
the strategy's scope (variables are mirrored across replicas), and the optimizers'
slots are built up front: Keras 3 builds them lazily, which fails inside a distributed
``tf.function``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from wgan.config import ModelConfig, NetworkOptimizer, TrainConfig
from wgan.models import build_models, latent_dim, model_classes
from wgan.steps import TrainSteps, compiles_with_xla, make_train_steps
from wgan.variants import get_variant

__all__ = ["BestSoFar", "TrainingSetup", "build_training", "critic_iterations",
           "critic_updates_before", "learning_rate", "make_optimizer"]


def make_optimizer(spec: NetworkOptimizer, mixed_precision: bool) -> keras.optimizers.Optimizer:
    """The optimizer of one network's resolved spec (``resolve_train(...).generator`` or
    ``.critic``), loss-scaled under mixed precision.

    ``sgd`` (plain, no momentum) moves the weights in proportion to the gradient, which
    Adam and RMSprop largely normalise away: the replica tests use it to see the scale.
    """
    if spec.optimizer == "adam":
        opt = keras.optimizers.Adam(spec.lr, beta_1=spec.beta1, beta_2=spec.beta2)
    elif spec.optimizer == "sgd":
        opt = keras.optimizers.SGD(spec.lr)
    else:
        opt = keras.optimizers.RMSprop(spec.lr)
    return keras.optimizers.LossScaleOptimizer(opt) if mixed_precision else opt


def learning_rate(spec: NetworkOptimizer, train: TrainConfig, step: int) -> float:
    """A network's learning rate at generator iteration ``step``: its own, decayed linearly
    to 0 over ``train.steps`` with ``train.lr_decay`` (both networks in proportion)."""
    return spec.lr * (1.0 - step / train.steps) if train.lr_decay else spec.lr


def critic_iterations(step: int, n_critic: int, warmup: bool) -> int:
    """Critic updates before generator step ``step``.

    With warmup, the WGAN paper's schedule (Arjovsky et al. 2017, reference code):
    100 critic iterations for the first 25 generator iterations and at every 500th.
    """
    if warmup and (step < 25 or step % 500 == 0):
        return 100
    return n_critic


def critic_updates_before(step: int, n_critic: int, warmup: bool) -> int:
    """Critic updates in generator iterations 0 .. ``step`` - 1: the sum of
    :func:`critic_iterations` over them, in closed form. A count of the run, not of the
    session, so a resumed run numbers its updates as an uninterrupted one does."""
    if not warmup:
        return step * n_critic
    long = min(step, 25) + max(0, (step - 1) // 500)  # iterations 0-24, 500, 1000, ...
    return 100 * long + n_critic * (step - long)


@dataclass
class BestSoFar:
    """What the evaluations during training found so far; checkpointed, so a resumed run
    keeps it. Steps are -1 and values NaN until there is one."""

    generator: keras.Model  # the sampler's weights at the best primary metric
    value: tf.Variable
    step: tf.Variable
    seconds: tf.Variable  # training seconds at the best
    target_step: tf.Variable  # first evaluation within train.target_ratio of the floor
    target_seconds: tf.Variable

    @classmethod
    def create(cls, generator: keras.Model) -> BestSoFar:
        def var(value, dtype, name):
            return tf.Variable(value, dtype=dtype, trainable=False, name=name)

        nan = float("nan")
        return cls(generator, var(nan, tf.float64, "best_value"), var(-1, tf.int64, "best_step"),
                   var(nan, tf.float64, "best_seconds"), var(-1, tf.int64, "target_step"),
                   var(nan, tf.float64, "target_seconds"))

    def checkpointed(self) -> dict[str, object]:
        return {f"best_{k}": v for k, v in vars(self).items()}

    def record(self, step: int, seconds: float, value: float, sampler: keras.Model) -> None:
        """A new best: its value, when, and the sampler's weights."""
        self.value.assign(value)
        self.step.assign(step)
        self.seconds.assign(seconds)
        self.generator.set_weights(sampler.get_weights())

    def reach_target(self, step: int, seconds: float) -> None:
        if int(self.target_step.numpy()) < 0:
            self.target_step.assign(step)
            self.target_seconds.assign(seconds)


@dataclass
class TrainingSetup:
    """The objects of one training run; :meth:`checkpointed` is what a checkpoint holds."""

    strategy: tf.distribute.Strategy
    generator: keras.Model
    critic: keras.Model
    g_opt: keras.optimizers.Optimizer
    c_opt: keras.optimizers.Optimizer
    ema_generator: keras.Model | None  # the generator averaged over updates (train.ema)
    step: tf.Variable  # generator iterations done
    examples_seen: tf.Variable  # real examples consumed, over all input pipelines
    train_seconds: tf.Variable  # training time up to the last checkpoint
    best: BestSoFar
    steps: TrainSteps
    z_dim: int
    classes: int | None = None  # a class-conditional pair's label count (model.conditional)

    @property
    def sampler(self) -> keras.Model:
        """The generator a run samples from: the EMA one when there is one."""
        return self.ema_generator or self.generator

    def checkpointed(self) -> dict[str, object]:
        tracked = dict(generator=self.generator, critic=self.critic, g_opt=self.g_opt,
                       c_opt=self.c_opt, step=self.step, examples_seen=self.examples_seen,
                       train_seconds=self.train_seconds)
        if self.ema_generator is not None:
            tracked["ema_generator"] = self.ema_generator
        last = {f"last_{k}": v for k, v in self.steps.last_penalty.items()}  # lazy R1 only
        return {**tracked, **last, **self.best.checkpointed()}

    def variables(self) -> list[tf.Variable]:
        """Every variable a checkpoint holds: models' weights, optimizer state, counters."""
        out = []
        for obj in self.checkpointed().values():
            if isinstance(obj, keras.Model):
                out.extend(obj.weights)
            elif isinstance(obj, keras.optimizers.Optimizer):
                out.extend(obj.variables)
            else:
                out.append(obj)
        return out


def build_training(model: ModelConfig, train: TrainConfig, shape: tuple[int, ...],
                   strategy: tf.distribute.Strategy, seed: int,
                   xla_layers: bool = True, num_classes: int | None = None) -> TrainingSetup:
    """Build a run of resolved ``train`` on samples of ``shape``, seeded by ``seed``;
    ``num_classes`` is the prepared data's (None: unlabelled).

    ``xla_layers=False`` builds stock Keras layers even for an XLA step (tests compare the
    two).
    """
    classes = model_classes(model, shape, num_classes)
    keras.utils.set_random_seed(seed)
    if train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    xla = compiles_with_xla(train, strategy)
    with strategy.scope():
        spectral = get_variant(train.variant).critic_constraint == "spectral"
        generator, critic = build_models(model, shape, train.clip, xla=xla and xla_layers,
                                         spectral=spectral, num_classes=classes)
        g_opt = make_optimizer(train.generator, train.mixed_precision)
        c_opt = make_optimizer(train.critic, train.mixed_precision)
        g_opt.build(generator.trainable_variables)
        c_opt.build(critic.trainable_variables)
        ema_generator = None
        if train.ema is not None:
            ema_generator, _ = build_models(model, shape, num_classes=classes)
            ema_generator.set_weights(generator.get_weights())
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        examples_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_seen")
        seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
        best = BestSoFar.create(build_models(model, shape, num_classes=classes)[0])
    z_dim = latent_dim(model, shape)
    steps = make_train_steps(strategy, generator, critic, g_opt, c_opt, train, z_dim,
                             ema=ema_generator.weights if ema_generator else None,
                             classes=classes)
    return TrainingSetup(strategy, generator, critic, g_opt, c_opt, ema_generator, step,
                         examples_seen, seconds, best, steps, z_dim, classes)
