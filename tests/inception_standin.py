"""A small stand-in for the 2015-12-05 Inception graph (the real file cannot be fetched here).

It has the real graph's tensor names around what the loader reads: TTUR's upstream
``ExpandDims`` input and in-graph ``ResizeBilinear``/``Sub``/``Mul``, ``pool_3`` of shape
[N, 1, 1, 2048], and either TF-GAN's ``logits`` or TTUR's ``softmax/logits/MatMul`` with a
batch-1 ``pool_3/_reshape`` as in ``classify_image_graph_def.pb``. Its pool_3 is a 299x299
VALID average pool of ``Mul`` (so it only has shape [N, 1, 1, ...] at 299x299) followed by
a linear map: for a constant-colour image of colour c it is exactly ((c - 128) / 128) @ W1.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from wgan.metrics.inception_graph import GRAPH_MEMBERS

MEMBER = {layout: name for name, layout in GRAPH_MEMBERS.items()}


def standin_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W1 [3, 2048] (pool_3), W2 [2048, 1008] and bias [1008] (logits)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(3, 2048)).astype(np.float32),
            (rng.normal(size=(2048, 1008)) / 10).astype(np.float32),
            rng.normal(size=1008).astype(np.float32))


def standin_graph_bytes(layout: str, seed: int = 0) -> bytes:
    """The serialized stand-in GraphDef in ``layout`` (``tfgan`` or ``ttur``)."""
    w1, w2, bias = standin_weights(seed)
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3], name="ExpandDims")
        resized = tf.raw_ops.ResizeBilinear(images=image, size=[299, 299], name="ResizeBilinear")
        mul = tf.multiply(tf.subtract(resized, 128.0, name="Sub"), 1 / 128, name="Mul")
        pooled = tf.nn.avg_pool2d(mul, 299, 1, "VALID")
        pool_3 = tf.nn.conv2d(pooled, tf.constant(w1[None, None]), 1, "VALID", name="pool_3")
        if layout == "tfgan":
            flat = tf.reshape(pool_3, [-1, 2048])
            tf.nn.bias_add(tf.matmul(flat, tf.constant(w2)), tf.constant(bias), name="logits")
        else:
            flat = tf.reshape(pool_3, [1, 2048], name="pool_3/_reshape")
            matmul = tf.matmul(flat, tf.constant(w2, name="softmax/weights"),
                               name="softmax/logits/MatMul")
            logits = tf.nn.bias_add(matmul, tf.constant(bias), name="softmax/logits")
            tf.nn.softmax(logits, name="softmax")
    return graph.as_graph_def().SerializeToString()


def write_tarball(path: Path, members: dict[str, bytes]) -> Path:
    """A gzipped tarball holding ``members`` (name -> bytes), as the published files are."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def expected_constant(colours: np.ndarray, layout: str,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and probs of constant-colour images (colours [N, 3] in 0..255), in numpy:
    any resize keeps a constant image, so only (c - 128) / 128 and the linear maps act."""
    w1, w2, bias = standin_weights(seed)
    features = ((np.asarray(colours, np.float64) - 128) / 128) @ w1
    logits = features @ w2 + (bias if layout == "tfgan" else 0.0)  # ttur: improved-gan's
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return features, probs / probs.sum(axis=1, keepdims=True)
