"""Inception features and class probabilities for FID/KID/IS: two networks.

Naming: ``images`` are uint8 NHWC arrays [N, H, W, C], C in {1, 3};
*features* are the 2048-d pool_3 / global-average-pool activations, *probs*
the softmax over the network's classes.

* :class:`StandardInception` runs the 2015-12-05 TensorFlow Inception graph
  (:mod:`wgan.metrics.inception_graph`) as the reference code does: features
  and 1008-way probabilities comparable with published FID and IS.
* :class:`InceptionExtractor` runs Keras' ImageNet InceptionV3 (1000 classes),
  which is not that network: its scores compare only within this pipeline.
  Its resizing follows Clean-FID: each channel is resized as a float32 image
  with Pillow's antialiased bicubic filter ("On Aliased Resizing and
  Surprising Subtleties in GAN Evaluation", Parmar et al. 2022,
  https://arxiv.org/abs/2104.11222).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from wgan.files import sha256_file
from wgan.metrics.inception_graph import download_graph, read_inception_graph

if TYPE_CHECKING:
    from wgan.config import InceptionConfig

__all__ = ["INCEPTION_SIZE", "InceptionExtractor", "StandardInception", "load_inception",
           "resolve_inception_weights"]

INCEPTION_SIZE = 299
_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
)
_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
# MD5 published by keras.applications for the file above.
_WEIGHTS_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"
_NO_WEIGHTS = (
    "no weights: set evaluate.inception.weights to a local file "
    "or evaluate.inception.download: true"
)


def resolve_inception_weights(
    weights_path: str | None, download: bool, timeout: float = 10.0
) -> tuple[str | None, str | None]:
    """Locate InceptionV3 ImageNet weights without ever raising on network errors.

    Order: an existing ``weights_path``; else, if ``download``, the Keras
    ImageNet file via ``keras.utils.get_file`` (cached under
    ~/.keras/models, MD5-checked); else nothing.

    Args:
      weights_path: a local .h5/.weights.h5 file, or None.
      download: whether fetching the standard weights is allowed.
      timeout: socket timeout in seconds for each network operation of the
        download (set process-wide for the duration of the call, since
        ``get_file`` has no timeout argument).

    Returns:
      (path, None) when weights are available, else (None, reason).
    """
    if weights_path is not None and Path(weights_path).is_file():
        return weights_path, None
    missing = f"weights file {weights_path!r} not found; " if weights_path is not None else ""
    if not download:
        return None, missing + _NO_WEIGHTS
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        path = keras.utils.get_file(
            _WEIGHTS_FILE, _WEIGHTS_URL, cache_subdir="models", file_hash=_WEIGHTS_MD5
        )
    except Exception as error:  # Any failure means "unavailable", by contract.
        return None, f"{missing}download of {_WEIGHTS_URL} failed: {error!r}"
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return path, None


def _resize_to_inception(image: np.ndarray) -> np.ndarray:
    """Resize one uint8 [H, W, C] image to float32 RGB [299, 299, 3] in [0, 255]-ish.

    Each channel is resized as a Pillow mode-"F" image with BICUBIC
    (antialiased when downscaling; ``reducing_gap=None`` disables the
    faster two-step reduction). Grayscale is repeated to three channels.
    Bicubic overshoot slightly outside [0, 255] is kept, as in Clean-FID.
    """
    channels = [
        np.asarray(
            Image.fromarray(image[:, :, c].astype(np.float32)).resize(
                (INCEPTION_SIZE, INCEPTION_SIZE), Image.Resampling.BICUBIC, reducing_gap=None
            )
        )
        for c in range(image.shape[2])
    ]
    resized = np.stack(channels, axis=-1)
    return np.repeat(resized, 3 // image.shape[2], axis=-1)


class InceptionExtractor:
    """Keras InceptionV3 returning pool3 features and softmax probabilities.

    Attributes:
      weights: the weights file, or None for random initialization (only
        meaningful for testing the plumbing).
      sha256: SHA-256 of the weights file, or None.
      resize_filter: the resampling filter used to reach 299x299.
    """

    resize_filter = "PIL.BICUBIC"

    def __init__(self, weights: str | None) -> None:
        """Build the network and load ``weights`` (a local file) if given."""
        self.weights = weights
        self.sha256 = None if weights is None else sha256_file(weights)
        classifier = keras.applications.InceptionV3(include_top=True, weights=None)
        if weights is not None:
            classifier.load_weights(weights)
        self._model = keras.Model(
            classifier.input, [classifier.get_layer("avg_pool").output, classifier.output]
        )

    def describe(self) -> dict[str, str | None]:
        """The protocol entry: which network, which file, how images reach it."""
        return {"name": "keras InceptionV3 (ImageNet)", "sha256": self.sha256,
                "resize_filter": f"{self.resize_filter} to 299x299"}

    def _batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.stack([_resize_to_inception(im) for im in images])
        features, probs = self._model.predict_on_batch(
            keras.applications.inception_v3.preprocess_input(batch))
        return np.asarray(features), np.asarray(probs)

    def features_and_probs(
        self, images_uint8_nhwc: np.ndarray, batch_size: int = 50
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pool features [N, 2048] and probabilities [N, 1000], ``batch_size`` images at a time.

        Pipeline per image: grayscale -> RGB, bicubic resize to 299x299,
        ``keras.applications.inception_v3.preprocess_input`` (x / 127.5 - 1).
        Raises ValueError as :func:`_in_batches`.
        """
        return _in_batches(self._batch, images_uint8_nhwc, batch_size)


