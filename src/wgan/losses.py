"""Adversarial losses, as pure functions of critic outputs.

Naming: ``d_real_logits`` / ``d_fake_logits`` are the critic (discriminator) outputs
on real and generated samples, shape ``[B]`` or ``[B, 1]``. Every loss returns
per-example values of shape ``[B]`` in float32; the training step reduces them
against the global batch, so nothing here knows about distribution.
A loss is an :class:`AdversarialLoss` pair, selected by name from :data:`LOSSES`.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

__all__ = [
    "AdversarialLoss",
    "LOSSES",
    "get_loss",
    "hinge_critic_loss",
    "hinge_generator_loss",
    "non_saturating_critic_loss",
    "non_saturating_generator_loss",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]


def _per_example(logits: tf.Tensor, name: str) -> tf.Tensor:
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank == 2 and logits.shape[-1] == 1:
        logits = logits[:, 0]
    if logits.shape.rank != 1:
        raise ValueError(f"{name}: expected critic outputs of shape [B] or [B, 1], "
                         f"got {logits.shape}")
    return tf.cast(logits, tf.float32)  # mixed precision: reduce in float32


# Non-saturating GAN. Goodfellow et al. 2014, "Generative Adversarial Nets"
# (arXiv:1406.2661), Sec. 3: G maximises log D(G(z)) instead of minimising log(1 - D(G(z))).

def non_saturating_critic_loss(d_real_logits: tf.Tensor, d_fake_logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy of the discriminator, from logits.

    L_D = -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))
        = softplus(-D(x)) + softplus(D(G(z)))

    Returns: per-example loss, shape [B].
    Raises: ValueError if the two inputs are not [B] / [B, 1] of equal B.
    """
    real = _per_example(d_real_logits, "d_real_logits")
    fake = _per_example(d_fake_logits, "d_fake_logits")
    return tf.nn.softplus(-real) + tf.nn.softplus(fake)


def non_saturating_generator_loss(d_fake_logits: tf.Tensor) -> tf.Tensor:
    """L_G = -log sigmoid(D(G(z))) = softplus(-D(G(z))). Returns shape [B]."""
    return tf.nn.softplus(-_per_example(d_fake_logits, "d_fake_logits"))


# Wasserstein GAN. Arjovsky et al. 2017, "Wasserstein GAN" (arXiv:1701.07875), Eq. 3 and
# Algorithm 1. The critic maximises E[D(x)] - E[D(G(z))], an estimate of W1 when D is
# 1-Lipschitz (enforced by clipping, a gradient penalty or a Lipschitz penalty).

def wasserstein_critic_loss(d_real_logits: tf.Tensor, d_fake_logits: tf.Tensor) -> tf.Tensor:
    """L_D = D(G(z)) - D(x) per example; its negative mean estimates W1.

    Returns: per-example loss, shape [B].
    """
    return _per_example(d_fake_logits, "d_fake_logits") - _per_example(
        d_real_logits, "d_real_logits"
    )


def wasserstein_generator_loss(d_fake_logits: tf.Tensor) -> tf.Tensor:
    """L_G = -D(G(z)). Returns shape [B]."""
    return -_per_example(d_fake_logits, "d_fake_logits")


# Hinge loss. Lim & Ye 2017, "Geometric GAN" (arXiv:1705.02894), as SNGAN uses it
# (Miyato et al. 2018, arXiv:1802.05957, Sec. 4): the critic is a margin classifier, the
# generator's loss is WGAN's.

def hinge_critic_loss(d_real_logits: tf.Tensor, d_fake_logits: tf.Tensor) -> tf.Tensor:
    """L_D = relu(1 − D(x)) + relu(1 + D(G(z))) per example.

    Returns: per-example loss, shape [B].
    """
    return (tf.nn.relu(1.0 - _per_example(d_real_logits, "d_real_logits"))
            + tf.nn.relu(1.0 + _per_example(d_fake_logits, "d_fake_logits")))


# The hinge generator loss is WGAN's, −D(G(z)); one function, two names for the table.
hinge_generator_loss = wasserstein_generator_loss


class AdversarialLoss(NamedTuple):
    critic: object
    generator: object


LOSSES: dict[str, AdversarialLoss] = {
    "non_saturating": AdversarialLoss(non_saturating_critic_loss, non_saturating_generator_loss),
    "wasserstein": AdversarialLoss(wasserstein_critic_loss, wasserstein_generator_loss),
    "hinge": AdversarialLoss(hinge_critic_loss, hinge_generator_loss),
}


def get_loss(name: str) -> AdversarialLoss:
    """Look a loss up by name; an unknown name lists the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
