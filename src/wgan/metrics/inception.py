"""InceptionV3 features and class probabilities for FID/KID/PR/IS.

Naming: ``images`` are uint8 NHWC arrays [N, H, W, C], C in {1, 3};
*features* are the 2048-d global-average-pool ("pool3") activations,
*probs* the 1000-way softmax of the Keras ImageNet head.

Note: Keras' ImageNet InceptionV3 is not the TF-slim 2015 graph used by the
reference FID code (1008 logits), so absolute scores are comparable only
within this pipeline, not with published numbers.

Resizing follows Clean-FID: each channel is resized as a float32 image with
Pillow's antialiased bicubic filter, avoiding uint8 quantization of the
upsampled image. See "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation", Parmar et al. 2022 (https://arxiv.org/abs/2104.11222).
"""

from __future__ import annotations

import socket
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from wgan.files import sha256_file

__all__ = ["INCEPTION_SIZE", "InceptionExtractor", "resolve_inception_weights"]

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

    def features_and_probs(
        self, images_uint8_nhwc: np.ndarray, batch_size: int = 50
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pool features and class probabilities, ``batch_size`` images at a time.

        Pipeline per image: grayscale -> RGB, bicubic resize to 299x299,
        ``keras.applications.inception_v3.preprocess_input`` (x / 127.5 - 1).
        Only one batch of 299x299 inputs is held in memory at a time.

        Args:
          images_uint8_nhwc: uint8 [N>=1, H, W, C], C in {1, 3}.
          batch_size: images per forward pass, >= 1.

        Returns:
          (features [N, 2048] float32, probs [N, 1000] float32).

        Raises:
          ValueError: on a non-uint8 / non-NHWC input or batch_size < 1.
        """
        images = np.asarray(images_uint8_nhwc)
        if (
            images.dtype != np.uint8
            or images.ndim != 4
            or images.shape[0] == 0
            or images.shape[3] not in (1, 3)
        ):
            raise ValueError(
                f"expected uint8 [N>=1, H, W, C in (1, 3)], got {images.dtype} {images.shape}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        features, probs = [], []
        for start in range(0, images.shape[0], batch_size):
            batch = np.stack(
                [_resize_to_inception(im) for im in images[start : start + batch_size]]
            )
            batch_features, batch_probs = self._model.predict_on_batch(
                keras.applications.inception_v3.preprocess_input(batch)
            )
            features.append(np.asarray(batch_features))
            probs.append(np.asarray(batch_probs))
        return np.concatenate(features), np.concatenate(probs)
