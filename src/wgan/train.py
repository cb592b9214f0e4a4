"""Train one GAN variant: config → distribution → data → models → restore → loop → save.

Read it top to bottom. The host syncs with the device only when it logs (every
``train.log_every`` steps), samples, checks masks or checkpoints; until then the
per-step metric tensors are kept and written together, so every step still gets a
row in the curves and every loss is checked for NaN/Inf before a checkpoint is saved.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from wgan.block_conv import with_stock_layers
from wgan.config import Params, resolve_train, to_dict
from wgan.distribution import broadcast_from_chief, is_chief, make_strategy, per_replica_batch
from wgan.files import write_json
from wgan.metrics.masks import is_valid_mask
from wgan.model_files import save_model
from wgan.models import build_models, latent_dim, resolve_model
from wgan.prepared.format import PreparedMeta, read_meta, to_uint8
from wgan.prepared.read import training_stream
from wgan.steps import compiles_with_xla, make_train_steps
from wgan.training_log import TrainingLog
from wgan.visualize import sample_grid, save_gif, save_png

__all__ = ["TrainOutputs", "NonFiniteLossError", "train", "critic_iterations", "fingerprint",
           "make_optimizer"]

# Knobs that change how a run is watched, not what it computes: a checkpoint written
# with other values of these can still be resumed.
_COSMETIC = ("steps", "log_every", "sample_every", "checkpoint_every", "check_every",
             "stop_when_valid", "strategy")
_GRIDS = "grids"  # the run's fixed-noise grids, kept in its checkpoint directory
# Raised when the checkpoint holds other objects, so that an older one is not resumed.
_CHECKPOINT_LAYOUT = 2


def _say(message: str) -> None:
    """A status line on stderr that does not break the progress bar."""
    tqdm.write(message, file=sys.stderr)


class NonFiniteLossError(RuntimeError):
    """A loss or weight became NaN or Inf; training stops, the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainOutputs:
    models: Path  # generator.keras, critic.keras, train_config.json
    checkpoints: Path
    metrics: Path  # train.json
    curves: Path  # per-step TSV (DVC plots)
    logs: Path  # TensorBoard
    progress: Path  # fixed-noise grids and progress.gif

    @classmethod
    def under(cls, root: str | Path) -> TrainOutputs:
        """The standard layout below one directory (used by tests and benchmarks)."""
        root = Path(root)
        return cls(root / "models", root / "models/checkpoints", root / "metrics/train.json",
                   root / "metrics/train_curves.tsv", root / "logs/train",
                   root / "reports/train")


def critic_iterations(step: int, n_critic: int, warmup: bool) -> int:
    """Critic updates before generator step ``step``.

    With warmup, the WGAN paper's schedule (Arjovsky et al. 2017, reference code):
    100 critic iterations for the first 25 generator iterations and at every 500th.
    """
    if warmup and (step < 25 or step % 500 == 0):
        return 100
    return n_critic


