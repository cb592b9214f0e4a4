"""The ``reference`` stage: the real data's features, computed once per feature extractor.

:func:`write_reference` featurises the reference images of
:func:`wgan.scoring.reference_split` once, for every consumer: ``evaluate`` (its ``n``)
and the evaluations during training (``train.eval_n``) read the first rows they need
(:func:`wgan.reference_stats.read_reference`). One file per extractor
(:mod:`wgan.reference_stats` has the layout):

* ``classifier.npz``: the domain classifier (labelled images with a trained classifier);
* ``inception.npz``: the configured Inception network (``evaluate.inception``), when it is
  available; under a preset ``evaluate.protocol`` it holds the preset split's ``mu`` and
  ``sigma`` only (50,000 x 2048 features would be 400 MB);
* ``inception_floor.npz``: that network's features and class probabilities of
  ``evaluate``'s floor images (not under a preset, which has no floor), so ``evaluate``
  runs the network on its samples only: half the cost.

``info.json`` says, per extractor, the file, the extractor (name and sha256), split and
``n``, or the reason there is no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wgan.classifier import load_feature_extractor
from wgan.config import PROTOCOLS, Params
from wgan.files import write_json
from wgan.metrics.inception import load_inception
from wgan.prepared.format import PreparedMeta, read_meta
from wgan.reference_stats import FILES, INFO_FILE, write_floor, write_stats
from wgan.scoring import classifier_outputs, read_split, real_sets, reference_split

__all__ = ["reference_n", "write_reference"]


def _evaluated_n(params: Params) -> int:
    """How many samples ``evaluate`` scores (before the data's own limits)."""
    return min(params.evaluate.n, params.sample.n)


def reference_n(params: Params) -> int:
    """How many reference images the consumers need: ``evaluate``'s and training's ``n``."""
    during_training = params.train.eval_n if params.train.eval_every is not None else 0
    return max(_evaluated_n(params), during_training)


def _classifier_entry(classifier_dir: str | Path, images: np.ndarray, split: str,
                      out_dir: Path) -> dict[str, Any]:
    extractor = load_feature_extractor(classifier_dir)
    if extractor is None:
        return {"reason": "no domain classifier (unlabelled data)"}
    write_stats(out_dir / FILES["classifier"], classifier_outputs(extractor, images)[0])
    return {"file": FILES["classifier"], "extractor": {"name": extractor.name,
                                                      "sha256": extractor.weights_sha256},
            "split": split, "n": len(images)}


def _inception_entry(network: Any, prepared_dir: str | Path, meta: PreparedMeta,
                     params: Params, reference: tuple[np.ndarray, str],
                     out_dir: Path) -> dict[str, Any]:
    evaluate = params.evaluate
    if evaluate.reference_stats is not None:
        return {"reason": f"evaluate.reference_stats ({evaluate.reference_stats}) is used"}
    images, split = reference
    preset = PROTOCOLS.get(evaluate.protocol)
    if preset is not None:
        split = preset.split
        if split not in meta.counts:
            return {"reason": f"evaluate.protocol {evaluate.protocol} needs a {split} split, "
                              f"which {meta.dataset} has not"}
        images = read_split(prepared_dir, split, preset.n)[0]
    write_stats(out_dir / FILES["inception"], network.features_and_probs(images)[0],
                keep_features=preset is None)
    return {"file": FILES["inception"], "extractor": network.describe(), "split": split,
            "n": len(images), "protocol": evaluate.protocol}


def _inception_floor_entry(network: Any, prepared_dir: str | Path, meta: PreparedMeta,
                           params: Params, out_dir: Path) -> dict[str, Any]:
    if params.evaluate.protocol in PROTOCOLS:
        return {"reason": f"evaluate.protocol {params.evaluate.protocol} has no floor"}
    real = real_sets(prepared_dir, meta, _evaluated_n(params))
    write_floor(out_dir / FILES["inception_floor"], *network.features_and_probs(real.floor))
    return {"file": FILES["inception_floor"], "extractor": network.describe(),
            "rows": real.floor_rows}


def _inception_entries(prepared_dir: str | Path, meta: PreparedMeta, params: Params,
                       reference: tuple[np.ndarray, str], out_dir: Path) -> dict[str, Any]:
    """The Inception statistics and floor outputs, or why there are none."""
    network, reason = load_inception(params.evaluate.inception)
    if network is None:
        return {"inception": {"reason": reason}, "inception_floor": {"reason": reason}}
    return {"inception": _inception_entry(network, prepared_dir, meta, params, reference,
                                          out_dir),
            "inception_floor": _inception_floor_entry(network, prepared_dir, meta, params,
                                                      out_dir)}


def write_reference(prepared_dir: str | Path, classifier_dir: str | Path,
                    out_dir: str | Path, params: Params) -> dict[str, Any]:
    """Featurise the reference images once per extractor; write the files and ``info.json``."""
    meta = read_meta(prepared_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        (out_dir / name).unlink(missing_ok=True)  # never leave another run's file beside
    info: dict[str, Any] = {"dataset": meta.dataset}
    if not meta.is_image:
        info.update(dict.fromkeys(("classifier", "inception", "inception_floor"),
                                  {"reason": "masks have no feature extractor"}))
    else:
        split, n = reference_split(meta, reference_n(params))
        images = read_split(prepared_dir, split, n)[0]
        info["classifier"] = _classifier_entry(classifier_dir, images, split, out_dir)
        info.update(_inception_entries(prepared_dir, meta, params, (images, split), out_dir))
    write_json(out_dir / INFO_FILE, info)
    return info


