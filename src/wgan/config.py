"""Typed, validated configuration read from ``params.yaml``.

One frozen dataclass per ``params.yaml`` section. :func:`load_params` checks the
whole file before any work starts: an unknown key, a wrong type, an out-of-range
value or an unknown choice raises :class:`ParamsError` naming the key path, the
bad value and what is allowed. Range and choice rules live in each field's
metadata (``choices``, ``min``, ``max``) so the rule and the default sit together.

``train.lambda`` is spelled ``lambda`` in YAML (so ``dvc exp run -S train.lambda=10``
works) and ``penalty_weight`` in code, because ``lambda`` is a Python keyword.
What a variant reads and its paper defaults come from :data:`wgan.variants.VARIANTS`:
:func:`resolve_train` fills the knobs left ``null`` with them and resets the knobs the
variant does not read, which :func:`ignored_knobs` lists (a sweep over variants × λ must
not stop at ``gan``). Each network's optimizer (``train.generator`` / ``train.critic``) is
resolved by :func:`resolve_network`: its own value, else the shared ``train.*`` one, else
the variant's default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wgan.health import HealthThresholds
from wgan.model_geometry import dcgan_plan
from wgan.variants import VARIANT_KNOBS, VARIANTS, get_variant

__all__ = [
    "ParamsError",
    "Params",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "NetworkOptimizer",
    "SampleConfig",
    "ClassifierConfig",
    "EvaluateConfig",
    "InceptionConfig",
    "PROTOCOLS",
    "Protocol",
    "load_params",
    "parse_params",
    "resolve_train",
    "resolve_network",
    "ignored_knobs",
    "to_dict",
    "yaml_name",
]

FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
NETWORKS = ("generator", "critic")  # the train.<network> optimizer sections
_OPTIMIZER_KNOBS = ("optimizer", "lr", "beta1", "beta2")
_BETAS = ("beta1", "beta2")
# Adam's betas when neither params.yaml nor the variant gives them (DCGAN's β₁, Keras' β₂).
_ADAM_BETAS = {"beta1": 0.5, "beta2": 0.999}


class ParamsError(ValueError):
    """A ``params.yaml`` value is missing, unknown, mistyped or out of range."""


def _choice(*values: Any, default: Any) -> Any:
    return field(default=default, metadata={"choices": values})


def _ranged(default: Any, lo: float | None = None, hi: float | None = None,
            why: str = "") -> Any:
    """A numeric field in [lo, hi]; ``why`` explains an upper bound in the error."""
    return field(default=default, metadata={"min": lo, "max": hi, "why": why})


_IN_MEMORY = "held in memory at once"


# The optimizer knobs, shared (train.*) and per network (train.generator/critic.*).
def _optimizer_field() -> Any:
    return _choice(None, *OPTIMIZERS, default=None)


def _lr_field() -> Any:
    return _ranged(None, 0.0, 1.0)


def _beta_field() -> Any:
    return _ranged(None, 0.0, 0.999999)


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
class LsunConfig:
    """One LSUN category's LMDB export: its shorter side resized to ``resize``, centre-cropped
    square, as the WGAN and DCGAN reference code does."""

    path: str = "data/raw/lsun/bedroom_train_lmdb.zip"
    resize: int = _ranged(64, 4, 1024)
    filter: str = _choice(*FILTERS, default="bilinear")  # torchvision Scale's default
    test_fraction: float = _ranged(0.1, 0.0, 0.9)  # only without <category>_val_lmdb beside


@dataclass(frozen=True)
class MaskConfig:
    path: str = "data/raw/mask_data.pkl"
    length: int = _ranged(8192, 2, 2**20, why="the mask MLP holds length × mlp_hidden weights")
    test_fraction: float = _ranged(0.1, 0.0, 0.9)


@dataclass(frozen=True)
class DataConfig:
    name: str = _choice("mnist", "cifar10", "celeba", "folder", "lsun", "mask", default="mnist")
    raw_dir: str = "data/raw"
    shards: int = _ranged(4, 1, 4096)
    workers: int | None = _ranged(None, 1, 512)
    mnist: MnistConfig = field(default_factory=MnistConfig)
    celeba: ImageFolderConfig = field(default_factory=ImageFolderConfig)
    folder: ImageFolderConfig = field(
        default_factory=lambda: ImageFolderConfig(path="data/raw/images", crop=None)
    )
    lsun: LsunConfig = field(default_factory=LsunConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = _choice("auto", "dcgan", "mlp", default="auto")
    z_dim: int | None = _ranged(None, 1, 100_000)  # null: 100 for dcgan, 1000 for mlp
    base_channels: int | None = _ranged(None, 1, 4096)  # null: 32 for 28×28, else 64
    critic_norm: str = _choice("none", "layer", "batch", default="none")
    # dcgan: 3×3 stride-1 conv layers beside the largest hidden side of each network
    # (the WassersteinGAN reference's --n_extra_layers)
    extra_layers: int = _ranged(0, 0, 64)
    # dcgan on labelled data: a generator of (z, class) and a projection critic (wgan.models)
    conditional: bool = False
    init: str = _choice("keras", "dcgan", "truncated", default="keras")  # wgan.models.initializers
    mlp_hidden: int = _ranged(4096, 1, 65536, why="the mask MLP holds length × mlp_hidden weights")


@dataclass(frozen=True)
class NetworkOptimizer:
    """``train.generator`` / ``train.critic``: one network's optimizer. ``null`` takes the
    shared ``train.*`` value after the variant's defaults (:func:`resolve_train`), so the two
    networks can differ as in WGAN_GP_MASK (Adam generator, RMSprop critic) or TTUR (Heusel
    et al. 2017, arXiv:1706.08500: a faster critic)."""

    optimizer: str | None = _optimizer_field()
    lr: float | None = _lr_field()
    beta1: float | None = _beta_field()
    beta2: float | None = _beta_field()


@dataclass(frozen=True)
class TrainConfig:
    variant: str = _choice(*VARIANTS, default="wgan-gp")
    steps: int = _ranged(2500, 1, 10**9)  # the noise seeds' layout holds up to this
    batch: int = _ranged(64, 1, 65536, why="a training step holds the global batch in memory")
    n_critic: int | None = _ranged(None, 1, 1000)
    g_steps: int = _ranged(1, 1, 1000)
    critic_warmup: bool = False
    optimizer: str | None = _optimizer_field()
    lr: float | None = _lr_field()
    beta1: float | None = _beta_field()
    beta2: float | None = _beta_field()
    generator: NetworkOptimizer = field(default_factory=NetworkOptimizer)
    critic: NetworkOptimizer = field(default_factory=NetworkOptimizer)
    lr_decay: bool = False  # both networks' learning rates
    clip: float | None = _ranged(None, 0.0)
    penalty_weight: float | None = _ranged(None, 0.0)
    lp_sampling: str = _choice("interpolate", "perturb", default="interpolate")
    perturb: float = _ranged(0.5, 0.0)
    r1_every: int = _ranged(1, 1)  # gan-r1: R1 every k critic steps, weight ×k
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
    eval_every: int | None = _ranged(250, 1)  # null: no evaluation during training
    eval_n: int = _ranged(1000, 2, 10**6, why="samples and their features are "
                          f"{_IN_MEMORY}")
    target_ratio: float = _ranged(3.0, 1.0)


@dataclass(frozen=True)
class SampleConfig:
    n: int = _ranged(10000, 1, 10**7, why=f"samples are {_IN_MEMORY}")
    batch: int = _ranged(500, 1, 65536, why="one generator call makes a batch")
    grid: int = _ranged(10, 1, 64)
    generator: str = _choice("final", "best", default="final")


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = _ranged(3, 1, 10_000)
    batch: int = _ranged(128, 1, 65536, why="a training step holds the batch in memory")
    lr: float = _ranged(3e-3, 0.0, 1.0)
    # Its own seed, not the run's: a multi-seed study must score every run with one
    # classifier, or the seeds' FIDs differ by the ruler as well as by the runs.
    seed: int = _ranged(0, 0, 2**31 - 1)


@dataclass(frozen=True)
class InceptionConfig:
    """``standard``: the 2015-12-05 TF graph of published FIDs (``graph``, or downloaded
    against the pinned ``sha256``); ``keras``: Keras' ImageNet InceptionV3 (``weights``)."""

    model: str = _choice("standard", "keras", default="standard")
    graph: str | None = None
    sha256: str | None = None
    download: bool = False
    weights: str | None = None


