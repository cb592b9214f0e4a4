"""Typed, validated configuration read from ``params.yaml``.

One frozen dataclass per ``params.yaml`` section. :func:`load_params` checks the
whole file before any work starts: an unknown key, a wrong type, an out-of-range
value or an unknown choice raises :class:`ParamsError` naming the key path, the
bad value and what is allowed. Range and choice rules live in each field's
metadata (``choices``, ``min``, ``max``) so the rule and the default sit together.

``train.lambda`` is spelled ``lambda`` in YAML (so ``dvc exp run -S train.lambda=10``
works) and ``penalty_weight`` in code, because ``lambda`` is a Python keyword.
Training knobs left ``null`` take the chosen variant's paper defaults
(:data:`VARIANT_DEFAULTS`) in :func:`resolve_train`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ParamsError",
    "Params",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "SampleConfig",
    "ClassifierConfig",
    "EvaluateConfig",
    "VARIANTS",
    "VARIANT_DEFAULTS",
    "load_params",
    "parse_params",
    "dcgan_plan",
    "resolve_train",
    "to_dict",
]

VARIANTS = ("gan", "wgan", "wgan-gp", "wgan-lp")
FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

# Paper defaults, applied to every train knob the user left null.
# gan: DCGAN (Radford et al. 2015, arXiv:1511.06434). wgan: Arjovsky et al. 2017
# (arXiv:1701.07875), Algorithm 1. wgan-gp: Gulrajani et al. 2017 (arXiv:1704.00028).
# wgan-lp: Petzka et al. 2017 (arXiv:1709.08894), same optimiser as GP.
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "gan": dict(optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999, n_critic=1),
    "wgan": dict(optimizer="rmsprop", lr=5e-5, n_critic=5, clip=0.01),
    "wgan-gp": dict(optimizer="adam", lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5,
                    penalty_weight=10.0),
    "wgan-lp": dict(optimizer="adam", lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5,
                    penalty_weight=10.0),
}


class ParamsError(ValueError):
    """A ``params.yaml`` value is missing, unknown, mistyped or out of range."""


def _choice(*values: Any, default: Any) -> Any:
    return field(default=default, metadata={"choices": values})


def _ranged(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass(frozen=True)
class MnistConfig:
    source: str = _choice("bundled", "download", "local", default="bundled")


@dataclass(frozen=True)
class ImageFolderConfig:
    """Shared by CelebA and a user's own folder/zip of images."""

    path: str = "data/raw/celeba"
    crop: int | None = _ranged(108, 1)
    resize: int = _ranged(64, 4, 1024)
    filter: str = _choice(*FILTERS, default="bicubic")
    test_fraction: float = _ranged(0.1, 0.0, 0.9)


@dataclass(frozen=True)
class MaskConfig:
    path: str = "data/raw/mask_data.pkl"
    length: int = _ranged(8192, 2)
    test_fraction: float = _ranged(0.1, 0.0, 0.9)


@dataclass(frozen=True)
class DataConfig:
    name: str = _choice("mnist", "cifar10", "celeba", "folder", "mask", default="mnist")
    raw_dir: str = "data/raw"
    shards: int = _ranged(4, 1, 4096)
    workers: int | None = _ranged(None, 1, 512)
    mnist: MnistConfig = field(default_factory=MnistConfig)
    celeba: ImageFolderConfig = field(default_factory=ImageFolderConfig)
    folder: ImageFolderConfig = field(
        default_factory=lambda: ImageFolderConfig(path="data/raw/images", crop=None)
    )
    mask: MaskConfig = field(default_factory=MaskConfig)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = _choice("auto", "dcgan", "mlp", default="auto")
    z_dim: int | None = _ranged(None, 1, 100_000)  # null: 100 for dcgan, 1000 for mlp
    base_channels: int | None = _ranged(None, 1, 4096)  # null: 32 for 28×28, else 64
    critic_norm: str = _choice("none", "layer", "batch", default="none")
    mlp_hidden: int = _ranged(4096, 1)


