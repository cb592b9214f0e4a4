"""Train one GAN variant: setup → loop → save.

Read :func:`train` top to bottom. The host syncs with the device only when it logs
(every ``train.log_every`` steps), samples, checks masks or checkpoints; until then the
per-step metric tensors are kept and written together, so every step still gets a row
in the curves and every loss is checked for NaN/Inf before a checkpoint is saved.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from wgan.block_conv import with_stock_layers
from wgan.checkpoints import Checkpoints, NonFiniteLossError, fingerprint, non_finite
from wgan.config import Params, ignored_knobs, resolve_train, to_dict
from wgan.distribution import (
    CRITIC,
    GENERATOR,
    broadcast_from_chief,
    is_chief,
    make_strategy,
    per_replica_batch,
    update_seed,
)
from wgan.files import write_json
from wgan.generation import generator_inputs
from wgan.metrics.masks import is_valid_mask
from wgan.model_files import save_model
from wgan.models import resolve_model
from wgan.monitor import start_evaluations
from wgan.prepared.format import PreparedMeta, to_uint8
from wgan.prepared.read import checked_meta, training_stream
from wgan.training_log import ProgressGrids, TrainingLog
from wgan.training_setup import (
    TrainingSetup,
    build_training,
    critic_iterations,
    critic_updates_before,
    learning_rate,
)

__all__ = ["TrainOutputs", "train"]


def _say(message: str) -> None:
    """A status line on stderr that does not break the progress bar."""
    tqdm.write(message, file=sys.stderr)


@dataclass(frozen=True)
class TrainOutputs:
    models: Path  # generator.keras, generator_best.keras, critic.keras, train_config.json
    checkpoints: Path  # checkpoints, and the run's progress grids (grids/)
    metrics: Path  # train.json
    curves: Path  # per-step TSV (DVC plots)
    logs: Path  # TensorBoard
    progress: Path  # fixed-noise grids and progress.gif
    eval_curves: Path  # the evaluations during training (TSV, DVC plots)
    live: Path  # DVCLive's directory: the latest evaluation (metrics.json)

    @classmethod
    def under(cls, root: str | Path) -> TrainOutputs:
        """The standard layout below one directory (used by tests and benchmarks)."""
        root = Path(root)
        return cls(root / "models", root / "models/checkpoints", root / "metrics/train.json",
                   root / "metrics/train_curves.tsv", root / "logs/train",
                   root / "reports/train", root / "metrics/eval_curves.tsv",
                   root / "dvclive/train")

    def for_this_worker(self) -> TrainOutputs:
        """Non-chief workers of a cluster write to a throwaway directory."""
        return self if is_chief() else TrainOutputs.under(tempfile.mkdtemp(prefix="wgan-worker-"))


def train(params: Params, prepared_dir: str | Path, out: TrainOutputs,
          classifier_dir: str | Path | None = None,
          reference_dir: str | Path | None = None) -> dict:
    """Train ``params.train.variant`` on the prepared data; write models, metrics and logs.

    ``classifier_dir``: the domain classifier that scores the evaluations during training
    (``train.eval_every``), against the reference features in ``reference_dir`` (the
    ``reference`` stage's); without a classifier, images are scored by SWD alone.
    """
    cfg = resolve_train(params.train)
    # -- distribution first: a multi-worker strategy must exist before any TensorFlow op.
    strategy = make_strategy(cfg.strategy)
    per_replica_batch(cfg.batch, strategy)
    meta = checked_meta(Path(prepared_dir))  # the shards' faults first: the model follows meta
    out = out.for_this_worker()
    for key, value in ignored_knobs(params.train).items():
        _say(f"notice: {key}={value!r} is not read by variant {cfg.variant!r}; ignored")
    if not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()  # same seed, same losses on CPU

    # -- setup: everything that trains, its checkpoint, its data and its logs ----------
    run = build_training(params.model, cfg, meta.shape, strategy, params.seed,
                         num_classes=meta.num_classes)
    run_id = fingerprint(params, meta)
    checkpoints = Checkpoints(out.checkpoints, run.checkpointed(), run_id, say=_say)
    resumed = checkpoints.restore_or_start(cfg.steps)
    broadcast_from_chief(strategy, run.variables())
    start = int(run.step.numpy())
    if not resumed:
        checkpoints.save(start, [])  # what a run that diverges early falls back to
    grids = ProgressGrids(out.checkpoints / "grids")
    grids.start(start)
    data = iter(strategy.distribute_datasets_from_function(
        lambda ctx: training_stream(prepared_dir, cfg.batch, seed=params.seed,
                                    start=int(run.examples_seen.numpy()), input_context=ctx,
                                    with_labels=run.classes is not None)))
    # One TensorBoard run per configuration, so experiments do not pile into one curve.
    log = TrainingLog(out.curves, out.logs / f"{cfg.variant}-{run_id[:8]}", resume_at=start,
                      chief=is_chief())
    evaluations = start_evaluations(cfg, prepared_dir, classifier_dir, reference_dir, meta,
                                    params.seed, run.best, out.eval_curves,
                                    out.live if is_chief() else None, start)
    fixed_z = tf.random.stateless_normal([100, run.z_dim], seed=[params.seed, 7]).numpy()

    def fixed_samples() -> np.ndarray:
        x = run.sampler(generator_inputs(fixed_z, 0, run.classes), training=False)
        return to_uint8(x.numpy(), meta.is_image)

    def check_finite_and_log() -> None:
        if bad := log.flush():
            raise non_finite(f"step {bad[0]}: {bad[1]} is {bad[2]}", checkpoints.latest)

    def save_checkpoint(at: int) -> None:
        check_finite_and_log()  # every loss so far finite (then every weight, in save)
        run.train_seconds.assign(elapsed())
        checkpoints.save(at, [*run.generator.weights, *run.critic.weights])

    # -- loop ---------------------------------------------------------------------------
    t0, seconds0 = time.perf_counter(), float(run.train_seconds.numpy())
    eval_seconds = 0.0  # not training time

    def elapsed() -> float:
        return seconds0 + time.perf_counter() - t0 - eval_seconds

    stopped_early, diverged = False, None
    bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not is_chief(),
               dynamic_ncols=True)
    try:
        for s in range(start, cfg.steps):
            log.append(s + 1, _train_iteration(run, data, cfg, s, params.seed))
            bar.update(1)
            done = s + 1 == cfg.steps
            if (s + 1) % cfg.log_every == 0 or done:
                check_finite_and_log()
                bar.set_postfix(log.last_summary(), refresh=False)
            if (s + 1) % cfg.sample_every == 0 or done:
                log.image(s + 1, grids.draw(s + 1, fixed_samples()))
            if evaluations.due(s + 1, done):
                check_finite_and_log()  # never score a generator that has gone NaN
                eval_seconds += evaluations.run(s + 1, elapsed(), run.sampler, log)
            if (s + 1) % cfg.checkpoint_every == 0 or done:
                save_checkpoint(s + 1)
            if cfg.stop_when_valid and not meta.is_image and (s + 1) % cfg.check_every == 0:
                if is_valid_mask(fixed_samples()).all():
                    _say(f"step {s + 1}: every fixed-noise mask is valid; stopping early")
                    save_checkpoint(s + 1)
                    stopped_early = True
                    break
    except NonFiniteLossError as err:
        # A diverged run is a result (health: diverged), not a crash: a study counts it.
        diverged = {"step": s + 1, "reason": str(err).split(";")[0]}
        checkpoints.restore_latest()
        _say(f"warning: {err}; health: diverged, models saved from the last good "
             f"checkpoint (step {int(run.step.numpy())})")
    bar.close()
    wall = elapsed()
    if not grids.has(int(run.step.numpy())):  # stopped early between grids
        grids.draw(int(run.step.numpy()), fixed_samples())

    # -- save -----------------------------------------------------------------------------
    _save_models(run, params, meta, out)
    grids.publish(out.progress)
    summary = {**_summary(run, cfg.variant, log.last_values(), wall, stopped_early),
               "diverged_at_step": diverged and diverged["step"],
               "diverged_reason": diverged and diverged["reason"],
               **evaluations.summary(params.health, diverged=diverged is not None)}
    write_json(out.metrics, summary)
    log.close()
    evaluations.close()
    if not is_chief():
        shutil.rmtree(out.models.parent, ignore_errors=True)
    return summary


def _train_iteration(run: TrainingSetup, data, cfg, s: int, seed: int) -> dict:
    """Generator iteration ``s``: the critic updates, then the generator's; their metrics."""
    if cfg.lr_decay:
        for opt, spec in ((run.g_opt, cfg.generator), (run.c_opt, cfg.critic)):
            opt.learning_rate.assign(learning_rate(spec, cfg, s))
    n_critic = critic_iterations(s, cfg.n_critic, cfg.critic_warmup)
    first = critic_updates_before(s, cfg.n_critic, cfg.critic_warmup)
    for k in range(n_critic):
        c_metrics = run.steps.critic_update(
            next(data), tf.constant(update_seed(seed, s, CRITIC, k), tf.int64), first + k)
    for k in range(cfg.g_steps):
        g_metrics = run.steps.generator_step(
            tf.constant(update_seed(seed, s, GENERATOR, k), tf.int64))
    run.examples_seen.assign_add(n_critic * cfg.batch)
    run.step.assign(s + 1)
    # The curves' lr is the generator's; the critic's is in the same proportion to its own.
    return {**c_metrics, **g_metrics, "lr": learning_rate(cfg.generator, cfg, s)}


def _save_models(run: TrainingSetup, params: Params, meta: PreparedMeta,
                 out: TrainOutputs) -> None:
    """generator.keras (the sampler), critic.keras and the resolved config that made them."""
    out.models.mkdir(parents=True, exist_ok=True)
    save_model(with_stock_layers(run.sampler), out.models / "generator.keras")
    # Without an evaluation there is no best: the final generator stands in for it.
    best = run.best.generator if int(run.best.step.numpy()) >= 0 else run.sampler
    save_model(with_stock_layers(best), out.models / "generator_best.keras")
    save_model(with_stock_layers(run.critic), out.models / "critic.keras")
    resolved = {**to_dict(params), "model": to_dict(resolve_model(params.model, meta.shape)),
                "train": to_dict(resolve_train(params.train)),
                "ignored": ignored_knobs(params.train)}
    write_json(out.models / "train_config.json", resolved)


def _summary(run: TrainingSetup, variant: str, last: dict, wall: float,
             stopped_early: bool) -> dict:
    """``metrics/train.json``: the run's last losses and its whole-run speed."""
    return {
        "variant": variant,
        "steps": int(run.step.numpy()),
        "stopped_early": stopped_early,
        "critic_loss": last.get("critic_loss"),
        "generator_loss": last.get("generator_loss"),
        "wasserstein": last.get("wasserstein"),
        "penalty": last.get("penalty"),
        "wall_time_s": round(wall, 3),
        "images_per_s": round(int(run.examples_seen.numpy()) / max(wall, 1e-9), 1),
        "replicas": run.strategy.num_replicas_in_sync,
    }

