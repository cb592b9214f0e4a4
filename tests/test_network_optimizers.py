"""One optimizer per network: resolution, refusals, the built optimizers, a real run, resume."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TINY_MODEL, TINY_TRAIN
from dvc.utils.hydra import apply_overrides

from wgan.checkpoints import fingerprint
from wgan.config import (
    NETWORKS,
    ParamsError,
    ignored_knobs,
    load_params,
    parse_params,
    resolve_train,
    to_dict,
)
from wgan.prepared.format import read_meta
from wgan.train import TrainOutputs, train
from wgan.training_setup import build_training


def _resolved(**train) -> dict:
    resolved = resolve_train(parse_params({"train": train}).train)
    return {net: to_dict(getattr(resolved, net)) for net in NETWORKS}


def _opt(optimizer, lr, beta1=None, beta2=None) -> dict:
    return {"optimizer": optimizer, "lr": lr, "beta1": beta1, "beta2": beta2}


@pytest.mark.parametrize(
    ("train", "generator", "critic"),
    [
        # Nothing set: both networks take the variant's defaults (wgan-gp: Adam 1e-4, 0.5, 0.9).
        ({}, _opt("adam", 1e-4, 0.5, 0.9), _opt("adam", 1e-4, 0.5, 0.9)),
        # TTUR: the network's own value beats the shared one, which beats the variant's.
        ({"lr": 2e-4, "critic": {"lr": 4e-4}}, _opt("adam", 2e-4, 0.5, 0.9),
         _opt("adam", 4e-4, 0.5, 0.9)),
        ({"beta2": 0.99, "generator": {"beta2": 0.95}}, _opt("adam", 1e-4, 0.5, 0.95),
         _opt("adam", 1e-4, 0.5, 0.99)),
        # WGAN_GP_MASK: Adam generator, RMSprop critic (which carries no betas).
        ({"generator": {"optimizer": "adam"}, "critic": {"optimizer": "rmsprop"}},
         _opt("adam", 1e-4, 0.5, 0.9), _opt("rmsprop", 1e-4)),
        # wgan's RMSprop, Adam for one network: Adam's betas (no variant betas to take).
        ({"variant": "wgan", "critic": {"optimizer": "adam", "lr": 1e-4}}, _opt("rmsprop", 5e-5),
         _opt("adam", 1e-4, 0.5, 0.999)),
        # A shared beta that wgan's RMSprop ignores is read by the network choosing Adam.
        ({"variant": "wgan", "beta1": 0.0, "generator": {"optimizer": "adam"}},
         _opt("adam", 5e-5, 0.0, 0.999), _opt("rmsprop", 5e-5)),
        # A spectrally normalised critic (sngan: Adam 2e-4, 0.5, 0.999) at its own TTUR rate.
        ({"variant": "sngan", "generator": {"lr": 1e-4}, "critic": {"lr": 4e-4}},
         _opt("adam", 1e-4, 0.5, 0.999), _opt("adam", 4e-4, 0.5, 0.999)),
    ],
)
def test_each_network_takes_its_own_value_then_the_shared_one_then_the_variants(
        train, generator, critic):
    assert _resolved(**train) == {"generator": generator, "critic": critic}


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"critic": {"optimizer": "rmsprop", "beta1": 0.9}},
         r"^train.critic.beta1: value 0.9 is only used by optimizer 'adam', but the optimizer is "
         r"'rmsprop'; set train.critic.beta1: null or train.critic.optimizer: adam$"),
        ({"optimizer": "sgd", "generator": {"beta2": 0.99}},
         r"^train.generator.beta2: value 0.99 .* optimizer is 'sgd'; set train.generator.beta2"),
        # Shared betas beside a shared RMSprop that no network overrides with Adam.
        ({"optimizer": "rmsprop", "beta1": 0.9, "critic": {"optimizer": "sgd"}},
         r"^train.beta1: value 0.9 is only used by optimizer 'adam'"),
    ],
)
def test_betas_beside_another_explicit_optimizer_are_refused_per_network(train, message):
    with pytest.raises(ParamsError, match=message):
        parse_params({"train": train})


def test_a_network_choosing_adam_reads_the_shared_betas_beside_a_shared_rmsprop():
    params = parse_params({"train": {"optimizer": "rmsprop", "beta1": 0.9,
                                     "generator": {"optimizer": "adam"}}})
    assert resolve_train(params.train).generator.beta1 == 0.9
    assert ignored_knobs(params.train) == {}


@pytest.mark.parametrize(
    ("train", "ignored"),
    [
        ({"lr": 1e-3, "generator": {"lr": 1e-4}, "critic": {"lr": 4e-4}}, {"train.lr": 1e-3}),
        ({"variant": "wgan", "critic": {"beta1": 0.9}}, {"train.critic.beta1": 0.9}),
        ({"variant": "wgan", "beta2": 0.9, "critic": {"optimizer": "adam"}}, {}),
        ({"lr": 1e-3, "critic": {"lr": 4e-4}}, {}),
        # Both networks choose another optimizer: the shared Adam and its beta are unused.
        ({"optimizer": "adam", "beta1": 0.9, "generator": {"optimizer": "rmsprop"},
          "critic": {"optimizer": "sgd"}}, {"train.optimizer": "adam", "train.beta1": 0.9}),
    ],
)
def test_optimizer_knobs_no_network_reads_are_listed_as_ignored(train, ignored):
    assert ignored_knobs(parse_params({"train": train}).train) == ignored


def test_dvc_set_override_of_a_network_knob_parses(tmp_path):
    # `dvc exp run -S train.critic.lr=4e-4` edits params.yaml with this DVC function.
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = resolve_train(load_params(path).train)
    apply_overrides(path, ["train.critic.lr=4e-4", "train.generator.optimizer=rmsprop"])
    train = resolve_train(load_params(path).train)
    assert before.critic.lr != 4e-4 and before.generator.optimizer != "rmsprop"
    assert (train.critic.lr, train.critic.optimizer) == (4e-4, before.critic.optimizer)
    assert (train.generator.lr, train.generator.optimizer) == (before.generator.lr, "rmsprop")


def _sgd_deltas(g_lr: float, c_lr: float) -> dict[str, list[np.ndarray]]:
    """Each network's trainable-weight change over one critic step then one generator step,
    both networks on plain SGD (update = −lr·gradient) with their own learning rates."""
    params = parse_params({
        "train": {"variant": "wgan-gp", "optimizer": "sgd", "batch": 8, "jit_compile": False,
                  "generator": {"lr": g_lr}, "critic": {"lr": c_lr}},
        "model": TINY_MODEL})
    run = build_training(params.model, resolve_train(params.train), (28, 28, 1),
                         tf.distribute.get_strategy(), seed=0)
    nets = {"generator": run.generator, "critic": run.critic}
    before = {n: [w.numpy() for w in m.trainable_weights] for n, m in nets.items()}
    real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    run.steps.critic_step(tf.constant(real), tf.constant([0, 1], tf.int64))
    run.steps.generator_step(tf.constant([0, 2], tf.int64))
    return {n: [w.numpy() - b for w, b in zip(m.trainable_weights, before[n], strict=True)]
            for n, m in nets.items()}


def test_each_network_steps_with_its_own_learning_rate():
    # Large rates, so that the updates stand far above the weights' float32 rounding.
    base = _sgd_deltas(g_lr=0.5, c_lr=0.5)
    faster_critic = _sgd_deltas(g_lr=0.5, c_lr=1.0)
    faster_generator = _sgd_deltas(g_lr=1.0, c_lr=0.5)

    def assert_scaled(got, expected, factor):
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, factor * e, rtol=1e-3, atol=1e-6)

    assert any(np.abs(d).max() > 0 for d in base["critic"] + base["generator"])
    # The critic steps first: its update scales with its own lr only.
    assert_scaled(faster_critic["critic"], base["critic"], 2.0)
    assert_scaled(faster_generator["critic"], base["critic"], 1.0)
    # Same critic, same gradient: the generator's update scales with its own lr.
    assert_scaled(faster_generator["generator"], base["generator"], 2.0)


def _checkpointed_optimizers(checkpoints) -> dict[str, tuple[float, int]]:
    """Each network's optimizer in the newest checkpoint: (its learning rate, its slot
    variables per trained variable: Adam keeps 2, RMSprop without momentum 1)."""
    reader = tf.train.load_checkpoint(str(checkpoints))
    names = reader.get_variable_to_shape_map()
    out = {}
    for net, opt in (("generator", "g_opt"), ("critic", "c_opt")):
        lr = float(reader.get_tensor(f"{opt}/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"))
        trained = sum(n.startswith(f"{opt}/_trainable_variables/") for n in names)
        slots = sum(n.startswith(f"{opt}/_variables/") for n in names)
        out[net] = (lr, slots // trained)
    return out


def test_a_real_run_records_and_uses_each_networks_optimizer(tmp_path, digits):
    out = TrainOutputs.under(tmp_path)
    nets = {"generator": {"optimizer": "adam", "lr": 1e-3},
            "critic": {"optimizer": "rmsprop", "lr": 4e-3}}
    params = parse_params({"train": {**TINY_TRAIN, "steps": 4, "lr_decay": True, **nets},
                           "model": TINY_MODEL})
    train(params, digits, out)
    written = json.loads((out.models / "train_config.json").read_text())["train"]
    assert written["generator"] == _opt("adam", 1e-3, 0.5, 0.9)
    assert written["critic"] == _opt("rmsprop", 4e-3)
    # lr_decay moved both optimizers, each from its own lr: the last step used 1/4 of it.
    (g_lr, g_slots), (c_lr, c_slots) = _checkpointed_optimizers(out.checkpoints).values()
    assert (g_lr, c_lr) == pytest.approx((2.5e-4, 1e-3), rel=1e-5)
    assert (g_slots, c_slots) == (2, 1)  # Adam trained the generator, RMSprop the critic
    curve = [float(r.split("\t")[-1]) for r in out.curves.read_text().splitlines()[1:]]
    assert curve == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4], rel=1e-5)  # the generator's


def _layout_3_fingerprint(params, meta) -> str:
    """The fingerprint as computed before per-network optimizers, model.init,
    train.r1_every and model.conditional existed."""
    train = to_dict(resolve_train(params.train))
    for key in ("generator", "critic", "steps", "log_every", "sample_every", "checkpoint_every",
                "check_every", "stop_when_valid", "strategy", "eval_every", "eval_n",
                "target_ratio", "clip", "lp_sampling", "perturb", "r1_every"):
        train.pop(key)
    model = {k: v for k, v in to_dict(params.model).items() if k not in ("init", "conditional")}
    blob = json.dumps({"train": train, "model": model, "seed": params.seed, "data": meta.sha256,
                       "data_params": meta.params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def test_fingerprint_covers_each_networks_optimizer_and_keeps_older_stamps(digits):
    meta = read_meta(digits)

    def fp(**train):
        return fingerprint(parse_params({"train": {**TINY_TRAIN, **train},
                                         "model": TINY_MODEL}), meta)

    default = fp()
    assert fp(critic={"lr": 4e-4}) != default
    assert fp(generator={"optimizer": "rmsprop"}) != default
    assert fp(critic={"beta2": 0.99}) != fp(generator={"beta2": 0.99})
    # Same effective values, however spelled: the same run.
    assert fp(generator={"lr": 1e-4}) == default  # wgan-gp's own lr
    assert fp(generator={"lr": 3e-4}, critic={"lr": 3e-4}) == fp(lr=3e-4)
    # A stamp written before train.generator/critic and model.init still matches.
    params = parse_params({"train": {**TINY_TRAIN}, "model": TINY_MODEL})
    assert default == _layout_3_fingerprint(params, meta)
    # So does gan-r1's (its r1_every 1, every critic step, is what it computed then).
    r1 = parse_params({"train": {**TINY_TRAIN, "variant": "gan-r1"}, "model": TINY_MODEL})
    assert fp(variant="gan-r1") == _layout_3_fingerprint(r1, meta)
    assert fp(variant="gan-r1", r1_every=2) != fp(variant="gan-r1")
    conditional = parse_params({"train": TINY_TRAIN, "model": {**TINY_MODEL, "conditional": True}})
    assert fingerprint(conditional, meta) != default


def test_a_run_resumes_its_own_optimizers_and_restarts_for_others(tmp_path, digits, capsys):
    out = TrainOutputs.under(tmp_path)

    def run(steps, **nets):
        return train(parse_params({"train": {**TINY_TRAIN, "steps": steps, **nets},
                                   "model": TINY_MODEL}), digits, out)

    run(2, critic={"lr": 4e-4})
    capsys.readouterr()
    run(4, critic={"lr": 4e-4})
    assert "resuming from" in capsys.readouterr().err
    assert run(4, critic={"lr": 2e-4})["steps"] == 4
    assert "different params (or by an older version); starting fresh" in capsys.readouterr().err
