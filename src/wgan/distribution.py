"""The one place that decides distribution: strategy, global batch, per-replica slices.

The global batch (``train.batch``) is fixed whatever the number of replicas; each
replica gets ``global_batch / num_replicas`` examples and every loss is averaged
against the global batch (``tf.nn.compute_average_loss``), because the optimizer
sums gradients across replicas. Noise is drawn for the whole global batch from
stateless seeds and each replica takes its slice, so N replicas see exactly the
z and α one device would.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

__all__ = [
    "make_strategy",
    "per_replica_batch",
    "replica_slice",
    "global_noise",
    "global_std",
    "is_chief",
    "broadcast_from_chief",
    "update_seed",
    "CRITIC",
    "GENERATOR",
    "MAX_UPDATES_PER_STEP",
]

CRITIC, GENERATOR = "critic", "generator"
# Bound on train.n_critic, train.g_steps and the warm-up's critic iterations: the layout
# of update_seed counts on it.
MAX_UPDATES_PER_STEP = 1000
_SEED_LIMIT = 2**31  # top-level seeds are below this (params: seed ≤ 2^31 - 1)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``auto``: MirroredStrategy on 2+ GPUs, else the default strategy.

    ``mirrored``: all visible GPUs (all logical CPUs when there is no GPU).
    ``multi_worker``: MultiWorkerMirroredStrategy configured from ``TF_CONFIG``.
    ``one_device``: the first GPU, or the CPU.
    """
    if name == "multi_worker":  # before anything initialises TensorFlow's context
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "train.strategy 'multi_worker' needs TF_CONFIG (cluster + task) in the "
                "environment of every worker; see docs/training.md, 'Multi-GPU and multi-worker'"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    raise ValueError(f"unknown train.strategy {name!r}")


def per_replica_batch(global_batch: int, strategy: tf.distribute.Strategy) -> int:
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(
            f"train.batch: value {global_batch} is not divisible by the {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
    return global_batch // replicas


def replica_slice(global_value: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """This replica's contiguous share of a tensor built for the global batch."""
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync
    if replicas == 1:
        return global_value
    size = global_value.shape[axis] // replicas
    begin = [0] * global_value.shape.rank
    begin[axis] = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * size
    sizes = list(global_value.shape)
    sizes[axis] = size
    return tf.slice(global_value, begin, sizes)


def global_noise(kind: str, shape: list[int], seed: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """Stateless ``normal`` or ``uniform`` noise for the global batch, sliced for this replica."""
    draw = tf.random.stateless_normal if kind == "normal" else tf.random.stateless_uniform
    return replica_slice(draw(shape, seed=seed), axis)


def is_chief() -> bool:
    """True except on non-chief workers of a multi-worker cluster (they write no outputs)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker" and task.get("index", 0) == 0
        and "chief" not in config.get("cluster", {})
    )


def broadcast_from_chief(strategy: tf.distribute.Strategy, variables: list) -> None:
    """Give every worker of a cluster the chief's values of ``variables``.

    Only the chief keeps checkpoints (the other workers write to a throwaway
    directory), so after a restart only the chief resumes; without this the others
    would start from step 0 with fresh weights, diverge, and run a different number
    of collective steps. One all-reduce per variable of the value held by the first
    replica (the chief's first device), zeros elsewhere. No-op outside a cluster.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return

    def first_replica_only(value):
        ctx = tf.distribute.get_replica_context()
        value = tf.convert_to_tensor(value)
        return tf.where(tf.equal(ctx.replica_id_in_sync_group, 0), value, tf.zeros_like(value))

    for var in variables:
        chief_value = strategy.reduce(tf.distribute.ReduceOp.SUM,
                                      strategy.run(first_replica_only, args=(var,)), axis=None)
        var.assign(chief_value)


def global_std(x: tf.Tensor) -> tf.Tensor:
    """Standard deviation of all elements of ``x`` on every replica, in float32.

    One device: ``tf.math.reduce_std(x)``. Under a strategy the count, sum and sum of
    squares are summed across replicas, so every replica gets the global batch's σ.
    """
    x = tf.cast(x, tf.float32)
    mean_of = tf.stack([tf.cast(tf.size(x), tf.float32), tf.reduce_sum(x),
                        tf.reduce_sum(tf.square(x))])
    count, total, squares = tf.unstack(
        tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, mean_of))
    mean = total / count
    return tf.sqrt(tf.maximum(squares / count - tf.square(mean), 0.0))


def update_seed(seed: int, step: int, kind: str, index: int) -> tuple[int, int]:
    """The stateless noise seed of update ``index`` of ``kind`` (critic or generator)
    within generator iteration ``step`` of a run seeded ``seed``.

    Distinct for every (step, kind, index) a run can reach (index below
    :data:`MAX_UPDATES_PER_STEP`). Each step owns 1,024 counters of the stream
    ``[seed, ·]``: critic update k takes counter k and generator update k counter 1000 + k,
    the layout runs have always used (so their noise, and results, are unchanged). The
    only updates that do not fit, generator updates 24 and above (``g_steps`` > 24), take
    ``[seed + 2^31, step · 1000 + index]`` instead, a stream no top-level seed (< 2^31)
    can name.
    """
    if not 0 <= index < MAX_UPDATES_PER_STEP or not 0 <= seed < _SEED_LIMIT or step < 0:
        raise ValueError(f"update_seed: seed {seed}, step {step} or index {index} out of range")
    if kind == CRITIC:
        return seed, step * 1024 + index
    if kind != GENERATOR:
        raise ValueError(f"update_seed: kind must be {CRITIC!r} or {GENERATOR!r}, got {kind!r}")
    if index < 24:
        return seed, step * 1024 + 1000 + index
    return seed + _SEED_LIMIT, step * MAX_UPDATES_PER_STEP + index
