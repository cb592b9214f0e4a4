"""Noise seeds of the training loop: one per update, never shared within or across runs."""

import dataclasses

import pytest

from wgan.config import TrainConfig
from wgan.distribution import CRITIC, GENERATOR, MAX_UPDATES_PER_STEP, update_seed
from wgan.training_setup import critic_iterations


def _bound(name: str) -> int:
    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return field.metadata["max"]


def test_the_params_cannot_ask_for_more_updates_per_step_than_the_seeds_hold():
    assert _bound("n_critic") <= MAX_UPDATES_PER_STEP
    assert _bound("g_steps") <= MAX_UPDATES_PER_STEP
    assert critic_iterations(0, 1, warmup=True) <= MAX_UPDATES_PER_STEP
    assert _bound("steps") <= 10**9  # the last step tested below


@pytest.mark.parametrize("step", [0, 1, 10**9 - 2])
def test_update_seeds_never_collide_at_the_bounds(step):
    # Every update of two consecutive steps at the largest n_critic and g_steps allowed:
    # the old layout (s*1024 + k, s*1024 + 1000 + k) collided here once g_steps > 24.
    seeds = [update_seed(7, s, kind, k) for s in (step, step + 1)
             for kind in (CRITIC, GENERATOR) for k in range(MAX_UPDATES_PER_STEP)]
    assert len(set(seeds)) == len(seeds) == 4 * MAX_UPDATES_PER_STEP
    # A run seeded otherwise never draws these, whatever its step.
    other = {update_seed(s, step, kind, k) for s in (6, 8, 2**31 - 1)
             for kind in (CRITIC, GENERATOR) for k in (0, 23, 24, 999)}
    assert not other & set(seeds)


def test_update_seeds_keep_the_layout_earlier_runs_used():
    # Default runs (n_critic ≤ 1000, g_steps ≤ 24) draw the noise they always drew, so a
    # run's results do not change with this version.
    assert update_seed(3, 5, CRITIC, 4) == (3, 5 * 1024 + 4)
    assert update_seed(3, 5, GENERATOR, 0) == (3, 5 * 1024 + 1000)
    assert update_seed(3, 5, GENERATOR, 24) == (3 + 2**31, 5 * 1000 + 24)


def test_update_seed_refuses_what_it_cannot_keep_apart():
    with pytest.raises(ValueError, match="out of range"):
        update_seed(0, 0, CRITIC, MAX_UPDATES_PER_STEP)
    with pytest.raises(ValueError, match="kind"):
        update_seed(0, 0, "penalty", 0)
