"""Losses and penalties against hand-computed and analytic cases."""

import numpy as np
import pytest
import tensorflow as tf

from wgan.distribution import global_std
from wgan.losses import LOSSES, get_loss
from wgan.penalties import (
    PENALTIES,
    get_penalty,
    gradient_penalty,
    interpolates,
    lipschitz_penalty,
    no_penalty,
    perturbed,
    r1_penalty,
)

# One 4-value input shared by every loss (TF-GAN's pattern).
REAL = tf.constant([1.0, -0.5, 2.0, 0.2])
FAKE = tf.constant([3.0, 2.5, 4.0, 3.0])


def _softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.parametrize(
    ("name", "critic_mean", "generator_mean"),
    [
        # Wasserstein: d = mean(fake) - mean(real) = 3.125 - 0.675, g = -mean(fake).
        ("wasserstein", 3.125 - 0.675, -3.125),
        ("non_saturating",
         float(np.mean(_softplus(-REAL.numpy()) + _softplus(FAKE.numpy()))),
         float(np.mean(_softplus(-FAKE.numpy())))),
        # Hinge: relu(1 − real) = [0, 1.5, 0, 0.8], relu(1 + fake) = [4, 3.5, 5, 4].
        ("hinge", (2.3 + 16.5) / 4, -3.125),
    ],
)
def test_losses_match_hand_computed_values(name, critic_mean, generator_mean):
    loss = get_loss(name)
    d = loss.critic(REAL, FAKE)
    g = loss.generator(FAKE)
    assert d.shape == [4] and g.shape == [4]
    assert float(tf.reduce_mean(d)) == pytest.approx(critic_mean, rel=1e-6)
    assert float(tf.reduce_mean(g)) == pytest.approx(generator_mean, rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_properties(name):
    loss = get_loss(name)
    # [B, 1] critic outputs are accepted, float16 is reduced in float32.
    assert loss.critic(REAL[:, None], FAKE[:, None]).shape == [4]
    assert loss.critic(tf.cast(REAL, tf.float16), tf.cast(FAKE, tf.float16)).dtype == tf.float32
    with pytest.raises(ValueError, match="shape"):
        loss.critic(tf.zeros([2, 3]), tf.zeros([2, 3]))


def test_non_saturating_generator_keeps_its_gradient():
    """The non-saturating G loss keeps a gradient where log(1 - D) would vanish."""
    fake = tf.Variable([-20.0])
    with tf.GradientTape() as tape:
        loss = get_loss("non_saturating").generator(fake)
    assert abs(float(tape.gradient(loss, fake)[0])) > 0.99


def _linear_critic(w):
    w = tf.constant(w, tf.float32)
    return lambda x: tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]) * tf.reshape(w, [1, -1]), 1)


@pytest.mark.parametrize(
    ("w", "gp", "lp"),
    [
        ([2.0, 0.0, 0.0, 0.0], 1.0, 1.0),            # ‖w‖ = 2: both (2 − 1)²
        ([2.0, 2.0, 2.0, 2.0], 9.0, 9.0),            # ‖w‖ = 4: both (4 − 1)²
        ([0.3, 0.0, 0.4, 0.0], 0.25, 0.0),           # ‖w‖ = 0.5 < 1: GP > 0, LP = 0
    ],
)
def test_penalties_on_a_linear_critic(w, gp, lp):
    """D(x) = w·x has ‖∇D‖ = ‖w‖ everywhere: GP = (‖w‖−1)², LP = max(0, ‖w‖−1)²."""
    points = tf.random.normal([5, 2, 2, 1])
    gp_values, norms = gradient_penalty(_linear_critic(w), points)
    lp_values, _ = lipschitz_penalty(_linear_critic(w), points)
    assert gp_values.shape == [5]
    np.testing.assert_allclose(norms, np.linalg.norm(w), rtol=1e-5)
    np.testing.assert_allclose(gp_values, gp, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lp_values, lp, rtol=1e-4, atol=1e-6)


def test_hinge_critic_loss_is_zero_beyond_the_margins():
    # Reals scored ≥ 1 and fakes ≤ −1 cost nothing; inside the margin the loss is linear.
    d = get_loss("hinge").critic(tf.constant([1.0, 3.0, 0.5]), tf.constant([-1.0, -4.0, 0.0]))
    np.testing.assert_allclose(d, [0.0, 0.0, 0.5 + 1.0])


