"""Generator and critic networks, sized from the prepared sample shape.

``dcgan`` (Radford et al. 2015, arXiv:1511.06434): strided (transposed) convolutions
between 4×4 (7×7 for 28×28) and the image size; BatchNorm in the generator with
statistics synchronised across replicas, so N replicas compute what one device
computes on the same global batch. The critic has no BatchNorm for the variants with a
per-sample gradient penalty (wgan-gp, wgan-lp, gan-r1): it couples the samples of a
batch (Gulrajani et al. 2017, Sec. 4); ``critic_norm: layer`` is the allowed
alternative. The table (:mod:`wgan.variants`) says which norms each variant allows.

``mlp`` (WGAN_GP_MASK): generator z → 4096 leaky-ReLU → L sigmoid; critic
L → 4096 → 1024 → 1 linear, for 1-D 0/1 masks.

``model.extra_layers`` (the WassersteinGAN reference's ``--n_extra_layers``, Arjovsky
et al. 2017) adds 3×3 stride-1 conv layers at the largest hidden side of either
network: before the generator's output layer and after the critic's input layer. They
deepen both networks where the strokes are drawn without changing the sides.

``model.conditional`` makes a dcgan class-conditional, for labelled data. The generator
takes ``[z, label]`` and adds a learned per-class vector to its first layer's output,
which is concatenating a one-hot label to z (Mirza & Osindero 2014, arXiv:1411.1784). The
critic is a projection critic with a linear ψ (Miyato & Koyama 2018, arXiv:1802.05637):
D(x, y) = (w + V_y)ᵀ φ(x), i.e. one linear output per class, of which
:func:`class_score` takes the label's. The critic stays a model of the image alone, built
of the same layers, so the off-tape penalty (:mod:`wgan.penalties`), XLA block
convolutions and spectral norm apply to it unchanged.

``model.init`` (:func:`initializers`) chooses the conv/dense kernels' initial weights.
A variant whose ``critic_constraint`` is ``spectral`` gets every conv and dense layer of
either critic wrapped in :class:`wgan.spectral_norm.SpectralNorm`.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from keras import layers

from wgan.block_conv import BlockConv2D, BlockConv2DTranspose
from wgan.config import ModelConfig
from wgan.model_files import LABEL_EMBEDDING
from wgan.model_geometry import dcgan_plan
from wgan.spectral_norm import SpectralNorm

__all__ = ["build_models", "base_channels", "class_score", "initializers", "latent_dim",
           "model_arch", "model_classes", "resolve_model", "ClipWeights"]

_INIT_STD = 0.02


def model_arch(config: ModelConfig, shape: tuple[int, ...]) -> str:
    if config.arch != "auto":
        return config.arch
    return "dcgan" if len(shape) == 3 else "mlp"


def latent_dim(config: ModelConfig, shape: tuple[int, ...]) -> int:
    if config.z_dim is not None:
        return config.z_dim
    return 100 if model_arch(config, shape) == "dcgan" else 1000


@keras.saving.register_keras_serializable(package="wgan")
class ClipWeights(keras.constraints.Constraint):
    """WGAN weight clipping to [-c, c], applied by the optimizer after every update.

    Not the optimizer's ``clipvalue``, which clips gradients. Registered, so a layer
    config holding it round-trips (``with_stock_layers``, loading ``critic.keras``).
    """

    def __init__(self, clip: float):
        self.clip = clip

    def __call__(self, w):
        return keras.ops.clip(w, -self.clip, self.clip)

    def get_config(self):
        return {"clip": self.clip}


def base_channels(config: ModelConfig, shape: tuple[int, ...]) -> int:
    """The dcgan width: ``model.base_channels``, or 32 for 28×28 and 64 (DCGAN's) otherwise.

    32 keeps the default MNIST run at about ten minutes on two CPU cores: a 28×28
    critic step at 64 costs ~2.6× as much, and in the same time base 32 takes enough
    more steps to draw cleaner digits (docs/performance.md, "The default run").
    """
    if config.base_channels is not None:
        return config.base_channels
    return 32 if shape[:2] == (28, 28) else 64


def resolve_model(config: ModelConfig, shape: tuple[int, ...]) -> ModelConfig:
    """``config`` with ``auto``/``null`` replaced by what :func:`build_models` uses for ``shape``.

    What ``train_config.json`` records, so a run says which network it trained.
    """
    arch = model_arch(config, shape)
    return dataclasses.replace(
        config, arch=arch, z_dim=latent_dim(config, shape),
        base_channels=base_channels(config, shape) if arch == "dcgan" else None)


def initializers(init: str, layer: str = "kernel") -> dict:
    """Keyword arguments that give a new layer ``model.init``'s initial weights; a fresh
    initializer per layer (one instance reused would repeat its draws), seeded from the
    run seed like Keras' own (:func:`keras.utils.set_random_seed`).

    ``keras``: Keras' defaults (glorot-uniform kernels, BatchNorm γ = 1), no arguments.
    ``dcgan``: kernels N(0, 0.02) (Radford et al. 2015, Sec. 4), BatchNorm γ N(1, 0.02) and
    β 0, as ``weights_init`` of the WassersteinGAN and DCGAN PyTorch references.
    ``truncated``: kernels N(0, 0.02) redrawn beyond 2σ, TensorLayer's convolution default
    that WGAN-tensorlayer trained with (BatchNorm left at Keras' default).
    ``layer``: ``kernel`` for a Dense/conv layer, ``batch_norm`` for a BatchNormalization.
    """
    if layer == "batch_norm":
        if init != "dcgan":
            return {}
        return {"gamma_initializer": keras.initializers.RandomNormal(1.0, _INIT_STD)}
    if init == "dcgan":
        return {"kernel_initializer": keras.initializers.RandomNormal(0.0, _INIT_STD)}
    if init == "truncated":
        return {"kernel_initializer": keras.initializers.TruncatedNormal(0.0, _INIT_STD)}
    return {}


def _dcgan_plan(shape: tuple[int, ...]) -> tuple[int, int]:
    """(starting side, number of 2× up/down-sampling steps) for an image shape."""
    h, w, _ = shape
    if h != w:
        raise ValueError(f"dcgan needs square images, got {h}×{w}; set data.*.resize")
    return dcgan_plan(h)


def _batch_norm_relu(x, init: str):
    """The generator's hidden-layer tail: BatchNorm synchronised across replicas, then ReLU."""
    x = layers.BatchNormalization(synchronized=True, **initializers(init, "batch_norm"))(x)
    return layers.ReLU()(x)


def _dcgan_generator(shape, z_dim: int, base: int, extra: int, block_convs: bool,
                     init: str, classes: int | None) -> keras.Model:
    side, steps = _dcgan_plan(shape)
    channels = base * 2 ** (steps - 1)
    z = keras.Input((z_dim,), name="z")
    inputs = [z]
    x = layers.Dense(side * side * channels, use_bias=False, **initializers(init))(z)
    if classes is not None:
        inputs.append(keras.Input((), dtype="int32", name="label"))
        x = layers.Add()([x, layers.Embedding(classes, x.shape[-1], name=LABEL_EMBEDDING)(
            inputs[1])])
    x = _batch_norm_relu(x, init)
    x = layers.Reshape((side, side, channels))(x)
    for _ in range(steps - 1):
        channels //= 2
        x = layers.Conv2DTranspose(channels, 4, 2, padding="same", use_bias=False,
                                   **initializers(init))(x)
        x = _batch_norm_relu(x, init)
    for _ in range(extra):
        x = layers.Conv2D(channels, 3, 1, padding="same", use_bias=False, **initializers(init))(x)
        x = _batch_norm_relu(x, init)
    output_conv = BlockConv2DTranspose if block_convs else layers.Conv2DTranspose
    x = output_conv(shape[-1], 4, 2, padding="same", **initializers(init))(x)
    out = layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(inputs if classes is not None else z, out, name="generator")


def _critic_norm(kind: str, constraint, init: str):
    """The critic's normalisation layer; its scale and offset are clipped like every other
    critic parameter (the WGAN reference code clamps them all)."""
    kw = dict(beta_constraint=constraint, gamma_constraint=constraint)
    if kind == "layer":
        return layers.LayerNormalization(axis=[1, 2, 3], **kw)
    if kind == "batch":
        return layers.BatchNormalization(synchronized=True, **kw,
                                         **initializers(init, "batch_norm"))
    return None


def _linear(spectral: bool):
    """How the critic wraps each conv/dense layer: in :class:`SpectralNorm`, or not at all."""
    if not spectral:
        return lambda layer: layer
    return lambda layer: SpectralNorm(layer, dtype=layer.dtype_policy)


def _dcgan_critic(shape, base: int, extra: int, norm: str, constraint, block_convs: bool,
                  init: str, spectral: bool, classes: int | None) -> keras.Model:
    _, steps = _dcgan_plan(shape)
    kw = dict(kernel_constraint=constraint, bias_constraint=constraint)
    wrap = _linear(spectral)
    x_in = keras.Input(shape, name="x")
    x = x_in
    convs = [(base * 2**i, 4, 2) for i in range(steps)]
    convs[1:1] = [(base, 3, 1)] * extra
    for i, (channels, kernel, stride) in enumerate(convs):
        conv = BlockConv2D if block_convs and i == 0 else layers.Conv2D
        x = wrap(conv(channels, kernel, stride, padding="same", **kw, **initializers(init)))(x)
        norm_layer = _critic_norm(norm, constraint, init) if i > 0 else None
        if norm_layer is not None:
            x = norm_layer(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    out = wrap(layers.Dense(classes or 1, dtype="float32", **kw, **initializers(init)))(x)
    return keras.Model(x_in, out, name="critic")


def class_score(scores: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor:
    """D(x, y) [B, 1] of a projection critic's per-class outputs [B, K]: each row's
    ``labels`` column (a one-hot product, linear in ``scores``: nothing for the penalty's
    tape to miss). Unconditional (``labels`` None): ``scores`` as they are."""
    if labels is None:
        return scores
    picked = scores * tf.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    return tf.reduce_sum(picked, axis=-1, keepdims=True)


def _mlp_generator(length: int, z_dim: int, hidden: int, init: str) -> keras.Model:
    z = keras.Input((z_dim,), name="z")
    x = layers.LeakyReLU(0.2)(layers.Dense(hidden, **initializers(init))(z))
    out = layers.Dense(length, activation="sigmoid", dtype="float32", **initializers(init))(x)
    return keras.Model(z, out, name="generator")


def _mlp_critic(length: int, hidden: int, constraint, init: str, spectral: bool) -> keras.Model:
    kw = dict(kernel_constraint=constraint, bias_constraint=constraint)
    wrap = _linear(spectral)
    x_in = keras.Input((length,), name="x")
    x = layers.LeakyReLU(0.2)(wrap(layers.Dense(hidden, **kw, **initializers(init)))(x_in))
    x = layers.LeakyReLU(0.2)(
        wrap(layers.Dense(max(1, hidden // 4), **kw, **initializers(init)))(x))
    out = wrap(layers.Dense(1, dtype="float32", **kw, **initializers(init)))(x)
    return keras.Model(x_in, out, name="critic")


def build_models(
    config: ModelConfig, shape: tuple[int, ...], clip: float | None = None,
    xla: bool = False, spectral: bool = False, num_classes: int | None = None,
) -> tuple[keras.Model, keras.Model]:
    """(generator, critic) for samples of ``shape``; ``clip`` adds WGAN weight clipping,
    ``spectral`` spectral normalization of the critic, ``num_classes`` (the prepared data's
    label count, None when unlabelled) the classes of a ``model.conditional`` pair.

    ``xla``: the models will train inside an XLA-compiled step, so a dcgan on
    single-channel images computes its image-side convolutions with
    :mod:`wgan.block_conv` (same maths, faster there; slower without XLA). Not in a
    spectrally normalised critic: the saved file must hold stock layers, and
    :func:`wgan.block_conv.with_stock_layers` does not look inside the wrapper.
    """
    constraint = ClipWeights(clip) if clip is not None else None
    z_dim = latent_dim(config, shape)
    classes = model_classes(config, shape, num_classes)
    if model_arch(config, shape) == "mlp":
        (length,) = shape
        return (_mlp_generator(length, z_dim, config.mlp_hidden, config.init),
                _mlp_critic(length, config.mlp_hidden, constraint, config.init, spectral))
    base = base_channels(config, shape)
    block_convs = xla and shape[-1] == 1
    extra = config.extra_layers
    return (_dcgan_generator(shape, z_dim, base, extra, block_convs, config.init, classes),
            _dcgan_critic(shape, base, extra, config.critic_norm, constraint,
                          block_convs and not spectral, config.init, spectral, classes))


def model_classes(config: ModelConfig, shape: tuple[int, ...],
                  num_classes: int | None) -> int | None:
    """The class count the models condition on: ``num_classes`` with ``model.conditional``,
    else None. Raises ValueError for a conditional model the data or arch cannot have."""
    if not config.conditional:
        return None
    if model_arch(config, shape) != "dcgan":
        raise ValueError("model.conditional: true applies to the dcgan only; set "
                         "model.conditional: false for this data")
    if num_classes is None:
        raise ValueError("model.conditional: true needs class labels, but the prepared data "
                         "has none (meta.json num_classes: null); set model.conditional: false")
    return num_classes