def fingerprint(params: Params, meta: PreparedMeta) -> str:
    """Hash of everything that determines the weights (resolved train, model, data, seed)."""
    train = resolve_train(params.train)
    ignored = [k for k in _COSMETIC if not (k == "steps" and train.lr_decay)]
    if train.variant != "wgan-lp":  # knobs only wgan-lp reads must not force a restart
        ignored += ["lp_sampling", "perturb"]
    elif train.lp_sampling != "perturb":
        ignored.append("perturb")
    train_dict = {k: v for k, v in to_dict(train).items() if k not in ignored}
    blob = json.dumps({"train": train_dict, "model": to_dict(params.model), "seed": params.seed,
                       "data": meta.sha256, "data_params": meta.params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def make_optimizer(train, mixed_precision: bool = False) -> keras.optimizers.Optimizer:
    """The optimizer a resolved train config asks for (loss-scaled under mixed precision)."""
    if train.optimizer == "adam":
        opt = keras.optimizers.Adam(train.lr, beta_1=train.beta1, beta_2=train.beta2)
    else:
        opt = keras.optimizers.RMSprop(train.lr)
    return keras.optimizers.LossScaleOptimizer(opt) if mixed_precision else opt


def first_non_finite(variables: list) -> str | None:
    """The path of the first variable holding a NaN or Inf, or None."""
    for var in variables:
        if not bool(tf.reduce_all(tf.math.is_finite(var))):
            return var.path
    return None


def _restore_or_start(manager: tf.train.CheckpointManager, directory: Path,
                      expected: str, steps: int) -> None:
    """Resume from the newest checkpoint written under the same fingerprint, else start fresh.

    A checkpoint past ``steps`` (``train.steps`` lowered after a run) cannot give the
    shorter run's weights, so that run starts fresh too.
    """
    stamp, want = directory / "fingerprint.json", {"fingerprint": expected,
                                                   "layout": _CHECKPOINT_LAYOUT}
    found = json.loads(stamp.read_text()) if stamp.is_file() else None
    latest = manager.latest_checkpoint
    if latest and found == want:
        at = int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))
        if at <= steps:
            manager.checkpoint.restore(latest).assert_existing_objects_matched()
            _say(f"resuming from {latest}")
            return
        _say(f"checkpoint {latest} is {at} steps in, past train.steps={steps}; "
             "starting fresh (it is replaced at the first save)")
    elif latest:
        _say(f"checkpoint in {directory} was written under different params (or by an "
             "older version); starting fresh (it is replaced at the first save)")
    for path in manager.checkpoints:
        for file in Path(path).parent.glob(Path(path).name + ".*"):
            file.unlink()
    (directory / "checkpoint").unlink(missing_ok=True)
    shutil.rmtree(directory / _GRIDS, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(stamp, want)


def _grids_since_checkpoint(grids: Path, step: int) -> None:
    """Drop grids drawn after the checkpoint a run resumes from (the loop redraws them)."""
    for grid in grids.glob("grid-*.png"):
        if int(grid.stem.removeprefix("grid-")) > step:
            grid.unlink()


def _publish_progress(grids: Path, progress: Path) -> None:
    """Copy every grid of the run, resumed parts included, to ``progress`` and animate them.

    Grids live beside the checkpoints (kept across runs) because DVC empties the stage's
    cached ``reports/train`` before each run, which would cut a resumed run's GIF short.
    """
    progress.mkdir(parents=True, exist_ok=True)
    for stale in progress.glob("grid-*.png"):
        stale.unlink()
    frames = [Path(shutil.copyfile(grid, progress / grid.name))
              for grid in sorted(grids.glob("grid-*.png"))]
    save_gif(frames, progress / "progress.gif")


def _checkpointed_variables(tracked: dict) -> list:
    """Every variable the checkpoint holds: models' weights, optimizer state, counters."""
    out = []
    for obj in tracked.values():
        if isinstance(obj, keras.Model):
            out.extend(obj.weights)
        elif isinstance(obj, keras.optimizers.Optimizer):
            out.extend(obj.variables)
        else:
            out.append(obj)
    return out


def _output_dirs(out: TrainOutputs) -> TrainOutputs:
    """Non-chief workers of a cluster write to a throwaway directory."""
    if is_chief():
        return out
    return TrainOutputs.under(tempfile.mkdtemp(prefix="wgan-worker-"))


def train(params: Params, prepared_dir: str | Path, out: TrainOutputs) -> dict:
    """Train ``params.train.variant`` on the prepared data; write models, metrics and logs."""
    # -- config -----------------------------------------------------------------------
    cfg = resolve_train(params.train)
    # -- distribution: one strategy, global batch fixed, per-replica share derived ----
    # First: a multi-worker strategy must exist before any TensorFlow op runs.
    strategy = make_strategy(cfg.strategy)
    per_replica_batch(cfg.batch, strategy)

    meta = read_meta(prepared_dir)
    out = _output_dirs(out)
    if not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()  # same seed, same losses on CPU
    keras.utils.set_random_seed(params.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    z_dim = latent_dim(params.model, meta.shape)

    # -- models, optimizers and everything checkpointed, inside the strategy scope ----
    with strategy.scope():
        generator, critic = build_models(params.model, meta.shape, cfg.clip,
                                         xla=compiles_with_xla(cfg, strategy))
        g_opt = make_optimizer(cfg, cfg.mixed_precision)
        c_opt = make_optimizer(cfg, cfg.mixed_precision)
        # Keras 3 builds optimizer slots lazily, which fails inside a distributed tf.function.
        g_opt.build(generator.trainable_variables)
        c_opt.build(critic.trainable_variables)
        ema_generator = None
        if cfg.ema is not None:
            ema_generator, _ = build_models(params.model, meta.shape)
            ema_generator.set_weights(generator.get_weights())
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        examples_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_seen")
        # Training seconds up to the checkpoint: a resumed run reports the whole run's time.
        seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
    tracked = dict(generator=generator, critic=critic, g_opt=g_opt, c_opt=c_opt, step=step,
                   examples_seen=examples_seen, train_seconds=seconds)
    if ema_generator is not None:
        tracked["ema_generator"] = ema_generator
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**tracked), str(out.checkpoints),
                                         max_to_keep=2)
    run_id = fingerprint(params, meta)
    _restore_or_start(manager, out.checkpoints, run_id, cfg.steps)
    broadcast_from_chief(strategy, _checkpointed_variables(tracked))
    start = int(step.numpy())
    grids = out.checkpoints / _GRIDS
    _grids_since_checkpoint(grids, start)

    # -- data: a deterministic stream that resumes at the example it stopped at -------
    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return training_stream(prepared_dir, cfg.batch, seed=params.seed,
                               start=int(examples_seen.numpy()), input_context=ctx)

    data = iter(strategy.distribute_datasets_from_function(dataset_fn))

    # -- compiled steps ---------------------------------------------------------------
    steps = make_train_steps(strategy, generator, critic, g_opt, c_opt, cfg, z_dim,
                             ema=ema_generator.weights if ema_generator else None)
    sampler = ema_generator or generator
    fixed_z = tf.random.stateless_normal([100, z_dim], seed=[params.seed, 7])
    # One TensorBoard run per configuration, so experiments do not pile into one curve.
    log = TrainingLog(out.curves, out.logs / f"{cfg.variant}-{run_id[:8]}", resume_at=start,
                      chief=is_chief())

    def fixed_samples() -> np.ndarray:
        return to_uint8(sampler(fixed_z, training=False).numpy(), meta.is_image)

    def stop(what: str) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"{what}; stopped. The last good checkpoint is "
            f"{manager.latest_checkpoint or '(none yet)'}; lower train.lr or set train.grad_clip")

    def check_finite_and_log() -> None:
        bad = log.flush()
        if bad:
            at, name, value = bad
            raise stop(f"step {at}: {name} is {value}")

    def save_checkpoint(at: int) -> None:
        """Save only a good state: every loss so far finite, and every weight (an update
        can overflow after a finite loss, and the next loss would come too late)."""
        check_finite_and_log()
        bad = first_non_finite([*generator.weights, *critic.weights])
        if bad:
            raise stop(f"step {at}: weight {bad} is not finite (the losses were), not saved")
        seconds.assign(elapsed())
        manager.save(checkpoint_number=at)

    # -- loop ---------------------------------------------------------------------------
    t0, seconds0 = time.perf_counter(), float(seconds.numpy())

    def elapsed() -> float:
        return seconds0 + time.perf_counter() - t0

    bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not is_chief(),
               dynamic_ncols=True)
    stopped_early = False
    lr0 = cfg.lr
    for s in range(start, cfg.steps):
        lr = lr0 * (1.0 - s / cfg.steps) if cfg.lr_decay else lr0
        if cfg.lr_decay:
            for opt in (g_opt, c_opt):
                opt.learning_rate.assign(lr)
        n_critic = critic_iterations(s, cfg.n_critic, cfg.critic_warmup)
        for k in range(n_critic):
            c_metrics = steps.critic_step(next(data), tf.constant([params.seed, s * 1024 + k],
                                                                  tf.int64))
        for k in range(cfg.g_steps):
            g_metrics = steps.generator_step(tf.constant([params.seed, s * 1024 + 1000 + k],
                                                         tf.int64))
        examples_seen.assign_add(n_critic * cfg.batch)
        step.assign(s + 1)
        log.append(s + 1, {**c_metrics, **g_metrics, "lr": lr})
        bar.update(1)
        done = s + 1 == cfg.steps
        if (s + 1) % cfg.log_every == 0 or done:
            check_finite_and_log()
            bar.set_postfix(log.last_summary(), refresh=False)
        if (s + 1) % cfg.sample_every == 0 or done:
            grid = sample_grid(fixed_samples())
            log.image(s + 1, grid)
            save_png(grid, grids / f"grid-{s + 1:06d}.png", scale=2)
        if (s + 1) % cfg.checkpoint_every == 0 or done:
            save_checkpoint(s + 1)
        if cfg.stop_when_valid and not meta.is_image and (s + 1) % cfg.check_every == 0:
            if is_valid_mask(fixed_samples()).all():
                _say(f"step {s + 1}: every fixed-noise mask is valid; stopping early")
                save_checkpoint(s + 1)
                stopped_early = True
                break
    bar.close()
    wall = elapsed()
    last_grid = grids / f"grid-{int(step.numpy()):06d}.png"
    if not last_grid.exists():  # stopped early between grids, or a run from before grids/
        save_png(sample_grid(fixed_samples()), last_grid, scale=2)

    # -- save -----------------------------------------------------------------------------
    out.models.mkdir(parents=True, exist_ok=True)
    save_model(with_stock_layers(sampler), out.models / "generator.keras")
    save_model(with_stock_layers(critic), out.models / "critic.keras")
    resolved = {**to_dict(params), "model": to_dict(resolve_model(params.model, meta.shape)),
                "train": to_dict(cfg)}
    write_json(out.models / "train_config.json", resolved)
    _publish_progress(grids, out.progress)
    last = log.last_values()
    summary = {
        "variant": cfg.variant,
        "steps": int(step.numpy()),
        "stopped_early": stopped_early,
        "critic_loss": last.get("critic_loss"),
        "generator_loss": last.get("generator_loss"),
        "wasserstein": last.get("wasserstein"),
        "penalty": last.get("penalty"),
        "wall_time_s": round(wall, 3),
        "images_per_s": round(int(examples_seen.numpy()) / max(wall, 1e-9), 1),
        "replicas": strategy.num_replicas_in_sync,
    }
    write_json(out.metrics, summary)
    log.close()
    if not is_chief():
        shutil.rmtree(out.models.parent, ignore_errors=True)
    return summary
