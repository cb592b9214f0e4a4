"""Input pipeline: images/s that ``training_stream`` delivers from prepared shards.

Two prepared sets: the bundled MNIST sample (what ``make repro`` trains on), written by
``stages/prepare.py``'s library calls into ``benchmarks/work/prepared-mnist``, and the
CelebA-like 64×64 set written by the prepare benchmark (made here if it is missing).
The stream is built as ``wgan.train`` builds it (``distribute_datasets_from_function``,
global batch 64) and pulled batch by batch with ``next()``; each batch is forced to
host memory so nothing is left lazy. Start-up (reading the shards into memory) is
reported separately. The target compares the steady rate with what training consumes:
real images per second of the dcgan wgan-gp XLA loop from ``train_steps`` (5 critic
batches per generator iteration), which must be ≤ 1/10 of the delivered rate.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.common import WORK, Figure, command, gated

SIZES = {"quick": dict(sets=("mnist",), batches=20, rounds=2, celeba=200),
         "default": dict(sets=("mnist", "celeba"), batches=300, rounds=5, celeba=20000)}
SIZES["full"] = SIZES["default"]
TARGET_FACTOR = 10
BATCH = 64


def _prepared_mnist():
    from wgan.config import parse_params
    from wgan.datasets import prepare

    out = WORK / "prepared-mnist"
    if not (out / "meta.json").is_file():
        prepare(parse_params({}).data, out)
    return out


def _prepared_celeba(n: int):
    from benchmarks.prepare import measure

    out = WORK / f"prepared-celeba-{n}"
    if not (out / "meta.json").is_file():
        measure(n)
    return out


def _consumption(results: dict, model: str) -> float | None:
    """Real images/s the wgan-gp XLA training loop of ``model`` consumes, if measured."""
    fig = results.get(f"train.{model}.wgan-gp.xla.iteration_s")
    if not fig or not fig.get("value"):
        return None
    d = fig["details"]
    return d["n_critic"] * d["batch"] / fig["value"]


def run(size: str = "default", results: dict | None = None) -> list[Figure]:
    import tensorflow as tf

    from wgan.prepared.read import training_stream

    spec = SIZES[size]
    results = results or {}
    figures = []
    strategy = tf.distribute.get_strategy()
    for name in spec["sets"]:
        path = _prepared_mnist() if name == "mnist" else _prepared_celeba(spec["celeba"])
        t0 = time.perf_counter()
        stream = iter(strategy.distribute_datasets_from_function(
            lambda ctx, path=path: training_stream(path, BATCH, seed=0, input_context=ctx)))
        next(stream).numpy()
        startup = time.perf_counter() - t0
        for _ in range(20):  # warm-up: fill prefetch buffers, settle autotune
            next(stream).numpy()
        def one_round(stream=stream):
            for _ in range(spec["batches"]):
                next(stream).numpy()

        gate = gated(one_round, spec["rounds"])
        rates = [spec["batches"] * BATCH / t for t in gate.seconds]
        rate = statistics.median(rates)
        model = "dcgan28" if name == "mnist" else "dcgan64"
        consumed = _consumption(results, model)
        factor = rate / consumed if consumed else None
        figures.append(Figure(
            id=f"input.{name}.images_per_s",
            what=f"training_stream on prepared {name} (batch {BATCH}), steady state",
            value=round(rate), unit="images/s", command=command("input_pipeline", size),
            target=f">= {TARGET_FACTOR}× training ({model} wgan-gp XLA)" if consumed else "",
            meets=factor >= TARGET_FACTOR if factor else None, load=gate.load,
            details={"startup_s": round(startup, 3), "rounds_images_per_s":
                     [round(r) for r in rates], "training_consumes_images_per_s":
                     round(consumed) if consumed else None,
                     "factor": round(factor, 1) if factor else None,
                     "rounds_discarded_for_load": gate.discarded}))
    return figures


if __name__ == "__main__":
    import sys

    for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(fig)