def _in_batches(run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                images_uint8_nhwc: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``run`` over ``batch_size`` images at a time; only one batch at 299x299 is held.

    Raises:
      ValueError: unless the images are uint8 [N>=1, H, W, C in (1, 3)] and
        batch_size >= 1.
    """
    images = np.asarray(images_uint8_nhwc)
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0
            or images.shape[3] not in (1, 3)):
        raise ValueError(
            f"expected uint8 [N>=1, H, W, C in (1, 3)], got {images.dtype} {images.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = [run(images[start:start + batch_size])
             for start in range(0, images.shape[0], batch_size)]
    return np.concatenate([f for f, _ in parts]), np.concatenate([p for _, p in parts])


def _import_graph(graph_def, layout: str) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """The graph as a TF2 function from ``Mul:0`` (preprocessed [N, 299, 299, 3]) to
    (pool_3 [N, 2048], logits [N, 1008]), pruned to those tensors.

    ``ttur`` graphs compute their logits with a batch-1 reshape, so the logits are taken
    as improved-gan does: squeeze(pool_3) @ W, W the weights of ``softmax/logits/MatMul``.
    """
    spec = tf.TensorSpec([None, INCEPTION_SIZE, INCEPTION_SIZE, 3], tf.float32)

    def imported(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        names = ["pool_3:0"] + (["logits:0"] if layout == "tfgan" else [])
        outputs = tf.graph_util.import_graph_def(graph_def, input_map={"Mul:0": x},
                                                 return_elements=names, name="inception")
        pool = tf.reshape(outputs[0], [-1, 2048])
        if layout == "tfgan":
            return pool, tf.reshape(outputs[1], [-1, 1008])
        weights = tf.compat.v1.get_default_graph().get_operation_by_name(
            "inception/softmax/logits/MatMul").inputs[1]
        return pool, tf.matmul(pool, weights)

    wrapped = tf.compat.v1.wrap_function(imported, [spec])
    return wrapped.prune(wrapped.inputs, wrapped.outputs)


class StandardInception:
    """The 2015-12-05 TF Inception graph: pool_3 features and 1008-way probabilities.

    Preprocessing is TF-GAN's ``preprocess_image``, which is also what the graph
    itself does between its ``ExpandDims`` input (fed by TTUR) and ``Mul``: uint8 ->
    float32 in [0, 255], grayscale repeated to RGB, ``ResizeBilinear`` to 299x299
    (align_corners and half_pixel_centers false, the 2015 op), (x - 128) / 128.

    Attributes:
      path: the graph file (.pb or tarball).
      sha256: SHA-256 of that file.
      member: the .pb inside a tarball, else None.
      layout: ``tfgan`` or ``ttur`` (how logits are read).
      resize_filter: the resampling to 299x299.
    """

    resize_filter = "tf ResizeBilinear (align_corners=False, half_pixel_centers=False)"

    def __init__(self, path: str | Path, sha256: str | None = None) -> None:
        """Read and import the graph at ``path``; ValueError (one line) if it is not one."""
        graph = read_inception_graph(path, sha256)
        self.path, self.sha256, self.member, self.layout = (
            str(path), graph.sha256, graph.member, graph.layout)
        network = _import_graph(graph.graph_def, graph.layout)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8)])
        def run(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = tf.cast(images, tf.float32)
            x = tf.tile(x, [1, 1, 1, 3 // tf.shape(x)[3]])
            x = tf.raw_ops.ResizeBilinear(images=x, size=[INCEPTION_SIZE, INCEPTION_SIZE],
                                          align_corners=False, half_pixel_centers=False)
            features, logits = network((x - 128.0) / 128.0)
            return features, tf.nn.softmax(logits)

        self._run = run

    def describe(self) -> dict[str, str | None]:
        """The protocol entry: which network, which file, how images reach it."""
        return {"name": "TF Inception 2015-12-05 (pool_3, 1008 logits)", "file": self.path,
                "member": self.member, "layout": self.layout, "sha256": self.sha256,
                "resize_filter": f"{self.resize_filter} to 299x299",
                "preprocessing": "uint8 as float32 in [0, 255], grey repeated to RGB, "
                                 "resize, (x - 128) / 128"}

    def _batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, probs = self._run(tf.constant(images))
        return features.numpy(), probs.numpy()

    def features_and_probs(
        self, images_uint8_nhwc: np.ndarray, batch_size: int = 50
    ) -> tuple[np.ndarray, np.ndarray]:
        """pool_3 features [N, 2048] and probabilities [N, 1008], ``batch_size`` at a time.

        Raises ValueError as :func:`_in_batches`.
        """
        return _in_batches(self._batch, images_uint8_nhwc, batch_size)


def load_inception(config: InceptionConfig, cache_dir: str | Path | None = None
                   ) -> tuple[StandardInception | InceptionExtractor | None, str | None]:
    """The network ``evaluate.inception`` asks for, or (None, why it is unavailable).

    Never raises on a missing, wrong or undownloadable file: Inception is optional.
    """
    try:
        if config.model == "keras":
            weights, reason = resolve_inception_weights(config.weights, config.download)
            return (None, reason) if weights is None else (InceptionExtractor(weights), None)
        if config.graph is None and not config.download:
            return None, ("no standard Inception graph: set evaluate.inception.graph (or "
                          "download: true with evaluate.inception.sha256)")
        graph = config.graph or download_graph(
            config.sha256, cache_dir or Path.home() / ".cache" / "wgan")
        return StandardInception(graph, config.sha256), None
    except Exception as err:  # Inception is optional: any failure is a reason, never fatal.
        return None, f"inception unavailable: {err}"