@dataclass(frozen=True)
class Protocol:
    """A published FID protocol: ``n`` samples against the statistics of ``split``
    (its first ``n`` images at most) in the standard Inception network's features."""

    n: int
    split: str


PROTOCOLS = {"fid50k_train": Protocol(50_000, "train"), "fid10k_test": Protocol(10_000, "test")}


@dataclass(frozen=True)
class EvaluateConfig:
    n: int = _ranged(10000, 2, 10**7, why=f"samples and their features are {_IN_MEMORY}")
    kid_subsets: int = _ranged(100, 1, 10_000)
    kid_subset_size: int = _ranged(1000, 2, 10**6)
    pr_k: int = _ranged(3, 1, 1000)
    swd_patches: int = _ranged(16, 1, 1024, why="patches of every image are held in memory")
    swd_karras: bool = False
    protocol: str | None = _choice(None, *PROTOCOLS, default=None)
    reference_stats: str | None = None
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
    health: HealthThresholds = field(default_factory=HealthThresholds)


# YAML spelling -> field name, for keys that cannot be Python identifiers.
_YAML_ALIASES = {"lambda": "penalty_weight"}
_FIELD_ALIASES = {v: k for k, v in _YAML_ALIASES.items()}


# Error messages show at most this much of a value: a hostile value can be huge.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = 4
_SHORT.maxlevel = 2
# params.yaml is a few KB; anything far bigger is not a params file.
MAX_PARAMS_BYTES = 1 << 20


