"""Drawing samples from a generator, the one way every consumer does it.

The noise is z ~ N(0, 1) from a fresh ``numpy`` generator seeded by the caller: no global
RNG state is read or changed, so the same seed gives the same samples, and because the
stream is drawn in order they do not depend on the batch size either. The ``sample``
stage and the evaluations during training (:mod:`wgan.monitor`) draw with the same seed,
so the latter's samples are the first ones of the former.

A class-conditional generator (``model.conditional``) draws sample i of the stream as
class i mod K, so every class gets the same share of any run of K samples, and a grid K
wide has one class per column.
"""

from __future__ import annotations

import keras
import numpy as np

from wgan.model_files import generator_classes
from wgan.prepared.format import to_uint8

__all__ = ["generate", "generator_inputs"]


def generator_inputs(z: np.ndarray, start: int, classes: int | None) -> np.ndarray | list:
    """What a generator of ``classes`` (None: unconditional) takes for the noise ``z``
    [n, z_dim] at stream position ``start``: ``z``, or ``[z, labels]`` with labels
    (start + i) mod ``classes``."""
    if classes is None:
        return z
    return [z, (np.arange(start, start + len(z)) % classes).astype(np.int32)]


def generate(generator: keras.Model, n: int, batch: int, seed: int, is_image: bool) -> np.ndarray:
    """``n`` uint8 samples in the prepared layout, ``batch`` generator calls at a time."""
    z_dim, classes = generator.inputs[0].shape[-1], generator_classes(generator)
    rng = np.random.default_rng(seed)
    out = None
    for start in range(0, n, batch):
        z = rng.standard_normal((min(batch, n - start), z_dim), dtype=np.float32)
        x = generator(generator_inputs(z, start, classes), training=False)
        x = to_uint8(keras.ops.convert_to_numpy(x), is_image)
        if out is None:
            out = np.empty((n, *x.shape[1:]), np.uint8)
        out[start:start + len(x)] = x
    return out