@dataclass(frozen=True)
class TrainConfig:
    variant: str = _choice(*VARIANTS, default="wgan-gp")
    steps: int = _ranged(2500, 1)
    batch: int = _ranged(64, 1)
    n_critic: int | None = _ranged(None, 1, 1000)
    g_steps: int = _ranged(1, 1, 1000)
    critic_warmup: bool = False
    optimizer: str | None = _choice(None, "adam", "rmsprop", default=None)
    lr: float | None = _ranged(None, 0.0, 1.0)
    beta1: float | None = _ranged(None, 0.0, 0.999999)
    beta2: float | None = _ranged(None, 0.0, 0.999999)
    lr_decay: bool = False
    clip: float | None = _ranged(None, 0.0)
    penalty_weight: float | None = _ranged(None, 0.0)
    lp_sampling: str = _choice("interpolate", "perturb", default="interpolate")
    perturb: float = _ranged(0.5, 0.0)
    grad_clip: float | None = _ranged(None, 0.0)
    ema: float | None = _ranged(0.999, 0.0, 0.999999)
    strategy: str = _choice("auto", "mirrored", "multi_worker", "one_device", default="auto")
    mixed_precision: bool = False
    jit_compile: bool = True
    log_every: int = _ranged(10, 1)
    sample_every: int = _ranged(200, 1)
    checkpoint_every: int = _ranged(200, 1)
    stop_when_valid: bool = False
    check_every: int = _ranged(100, 1)


@dataclass(frozen=True)
class SampleConfig:
    n: int = _ranged(10000, 1)
    batch: int = _ranged(500, 1)
    grid: int = _ranged(10, 1, 64)


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = _ranged(3, 1)
    batch: int = _ranged(128, 1)
    lr: float = _ranged(3e-3, 0.0, 1.0)


@dataclass(frozen=True)
class InceptionConfig:
    weights: str | None = None
    download: bool = False


@dataclass(frozen=True)
class EvaluateConfig:
    n: int = _ranged(10000, 2)
    kid_subsets: int = _ranged(100, 1)
    kid_subset_size: int = _ranged(1000, 2)
    pr_k: int = _ranged(3, 1)
    swd_patches: int = _ranged(16, 1)
    inception: InceptionConfig = field(default_factory=InceptionConfig)


@dataclass(frozen=True)
class Params:
    seed: int = _ranged(0, 0, 2**31 - 1)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


# YAML spelling -> field name, for keys that cannot be Python identifiers.
_YAML_ALIASES = {"lambda": "penalty_weight"}
_FIELD_ALIASES = {v: k for k, v in _YAML_ALIASES.items()}


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    names = [getattr(a, "__name__", str(a)) for a in (args or [tp])]
    return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")


# Exponent notation without a dot, which YAML 1.2 (and DVC's `-S`) reads as a float.
_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check_type(value: Any, tp: Any, path: str) -> Any:
    """Return ``value`` coerced to ``tp`` (int -> float only) or raise ParamsError."""
    allowed = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if t is float and isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            return float(value)  # `lr: 1e-4` is a string to YAML 1.1 (PyYAML): no dot
        if t is str and isinstance(value, str):
            return value
    raise ParamsError(f"{path}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _check_rules(value: Any, meta: Any, path: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join("null" if c is None else str(c) for c in choices)
        raise ParamsError(f"{path}: unknown choice {value!r}; allowed: {allowed}")
    lo, hi = meta.get("min"), meta.get("max")
    if value is None or isinstance(value, bool):
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ParamsError(f"{path}: value {value!r} is out of range; allowed: {rng}")


def _build(cls: type, raw: Any, path: str, base: Any = None) -> Any:
    """``base`` (default ``cls()``) with the keys of ``raw`` validated and applied."""
    base = cls() if base is None else base
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path or 'params'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        name = _YAML_ALIASES.get(key, key)
        key_path = f"{path}.{key}" if path else str(key)
        if name not in fields or key in _FIELD_ALIASES:
            known = ", ".join(sorted(_FIELD_ALIASES.get(f, f) for f in fields))
            raise ParamsError(f"{key_path}: unknown key; known keys here: {known}")
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key_path, getattr(base, name))
            continue
        value = _check_type(value, tp, key_path)
        _check_rules(value, fields[name].metadata, key_path)
        kwargs[name] = value
    return dataclasses.replace(base, **kwargs)


