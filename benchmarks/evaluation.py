"""Evaluation: seconds to score 10,000 MNIST-shaped samples with ``wgan.evaluate.evaluate``.

The prepared set is MNIST-shaped and labelled (28×28×1, 10 classes): the 5,000 bundled
digits, each shifted by up to ±2 pixels to make 10,000 train and 10,000 test images, so
that ``n = 10,000`` is not shrunk to the bundled train split. The "generated" samples are
another 10,000 shifted digits. The domain classifier is trained once beforehand
(``wgan.classifier.train_classifier``, 1 epoch), and the reference features
(``wgan.reference.write_reference``, the ``reference`` stage) are computed, both off the
clock. The timed call is what ``stages/evaluate.py`` runs with the default ``evaluate``
params: the samples' features, FID, KID
(100 subsets of 1,000), precision/recall (k=3), classifier score, mode coverage, class
KL, and SWD, each with its real-vs-real floor; no Inception weights (those metrics are
null, as offline).
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import WORK, Figure, command, gated

SIZES = {"quick": dict(n=200, repeats=1), "default": dict(n=10_000, repeats=3)}
SIZES["full"] = SIZES["default"]
TARGET_S = 60


def _shifted_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` bundled MNIST digits, each rolled by up to ±2 pixels in x and y."""
    from wgan.config import parse_params
    from wgan.datasets import load_source

    source = load_source(parse_params({}).data)
    digits = [(x, y) for split in source.splits.values() for x, y in split]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(digits), n)
    shifts = rng.integers(-2, 3, (n, 2))
    pairs = zip(pick, shifts, strict=True)
    x = np.stack([np.roll(digits[i][0], tuple(s), axis=(0, 1)) for i, s in pairs])
    y = np.array([digits[i][1] for i in pick])
    return x, y


def _fixture(n: int):
    from wgan.classifier import train_classifier
    from wgan.config import ClassifierConfig
    from wgan.prepared.write import Source, write_prepared

    root = WORK / f"evaluate-{n}"
    prepared, samples, classifier = root / "prepared", root / "samples", root / "classifier"
    if not (classifier / "info.json").is_file():
        splits = {}
        for split, seed in (("train", 1), ("test", 2)):
            x, y = _shifted_digits(n, seed)
            splits[split] = list(zip(x, y.tolist(), strict=True))
        write_prepared(Source("mnist", (28, 28, 1), 10, splits, {"synthetic": "shifted"},
                              {s: n for s in splits}), prepared, 4, {})
        samples.mkdir(parents=True, exist_ok=True)
        np.savez(samples / "samples.npz", x=_shifted_digits(n, 3)[0])
        train_classifier(prepared, classifier, ClassifierConfig(epochs=1), seed=0)
    return prepared, samples, classifier, root / "plots"


def run(size: str = "default") -> list[Figure]:
    from wgan.config import EvaluateConfig, Params
    from wgan.evaluate import evaluate
    from wgan.reference import write_reference

    spec = SIZES[size]
    prepared, samples, classifier, plots = _fixture(spec["n"])
    config = EvaluateConfig(n=spec["n"]) if size != "quick" else EvaluateConfig(
        n=spec["n"], kid_subsets=5, kid_subset_size=50, swd_patches=8)
    reference = plots.parent / "reference"  # the reference stage, off the clock
    write_reference(prepared, classifier, reference, Params(evaluate=config))
    gate = gated(lambda: evaluate(prepared, samples, classifier, reference, plots, config,
                                  seed=0), spec["repeats"])
    metrics, value = gate.values[-1], gate.median
    return [Figure(
        id="evaluate.mnist10k.seconds" if size != "quick" else "evaluate.quick.seconds",
        what=f"evaluate {metrics['protocol']['n_samples']:,} MNIST-shaped samples "
             "(classifier features, FID, KID, P/R, SWD, with floors; no Inception)",
        value=round(value, 2), unit="s", command=command("evaluation", size),
        target=f"<= {TARGET_S}", meets=value <= TARGET_S, load=gate.load,
        details={**gate.details(digits=2),
                 "n_samples": metrics["protocol"]["n_samples"],
                 "includes_first_call": spec["repeats"] == 1})]


if __name__ == "__main__":
    import sys

    for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(fig)
