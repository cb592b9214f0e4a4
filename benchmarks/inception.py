"""Inception features on CPU and the ``reference`` stage.

The real 2015-12-05 graph cannot be fetched here, and the tests' stand-in costs nothing.
So the network timed is a frozen graph of Keras' InceptionV3 (random weights, 299×299,
the same architecture and compute class as the 2015 graph: about 5.7 GFLOPs per image)
with the standard graph's tensor names (``Mul`` in, ``pool_3`` [N, 1, 1, 2048] and 1008
``logits`` out), run through :class:`wgan.metrics.inception.StandardInception`: the
product's loading, resizing, batching and ``tf.function`` path. Figures:

* images/s of ``features_and_probs`` on 32×32×3 and 64×64×3 uint8 inputs (batch 50);
* seconds of the ``reference`` stage's work (``wgan.reference.write_reference``) on
  10,000 MNIST-shaped test images with the domain classifier (the default run);
* the derived minutes to evaluate 10,000 samples with the standard network once the
  reference stage has cached the reference statistics and the floor images' outputs
  (10,000 generated images at the measured 32×32 rate), against the issue's "a few
  minutes".
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import WORK, Figure, command, gated

SIZES = {"quick": dict(images=4, repeats=1, reference_n=200),
         "default": dict(images=100, repeats=2, reference_n=10_000)}
SIZES["full"] = SIZES["default"]
TARGET_EVAL_MIN = 5  # "within a few minutes on 2 cores"


def _realistic_graph() -> object:
    """A frozen InceptionV3 GraphDef with the standard graph's tensor names."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    body = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg")
    weights = tf.constant(np.random.default_rng(0).normal(size=(2048, 1008)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def network(x):
        pool = tf.reshape(body(tf.identity(x, name="Mul")), [-1, 1, 1, 2048], name="pool_3")
        return tf.identity(tf.matmul(tf.reshape(pool, [-1, 2048]), weights), name="logits")

    return convert_variables_to_constants_v2(network.get_concrete_function()).graph.as_graph_def()


def _network():
    from wgan.metrics.inception import StandardInception

    path = WORK / "inception" / "inceptionv3_standin.pb"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_realistic_graph().SerializeToString())
    return StandardInception(path)


def _reference_seconds(n: int, repeats: int) -> float:
    from benchmarks.evaluation import _fixture
    from wgan.config import parse_params
    from wgan.reference import write_reference

    prepared, _, classifier, _ = _fixture(n)
    params = parse_params({"evaluate": {"n": n}, "sample": {"n": n}})
    return gated(lambda: write_reference(prepared, classifier, WORK / f"reference-{n}",
                                         params), repeats).median


def run(size: str = "default") -> list[Figure]:
    spec = SIZES[size]
    network = _network()
    rng = np.random.default_rng(0)
    figures, rates = [], {}
    for side in (32, 64):
        images = rng.integers(0, 256, (spec["images"], side, side, 3), dtype=np.uint8)
        network.features_and_probs(images[:2])  # trace once, off the clock
        gate = gated(lambda images=images: network.features_and_probs(images), spec["repeats"])
        rates[side] = spec["images"] / gate.median
        figures.append(Figure(
            id=f"inception.features{side}.images_per_s",
            what=f"standard-Inception pool_3 + probs of {side}×{side}×3 images on CPU "
                 "(InceptionV3-compute stand-in, batch 50)",
            value=round(rates[side], 2), unit="images/s", command=command("inception", size),
            load=gate.load, details={**gate.details(digits=2), "images": spec["images"]}))
    minutes = 10_000 / rates[32] / 60
    figures.append(Figure(
        id="inception.evaluate10k.minutes",
        what="evaluate 10,000 32×32 samples with the standard network, reference statistics "
             "and floor outputs cached (10,000 generated images at the measured rate)",
        value=round(minutes, 1), unit="min", command=command("inception", size),
        target=f"<= {TARGET_EVAL_MIN}", meets=minutes <= TARGET_EVAL_MIN,
        details={"derived_from": "inception.features32.images_per_s"}))
    t0 = time.perf_counter()
    seconds = _reference_seconds(spec["reference_n"], spec["repeats"])
    figures.append(Figure(
        id="reference.mnist10k.seconds" if size != "quick" else "reference.quick.seconds",
        what=f"reference stage: domain-classifier statistics of {spec['reference_n']:,} "
             "MNIST-shaped test images (no Inception)",
        value=round(seconds, 2), unit="s", command=command("inception", size),
        details={"wall_s_with_fixture": round(time.perf_counter() - t0, 1)}))
    return figures


if __name__ == "__main__":
    import sys

    for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(fig)