def _check_variant_knobs(train: TrainConfig) -> None:
    """Refuse knobs that the chosen variant would silently ignore."""
    if train.clip is not None and train.variant != "wgan":
        raise ParamsError(
            f"train.clip: value {train.clip!r} is only used by variant 'wgan' (weight clipping), "
            f"but train.variant is {train.variant!r}; set train.clip: null"
        )
    if train.penalty_weight is not None and train.variant not in ("wgan-gp", "wgan-lp"):
        raise ParamsError(
            f"train.lambda: value {train.penalty_weight!r} is only used by 'wgan-gp' and "
            f"'wgan-lp', but train.variant is {train.variant!r}; set train.lambda: null"
        )
    optimizer = train.optimizer or VARIANT_DEFAULTS[train.variant]["optimizer"]
    for key in ("beta1", "beta2"):
        value = getattr(train, key)
        if value is not None and optimizer != "adam":
            raise ParamsError(
                f"train.{key}: value {value!r} is only used by optimizer 'adam', but the "
                f"optimizer is {optimizer!r}; set train.{key}: null or train.optimizer: adam"
            )


def dcgan_plan(side: int) -> tuple[int, int]:
    """(starting side, number of 2× up/down-sampling steps) of a dcgan for ``side``.

    Here because it decides which ``resize`` values are valid before prepare runs.
    """
    start, steps = side, 0
    while start % 2 == 0 and start > 7:
        start //= 2
        steps += 1
    if steps < 2 or start not in (4, 7):
        raise ValueError(f"dcgan supports sides 4·2^k or 7·2^k with k ≥ 2 (16, 28, 32, 56, "
                         f"64, 112, 128, ...), got {side}")
    return start, steps


def _check_model_fits_data(params: Params) -> None:
    """Refuse data/model combinations that would only fail after prepare has run."""
    data, model = params.data, params.model
    if data.name == "mask" and model.arch == "dcgan":
        raise ParamsError("model.arch: 'dcgan' cannot model 1-D masks; use 'mlp' or 'auto'")
    if data.name != "mask" and model.arch == "mlp":
        raise ParamsError(f"model.arch: 'mlp' is for data.name 'mask', not {data.name!r}")
    if data.name == "mask" and model.critic_norm != "none":
        raise ParamsError(f"model.critic_norm: {model.critic_norm!r} applies to the dcgan "
                          "critic only; the mask (mlp) critic has no normalisation; set 'none'")
    if data.name in ("celeba", "folder"):
        resize = getattr(data, data.name).resize
        try:
            dcgan_plan(resize)
        except ValueError as err:
            raise ParamsError(f"data.{data.name}.resize: {err}") from None


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) into :class:`Params`."""
    params = _build(Params, raw, "")
    _check_variant_knobs(params.train)
    _check_model_fits_data(params)
    evaluated = min(params.sample.n, params.evaluate.n)
    if params.evaluate.pr_k >= evaluated:
        raise ParamsError(
            f"evaluate.pr_k: value {params.evaluate.pr_k} needs more than that many samples, "
            f"but min(sample.n, evaluate.n) is {evaluated}; raise sample.n and evaluate.n "
            "or lower evaluate.pr_k"
        )
    if params.train.variant in ("wgan-gp", "wgan-lp") and params.model.critic_norm == "batch":
        raise ParamsError(
            "model.critic_norm: 'batch' breaks the per-sample gradient penalty of "
            f"{params.train.variant!r}; use 'none' or 'layer'"
        )
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise :class:`ParamsError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; run from the project root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    return parse_params(raw)


def resolve_train(train: TrainConfig) -> TrainConfig:
    """Fill every null knob with the variant's paper default (user values win)."""
    defaults = VARIANT_DEFAULTS[train.variant]
    filled = {k: v for k, v in defaults.items() if getattr(train, k) is None}
    resolved = dataclasses.replace(train, **filled)
    if resolved.optimizer == "adam":
        resolved = dataclasses.replace(
            resolved,
            beta1=0.5 if resolved.beta1 is None else resolved.beta1,
            beta2=0.999 if resolved.beta2 is None else resolved.beta2,
        )
    else:  # a variant's Adam betas mean nothing to RMSprop; do not record them as used
        resolved = dataclasses.replace(resolved, beta1=None, beta2=None)
    return resolved


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain data in YAML spelling (``lambda``), for JSON/YAML output."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = _FIELD_ALIASES.get(f.name, f.name)
        out[key] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out
