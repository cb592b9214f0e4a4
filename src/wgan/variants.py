"""The variants table: everything that makes ``train.variant`` what it is, in one entry.

A variant names its adversarial loss (:data:`wgan.losses.LOSSES`), its penalty
(:data:`wgan.penalties.PENALTIES`) and how the penalty's points are drawn, the
constraint on the critic's weights (clipping or spectral normalization), its
paper's defaults for the training knobs left ``null``, the variant-specific knobs it
reads and the critics it allows. Config validation (:mod:`wgan.config`), the step
builder (:mod:`wgan.steps`) and the checkpoint fingerprint (:mod:`wgan.checkpoints`)
read this table; nothing else names a variant. Adding a variant is one entry here (plus
its loss or penalty function when new); the tests parametrized over :data:`VARIANTS`
pick it up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["Variant", "VARIANTS", "VARIANT_KNOBS", "get_variant"]

# Training knobs that only some variants read (field names of wgan.config.TrainConfig).
# Any other variant ignores them: a swept value does not stop its run, nor force a new
# checkpoint fingerprint.
VARIANT_KNOBS = ("clip", "penalty_weight", "lp_sampling", "perturb", "r1_every")


@dataclass(frozen=True)
class Variant:
    """One training recipe.

    ``points``: how the penalty's points are drawn — ``interpolate`` (x̂ between a real
    and a fake sample), ``real`` (the real batch itself), or ``lp_sampling`` to let
    ``train.lp_sampling`` choose between ``interpolate`` and ``perturb`` (reals and fakes
    plus noise); None without a penalty. ``critic_constraint``: ``clip`` (WGAN weight
    clipping to ``train.clip``, which it must read), ``spectral``
    (:mod:`wgan.spectral_norm` on every conv/dense layer of the critic) or ``none``.
    ``reads``: the :data:`VARIANT_KNOBS` it uses (``perturb`` only when the points are
    drawn by perturbation). ``critic_norms``: the ``model.critic_norm`` values it allows;
    ``critic_norm_reason`` says what the others would break.
    """

    loss: str
    penalty: str
    paper: str
    defaults: Mapping[str, Any]
    points: str | None = None
    critic_constraint: str = "none"
    reads: frozenset[str] = frozenset()
    critic_norms: tuple[str, ...] = ("none", "layer", "batch")
    critic_norm_reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        unknown = set(self.reads) - set(VARIANT_KNOBS)
        if unknown:
            raise ValueError(f"Variant.reads: {sorted(unknown)} are not in VARIANT_KNOBS")
        if self.critic_constraint not in ("none", "clip", "spectral"):
            raise ValueError(f"Variant.critic_constraint: unknown {self.critic_constraint!r}")
        if (self.critic_constraint == "clip") != ("clip" in self.reads):
            raise ValueError("Variant: critic_constraint 'clip' and reading 'clip' go together")

    def knobs_read(self, lp_sampling: str) -> frozenset[str]:
        """The variant-specific knobs this variant reads when ``train.lp_sampling`` is given."""
        if "perturb" in self.reads and self.point_sampling(lp_sampling) != "perturb":
            return self.reads - {"perturb"}
        return self.reads

    def point_sampling(self, lp_sampling: str) -> str | None:
        """``interpolate``, ``perturb`` or None: how this variant draws penalty points."""
        return lp_sampling if self.points == "lp_sampling" else self.points


_ADAM_GP = dict(optimizer="adam", lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5)
_PER_SAMPLE_PENALTY = ("breaks the per-sample gradient penalty (BatchNorm couples the samples "
                       "of a batch; Gulrajani et al. 2017, Sec. 4)")
# A normalisation layer divides by a statistic of its input, so its Lipschitz constant is
# not bounded by the weights: the critic would no longer be 1-Lipschitz.
_SPECTRAL_ONLY = ("undoes the Lipschitz bound of spectral normalization (it rescales by a "
                  "statistic of the activations; Miyato et al. 2018 use no other "
                  "normalisation in the critic)")

VARIANTS: Mapping[str, Variant] = MappingProxyType({
    "gan": Variant(
        loss="non_saturating", penalty="none",
        paper="DCGAN: Radford et al. 2015, arXiv:1511.06434",
        defaults=dict(optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999, n_critic=1)),
    "wgan": Variant(
        loss="wasserstein", penalty="none",
        paper="WGAN: Arjovsky et al. 2017, arXiv:1701.07875 (Algorithm 1, weight clipping)",
        defaults=dict(optimizer="rmsprop", lr=5e-5, n_critic=5, clip=0.01),
        critic_constraint="clip", reads=frozenset({"clip"})),
    "wgan-gp": Variant(
        loss="wasserstein", penalty="gp", points="interpolate",
        paper="WGAN-GP: Gulrajani et al. 2017, arXiv:1704.00028",
        defaults=dict(_ADAM_GP, penalty_weight=10.0),
        reads=frozenset({"penalty_weight"}),
        critic_norms=("none", "layer"), critic_norm_reason=_PER_SAMPLE_PENALTY),
    "wgan-lp": Variant(
        loss="wasserstein", penalty="lp", points="lp_sampling",
        paper="WGAN-LP: Petzka et al. 2017, arXiv:1709.08894 (same optimizer as GP)",
        defaults=dict(_ADAM_GP, penalty_weight=10.0),
        reads=frozenset({"penalty_weight", "lp_sampling", "perturb"}),
        critic_norms=("none", "layer"), critic_norm_reason=_PER_SAMPLE_PENALTY),
    "wgan-sn": Variant(
        loss="wasserstein", penalty="none", critic_constraint="spectral",
        paper="WGAN with a spectrally normalised critic: Miyato et al. 2018, arXiv:1802.05957 "
              "(WGAN-GP's optimizer, their setting A)",
        defaults=_ADAM_GP,
        critic_norms=("none",), critic_norm_reason=_SPECTRAL_ONLY),
    # The authors' own SN-DCGAN run, for the standard CNN this dcgan follows
    # (pfnet-research/chainer-gan-lib, example.sh: n_dis 1, β1 0.5, β2 0.999, its default
    # α 2e-4): setting C of the paper's Table 1, the setting of the SN-GANs' reported scores.
    "sngan": Variant(
        loss="hinge", penalty="none", critic_constraint="spectral",
        paper="SNGAN: Miyato et al. 2018, arXiv:1802.05957 (hinge loss; Table 1, setting C)",
        defaults=dict(optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999, n_critic=1),
        critic_norms=("none",), critic_norm_reason=_SPECTRAL_ONLY),
    # The defaults of the authors' code (LMescheder/GAN_stability, configs/default.yaml):
    # RMSprop, lr 1e-4 for both networks, d_steps 1, reg_type real, reg_param γ = 10.
    "gan-r1": Variant(
        loss="non_saturating", penalty="r1", points="real",
        paper="R1: Mescheder et al. 2018, arXiv:1801.04406 (Sec. 4.1)",
        defaults=dict(optimizer="rmsprop", lr=1e-4, n_critic=1, penalty_weight=10.0),
        reads=frozenset({"penalty_weight", "r1_every"}),
        critic_norms=("none", "layer"), critic_norm_reason=_PER_SAMPLE_PENALTY),
})


def get_variant(name: str) -> Variant:
    """Look a variant up by name; an unknown name lists the valid ones."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]

