"""Training checkpoints: which run a checkpoint belongs to, resuming it, saving only good state.

A checkpoint directory holds TensorFlow checkpoints of every object of
:meth:`wgan.training_setup.TrainingSetup.checkpointed` and ``fingerprint.json``: the hash
of everything that decides the weights (:func:`fingerprint`) and the checkpoint layout.
A run resumes only a checkpoint with its own fingerprint; any other is replaced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import tensorflow as tf

from wgan.config import NETWORKS, Params, resolve_train, to_dict, yaml_name
from wgan.files import write_json
from wgan.prepared.format import PreparedMeta
from wgan.variants import VARIANT_KNOBS, get_variant

__all__ = ["Checkpoints", "NonFiniteLossError", "fingerprint", "first_non_finite",
           "non_finite"]

# Knobs that change how a run is watched, not what it computes: a checkpoint written
# with other values of these can still be resumed.
_COSMETIC = ("steps", "log_every", "sample_every", "checkpoint_every", "check_every",
             "stop_when_valid", "strategy", "eval_every", "eval_n", "target_ratio")
# Raised when the checkpoint holds other objects, so that an older one is not resumed.
_LAYOUT = 3
STAMP = "fingerprint.json"


class NonFiniteLossError(RuntimeError):
    """A loss or weight became NaN or Inf; training stops, the last good checkpoint is kept."""


def non_finite(what: str, latest: str | None) -> NonFiniteLossError:
    """The error that stops a run at ``what``, naming the checkpoint it can go back to."""
    return NonFiniteLossError(f"{what}; stopped. The last good checkpoint is "
                              f"{latest or '(none yet)'}; lower train.lr or set train.grad_clip")


def fingerprint(params: Params, meta: PreparedMeta) -> str:
    """Hash of everything that determines the weights: the resolved train knobs the variant
    reads, the model, the data and the seed (``steps`` only when it sets the lr decay)."""
    train = resolve_train(params.train)
    read = get_variant(train.variant).knobs_read(train.lp_sampling)
    ignored = {k for k in _COSMETIC if not (k == "steps" and train.lr_decay)}
    ignored |= {yaml_name(k) for k in VARIANT_KNOBS if k not in read}
    train_dict = {k: v for k, v in to_dict(train).items() if k not in ignored}
    model_dict = to_dict(params.model)
    _as_layout_3(train_dict, model_dict)
    blob = json.dumps({"train": train_dict, "model": model_dict, "seed": params.seed,
                       "data": meta.sha256, "data_params": meta.params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _as_layout_3(train: dict, model: dict) -> None:
    """Write the knobs added since layout 3 into the hashed dicts so that a run computing
    what a layout-3 run computed keeps its fingerprint (its checkpoint still resumes): two
    networks with one optimizer hash as the shared ``train.*`` knobs did, two different ones
    as each network's; ``model.init`` only when it is not Keras' default; ``r1_every`` only
    when it is not 1 (every critic step); ``model.conditional`` only when true."""
    nets = {net: train.pop(net) for net in NETWORKS}
    for key in nets["generator"]:
        train.pop(key)
    train.update(nets["generator"] if nets["generator"] == nets["critic"] else nets)
    if train.get("r1_every") == 1:
        del train["r1_every"]
    if model["init"] == "keras":
        del model["init"]
    if not model["conditional"]:
        del model["conditional"]


def first_non_finite(variables: list) -> str | None:
    """The path of the first variable holding a NaN or Inf, or None."""
    for var in variables:
        if not bool(tf.reduce_all(tf.math.is_finite(var))):
            return var.path
    return None


_STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


def _damage(path: str) -> str | None:
    """Why checkpoint ``path`` cannot be restored, or None: every tensor is read back, which
    checks each one's stored CRC32C, so a truncated or altered file is found before any
    variable is overwritten."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
        reader.get_tensor(_STEP_KEY)
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as err:
        return " ".join(str(err).split())[:200]
    return None


class Checkpoints:
    """The checkpoints of one run (``tracked`` objects, run ``run_id``) in ``directory``."""

    def __init__(self, directory: Path, tracked: dict[str, object], run_id: str,
                 say=print) -> None:
        self.directory = Path(directory)
        self.manager = tf.train.CheckpointManager(tf.train.Checkpoint(**tracked),
                                                  str(self.directory), max_to_keep=2)
        self.stamp = {"fingerprint": run_id, "layout": _LAYOUT}
        self.say = say

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore_or_start(self, steps: int) -> bool:
        """Resume the newest readable checkpoint of this run and return True, else clear the
        directory and return False. A damaged checkpoint (truncated, flipped bytes) is
        skipped for the one before it, saying why. A checkpoint past ``steps`` (``train.steps``
        lowered after a run) cannot give the shorter run's weights, so that run starts fresh
        too."""
        if self.manager.checkpoints and self._stamp_matches():
            for path in reversed(self.manager.checkpoints):
                damage = _damage(path)
                if damage:
                    self.say(f"checkpoint {path} is damaged ({damage}); trying an older one")
                    continue
                at = int(tf.train.load_variable(path, _STEP_KEY))
                if at > steps:
                    self.say(f"checkpoint {path} is {at} steps in, past train.steps={steps}; "
                             "starting fresh (it is replaced at the first save)")
                    break
                self.manager.checkpoint.restore(path).assert_existing_objects_matched()
                self.say(f"resuming from {path}")
                return True
            else:
                self.say(f"no readable checkpoint in {self.directory}; starting fresh")
        self._clear()
        write_json(self.directory / STAMP, self.stamp)
        return False

    def restore_latest(self) -> None:
        """Go back to the newest checkpoint (after a NaN/Inf: the last good state)."""
        self.manager.checkpoint.restore(self.latest).assert_existing_objects_matched()

    def _stamp_matches(self) -> bool:
        """Whether the checkpoints were written by this run (same fingerprint and layout)."""
        stamp = self.directory / STAMP
        try:
            found = json.loads(stamp.read_text()) if stamp.is_file() else None
        except (OSError, ValueError) as err:
            self.say(f"{stamp} is unreadable ({err}); starting fresh")
            return False
        if found != self.stamp:
            self.say(f"checkpoint in {self.directory} was written under different params (or "
                     "by an older version); starting fresh (it is replaced at the first save)")
            return False
        return True

    def _clear(self) -> None:
        for path in self.manager.checkpoints:
            for file in Path(path).parent.glob(Path(path).name + ".*"):
                file.unlink()
        (self.directory / "checkpoint").unlink(missing_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True)

    def save(self, at: int, weights: list) -> None:
        """Save at step ``at``, unless a weight is NaN or Inf (an update can overflow after a
        finite loss, and the next loss would come too late to stop the save)."""
        bad = first_non_finite(weights)
        if bad:
            raise non_finite(f"step {at}: weight {bad} is not finite (the losses were), "
                             "not saved", self.latest)
        self.manager.save(checkpoint_number=at)