def _short(value: Any) -> str:
    return _SHORT.repr(value)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


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
    raise ParamsError(
        f"{path}: expected {_type_name(tp)}, got {_short(value)} ({type(value).__name__})")


def _check_rules(value: Any, meta: Any, path: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join("null" if c is None else str(c) for c in choices)
        raise ParamsError(f"{path}: unknown choice {_short(value)}; allowed: {allowed}")
    lo, hi = meta.get("min"), meta.get("max")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{path}: value {value!r} is not a finite number; set a number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        why = f" ({meta['why']})" if meta.get("why") and hi is not None and value > hi else ""
        raise ParamsError(f"{path}: value {value!r} is out of range; allowed: {rng}{why}")


def _build(cls: type, raw: Any, path: str, base: Any = None) -> Any:
    """``base`` (default ``cls()``) with the keys of ``raw`` validated and applied."""
    base = cls() if base is None else base
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path or 'params'}: expected a mapping, got {_short(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        name = _YAML_ALIASES.get(key, key)
        key_path = f"{path}.{key}" if path else str(key)
        if name not in fields or key in _FIELD_ALIASES:
            known = ", ".join(sorted(_FIELD_ALIASES.get(f, f) for f in fields))
            raise ParamsError(f"{_one_line(key_path, 100)}: unknown key; known keys here: {known}")
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key_path, getattr(base, name))
            continue
        value = _check_type(value, tp, key_path)
        _check_rules(value, fields[name].metadata, key_path)
        kwargs[name] = value
    return dataclasses.replace(base, **kwargs)


def _adam_only(key: str, value: float, optimizer: str, fix: str) -> ParamsError:
    return ParamsError(f"{key}: value {value!r} is only used by optimizer 'adam', but the "
                       f"optimizer is {optimizer!r}; set {key}: null or {fix}: adam")


def _check_optimizer_knobs(train: TrainConfig) -> None:
    """Refuse Adam betas beside an explicitly chosen other optimizer (a contradiction in the
    user's own settings; under a variant whose default is RMSprop they are ignored). A
    network's betas are checked against its optimizer (its own, else ``train.optimizer``);
    the shared betas against ``train.optimizer``, unless a network chooses Adam and reads them."""
    for net in NETWORKS:
        spec = getattr(train, net)
        chosen = spec.optimizer or train.optimizer
        for key in _BETAS:
            value = getattr(spec, key)
            if value is not None and chosen not in (None, "adam"):
                raise _adam_only(f"train.{net}.{key}", value, chosen, f"train.{net}.optimizer")
    if train.optimizer in (None, "adam") or any(
            getattr(train, net).optimizer == "adam" for net in NETWORKS):
        return
    for key in _BETAS:
        value = getattr(train, key)
        if value is not None:
            raise _adam_only(f"train.{key}", value, train.optimizer, "train.optimizer")


def _check_critic_norm(params: Params) -> None:
    variant, norm = get_variant(params.train.variant), params.model.critic_norm
    if norm not in variant.critic_norms:
        allowed = " or ".join(repr(n) for n in variant.critic_norms)
        raise ParamsError(f"model.critic_norm: {norm!r} {variant.critic_norm_reason}, which "
                          f"variant {params.train.variant!r} needs; use {allowed}")


LABELLED_DATA = ("mnist", "cifar10")  # the data sets whose prepared records carry a class


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
    if data.name == "mask" and model.extra_layers:
        raise ParamsError(f"model.extra_layers: {model.extra_layers} applies to the dcgan only; "
                          "the mask (mlp) networks have no conv layers; set 0")
    if model.conditional and data.name not in LABELLED_DATA:
        raise ParamsError(f"model.conditional: true needs class labels, which data.name "
                          f"{data.name!r} has none of (labelled: {', '.join(LABELLED_DATA)}); "
                          "set model.conditional: false")
    if data.name in ("celeba", "folder", "lsun"):
        resize = getattr(data, data.name).resize
        try:
            dcgan_plan(resize)
        except ValueError as err:
            raise ParamsError(f"data.{data.name}.resize: {err}") from None


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _check_inception(evaluate: EvaluateConfig, sample_n: int) -> None:
    """Refuse Inception settings that contradict each other or the chosen protocol."""
    inc = evaluate.inception
    if inc.model == "standard" and inc.weights is not None:
        raise ParamsError("evaluate.inception.weights: a Keras InceptionV3 file, read only with "
                          "evaluate.inception.model: keras; set that, or set weights: null and "
                          "evaluate.inception.graph to the standard graph")
    if inc.model == "keras" and (inc.graph, inc.sha256) != (None, None):
        raise ParamsError("evaluate.inception.graph/sha256: the standard graph's settings, but "
                          "evaluate.inception.model is 'keras'; set model: standard or null them")
    if inc.sha256 is not None and not _SHA256.fullmatch(inc.sha256):
        raise ParamsError(f"evaluate.inception.sha256: {_short(inc.sha256)} is not 64 hex digits")
    if inc.model == "standard" and inc.download and inc.sha256 is None:
        raise ParamsError("evaluate.inception.download: the standard graph is downloaded only "
                          "against a pinned checksum; set evaluate.inception.sha256 "
                          "(docs/evaluation.md#the-standard-inception-network)")
    standard = inc.model == "standard" and (inc.graph is not None or inc.download)
    for key, value in (("protocol", evaluate.protocol),
                       ("reference_stats", evaluate.reference_stats)):
        if value is not None and not standard:
            raise ParamsError(f"evaluate.{key}: {_short(value)} needs the standard Inception "
                              "network; set evaluate.inception.graph (model: standard)")
    if evaluate.protocol is not None and sample_n < PROTOCOLS[evaluate.protocol].n:
        raise ParamsError(f"evaluate.protocol: {evaluate.protocol} scores "
                          f"{PROTOCOLS[evaluate.protocol].n} samples, but sample.n is "
                          f"{sample_n}; raise sample.n")


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) into :class:`Params`."""
    params = _build(Params, raw, "")
    _check_optimizer_knobs(params.train)
    _check_critic_norm(params)
    _check_model_fits_data(params)
    _check_inception(params.evaluate, params.sample.n)
    evaluated = min(params.sample.n, params.evaluate.n)
    if params.evaluate.pr_k >= evaluated:
        raise ParamsError(
            f"evaluate.pr_k: value {params.evaluate.pr_k} needs more than that many samples, "
            f"but min(sample.n, evaluate.n) is {evaluated}; raise sample.n and evaluate.n "
            "or lower evaluate.pr_k"
        )
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise :class:`ParamsError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; run from the project root")
    with open(path, "rb") as f:
        text = f.read(MAX_PARAMS_BYTES + 1)
    if len(text) > MAX_PARAMS_BYTES:
        raise ParamsError(f"{path}: larger than {MAX_PARAMS_BYTES} bytes; this is not a "
                          "params file (the repository's is about 2 KB)")
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {_one_line(str(err))}") from err
    return parse_params(raw)


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (``*name``): params are plain values, and an
    alias is how a few bytes of YAML expand into gigabytes ("billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = _one_line(event.anchor, 40)
            raise yaml.YAMLError(f"line {event.start_mark.line + 1}: aliases (*{anchor}) are "
                                 "not allowed in params; write the value out")
        return super().compose_node(parent, index)


def _not_read(train: TrainConfig) -> list[str]:
    """Field names of the variant-specific knobs that ``train.variant`` does not read."""
    read = get_variant(train.variant).knobs_read(train.lp_sampling)
    return [k for k in VARIANT_KNOBS if k not in read]


def resolve_network(train: TrainConfig, net: str) -> NetworkOptimizer:
    """The optimizer network ``net`` trains with: each knob is its ``train.<net>`` value,
    else the shared ``train.*`` value, else the variant's default. Adam's betas left unset
    by all three are 0.5 and 0.999; another optimizer has none (nothing reads them)."""
    own, defaults = getattr(train, net), get_variant(train.variant).defaults

    def pick(key: str) -> Any:
        for value in (getattr(own, key), getattr(train, key), defaults.get(key)):
            if value is not None:
                return value
        return _ADAM_BETAS.get(key)

    optimizer = pick("optimizer")
    if optimizer != "adam":
        return NetworkOptimizer(optimizer, pick("lr"))
    return NetworkOptimizer(optimizer, pick("lr"), pick("beta1"), pick("beta2"))


def resolve_train(train: TrainConfig) -> TrainConfig:
    """The train config a run uses: null knobs take the variant's paper defaults (user
    values win), each network's optimizer is resolved (:func:`resolve_network`), and knobs
    the variant or its optimizer does not read are reset, so that ``train_config.json`` and
    the checkpoint fingerprint show only what is used."""
    defaults = get_variant(train.variant).defaults
    base = TrainConfig()
    resolved = dataclasses.replace(
        train,
        **{k: getattr(base, k) for k in _not_read(train)},
        **{k: v for k, v in defaults.items() if getattr(train, k) is None},
        **{net: resolve_network(train, net) for net in NETWORKS},
    )
    if resolved.optimizer == "adam":
        return dataclasses.replace(
            resolved, **{k: v for k, v in _ADAM_BETAS.items() if getattr(resolved, k) is None})
    # A variant's Adam betas mean nothing to RMSprop or SGD; do not record them as used.
    return dataclasses.replace(resolved, beta1=None, beta2=None)


def _unread_optimizer_knobs(train: TrainConfig) -> list[str]:
    """Dotted field paths of optimizer knobs set in params.yaml that no network reads: a
    shared one every network sets itself, or betas of a network that is not using Adam."""
    resolved = {net: resolve_network(train, net).optimizer for net in NETWORKS}
    unread = [f"{net}.{k}" for net in NETWORKS if resolved[net] != "adam" for k in _BETAS]

    def reads(net: str, key: str) -> bool:
        own_unset = getattr(getattr(train, net), key) is None
        return own_unset and (key not in _BETAS or resolved[net] == "adam")

    return unread + [k for k in _OPTIMIZER_KNOBS if not any(reads(n, k) for n in NETWORKS)]


def ignored_knobs(train: TrainConfig) -> dict[str, Any]:
    """``{"train.<key>": value}`` for each knob set in params.yaml that this run does not
    read: a variant-specific knob of another variant, or Adam betas under the RMSprop of
    the variant's defaults (an explicit other optimizer with betas is refused), or a shared
    optimizer knob that both networks set for themselves."""
    base = TrainConfig()

    def value(config: Any, path: str) -> Any:
        for part in path.split("."):
            config = getattr(config, part)
        return config

    names = _not_read(train) + _unread_optimizer_knobs(train)
    return {f"train.{yaml_name(k)}": value(train, k) for k in names
            if value(train, k) != value(base, k)}


def yaml_name(field_name: str) -> str:
    """A config field's key in params.yaml (``penalty_weight`` -> ``lambda``)."""
    return _FIELD_ALIASES.get(field_name, field_name)


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain data in YAML spelling (``lambda``), for JSON/YAML output."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[yaml_name(f.name)] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out