@pytest.mark.parametrize("w", [[2.0, 0.0, 0.0, 0.0], [0.3, -1.0, 0.4, 2.0]])
def test_r1_on_a_linear_critic_is_half_the_squared_weight_norm(w):
    """D(x) = w·x has ∇D = w everywhere: R1 = ½‖w‖², so γ·R1 = γ/2·‖w‖²."""
    values, norms = r1_penalty(_linear_critic(w), tf.random.normal([5, 2, 2, 1]))
    np.testing.assert_allclose(values, 0.5 * np.sum(np.square(w)), rtol=1e-5)
    np.testing.assert_allclose(norms, np.linalg.norm(w), rtol=1e-5)


def test_r1_on_a_quadratic_critic_depends_on_the_point():
    """D(x) = ½xᵀAx has ∇D(x) = ½(A + Aᵀ)x: R1(x) = ½‖½(A + Aᵀ)x‖², per point."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3)).astype(np.float32)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    values, _ = r1_penalty(lambda p: 0.5 * tf.einsum("bi,ij,bj->b", p, a, p), tf.constant(x))
    grads = x @ (0.5 * (a + a.T))
    np.testing.assert_allclose(values, 0.5 * np.sum(grads**2, axis=1), rtol=1e-5)


def test_penalty_target_and_zero_gradient_are_finite():
    critic = _linear_critic([2.0, 2.0, 2.0, 2.0])
    values, _ = gradient_penalty(critic, tf.ones([3, 4]), target=2.0)
    np.testing.assert_allclose(values, 4.0, rtol=1e-5)  # (4 − 2)²
    # A critic with zero gradient: the ε inside the sqrt keeps the penalty's gradient finite.
    w = tf.Variable(tf.zeros([4]))
    with tf.GradientTape() as tape:
        values, _ = gradient_penalty(lambda x: tf.reduce_sum(x * w, 1), tf.ones([3, 4]))
        total = tf.reduce_sum(values)
    assert np.all(np.isfinite(tape.gradient(total, w).numpy()))


def test_no_penalty_is_zero_and_registry_lookup():
    values, norms = no_penalty(lambda x: x, tf.ones([3, 4]))
    assert values.shape == [3] and float(tf.reduce_sum(values)) == 0.0
    assert set(PENALTIES) == {"none", "gp", "lp", "r1"}
    with pytest.raises(ValueError, match="gp"):
        get_penalty("spectral")
    with pytest.raises(ValueError, match="wasserstein"):
        get_loss("least_squares")


def test_interpolates_use_one_alpha_per_example():
    real, fake = tf.ones([3, 2, 2, 1]), tf.zeros([3, 2, 2, 1])
    alpha = tf.constant([0.0, 0.25, 1.0])
    out = interpolates(real, fake, alpha).numpy()
    for i, a in enumerate(alpha.numpy()):
        np.testing.assert_allclose(out[i], a)  # every pixel of example i uses the same α
    with pytest.raises(ValueError, match=r"\[B\]"):
        interpolates(real, fake, tf.zeros([3, 1]))


def test_perturbed_adds_scaled_noise_to_both_batches():
    real, fake = tf.constant([[1.0], [3.0]]), tf.constant([[5.0], [7.0]])
    noise = tf.ones([4, 1])
    out = perturbed(real, fake, noise, scale=0.5, sigma=tf.constant(2.0)).numpy()
    np.testing.assert_allclose(out[:, 0], np.array([1, 3, 5, 7]) + 0.5 * 2.0, rtol=1e-6)


def test_global_std_is_the_std_of_every_replica_batch_together(two_cpus):
    values = np.array([1.0, 3.0, 5.0, 7.0, 2.0, 10.0], np.float32)
    assert float(global_std(tf.constant(values))) == pytest.approx(np.std(values), rel=1e-6)
    halves = two_cpus.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(values[3 * ctx.replica_id_in_sync_group:][:3]))
    per_replica = two_cpus.run(tf.function(global_std), (halves,))
    for sigma in two_cpus.experimental_local_results(per_replica):
        assert float(sigma) == pytest.approx(np.std(values), rel=1e-6)  # not each half's
