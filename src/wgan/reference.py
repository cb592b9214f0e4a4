"""Reference statistics: the real data's features, computed once per feature extractor.

The ``reference`` stage (:func:`write_reference`) featurises the reference images of
:func:`wgan.scoring.reference_split` once, for every consumer: ``evaluate`` (its ``n``)
and the evaluations during training (``train.eval_n``) read the first rows they need
(:func:`read_reference`), which are exactly the features they used to compute
themselves. One file per extractor, in TTUR's ``.npz`` layout (``mu`` [D], ``sigma``
[D, D], float64, what TTUR's ``fid.py`` reads), plus ``features`` (float32 [n, D], in
reference order) for KID and precision/recall:

* ``classifier.npz``: the domain classifier (labelled images with a trained classifier);
* ``inception.npz``: the configured Inception network (``evaluate.inception``), when it is
  available; under a preset ``evaluate.protocol`` it holds the preset split's ``mu`` and
  ``sigma`` only (50,000 x 2048 features would be 400 MB).

``info.json`` says, per extractor, the file, the extractor (name and sha256), split and
``n``, or the reason there is no file. Every ``.npz`` read here (a published statistics
file included, ``evaluate.reference_stats``) is untrusted: its array headers are checked
(no object arrays, float, consistent [D] / [D, D] / [n, D] shapes, a bounded size)
before any data is read, and a bad file is one ``ValueError`` line naming it.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wgan.classifier import load_feature_extractor
from wgan.config import PROTOCOLS, InceptionConfig, Params
from wgan.files import atomic_path, npy_header, read_json, write_json
from wgan.metrics.frechet import feature_statistics
from wgan.prepared.format import PreparedMeta, read_meta
from wgan.scoring import classifier_outputs, read_split, reference_split

__all__ = ["FILES", "ReferenceStats", "load_inception", "read_reference", "read_stats",
           "reference_n", "write_reference", "write_stats"]

FILES = {"classifier": "classifier.npz", "inception": "inception.npz"}
INFO_FILE = "info.json"
MAX_DIM = 4096  # feature width; Inception's is 2048
MAX_ROWS = 10**7  # evaluate.n's bound
_RERUN = "re-run `dvc repro reference`"


@dataclass(frozen=True)
class ReferenceStats:
    """Mean [D] and covariance [D, D] of reference features, and the features [n, D] when
    kept (None for published statistics and preset protocols)."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None

    def prefix(self, n: int) -> ReferenceStats:
        """The statistics of the first ``n`` features: what a consumer at ``n`` computed."""
        features = self.features[:n]
        return ReferenceStats(*feature_statistics(features), features)


def write_stats(path: str | Path, features: np.ndarray, keep_features: bool = True) -> None:
    """Write ``mu``, ``sigma`` (TTUR layout) and, if kept, float32 ``features`` atomically."""
    mu, sigma = feature_statistics(features)
    arrays = {"mu": mu, "sigma": sigma}
    if keep_features:
        arrays["features"] = np.asarray(features, np.float32)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _checked_shapes(shapes: dict[str, tuple], path: Path, fix: str) -> None:
    if "mu" not in shapes or "sigma" not in shapes:
        raise ValueError(f"{path}: no 'mu' and 'sigma' arrays (TTUR's layout); {fix}")
    mu = shapes["mu"]
    dim = mu[0] if len(mu) == 1 and 2 <= mu[0] <= MAX_DIM else None
    features = shapes.get("features", (2, dim))
    if (dim is None or shapes["sigma"] != (dim, dim) or len(features) != 2
            or features[1] != dim or not 2 <= features[0] <= MAX_ROWS):
        raise ValueError(f"{path}: shapes {dict(shapes)} are not mu [D], sigma [D, D] and "
                         f"features [n>=2, D] with D <= {MAX_DIM}; {fix}")


def read_stats(path: str | Path, fix: str = _RERUN) -> ReferenceStats:
    """The statistics in an untrusted TTUR-layout ``.npz`` (``features`` optional).

    Raises:
      ValueError: one line naming ``path`` and then ``fix``: missing, not an npz, object
        or non-float arrays, or inconsistent shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: statistics file not found; {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for name in ("mu", "sigma", "features"):
                if f"{name}.npy" in archive.namelist():
                    with archive.open(f"{name}.npy") as f:
                        shape, _, dtype = npy_header(f)
                    if dtype.kind != "f":
                        raise ValueError(f"{path}: array {name!r} is {dtype}, not floats; {fix}")
                    headers[name] = shape
            _checked_shapes(headers, path, fix)
            arrays = {}
            for name in headers:
                with archive.open(f"{name}.npy") as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path}: not a complete .npz ({type(err).__name__}: {err}); "
                         f"{fix}") from err
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise ValueError(f"{path}: holds NaN or infinite values; {fix}")
    return ReferenceStats(arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64),
                          arrays.get("features"))


def reference_n(params: Params) -> int:
    """How many reference images the consumers need: ``evaluate``'s and training's ``n``."""
    evaluated = min(params.evaluate.n, params.sample.n)
    during_training = params.train.eval_n if params.train.eval_every is not None else 0
    return max(evaluated, during_training)


def load_inception(config: InceptionConfig, cache_dir: str | Path | None = None
                   ) -> tuple[Any | None, str | None]:
    """The configured Inception network, or (None, the reason it is unavailable).

    Never raises on a missing, wrong or undownloadable file: Inception is optional.
    """
    from wgan.metrics.inception import (
        InceptionExtractor,
        StandardInception,
        resolve_inception_weights,
    )
    from wgan.metrics.inception_graph import download_graph

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


def _classifier_entry(classifier_dir: str | Path, images: np.ndarray, split: str,
                      out_dir: Path) -> dict[str, Any]:
    extractor = load_feature_extractor(classifier_dir)
    if extractor is None:
        return {"reason": "no domain classifier (unlabelled data)"}
    write_stats(out_dir / FILES["classifier"], classifier_outputs(extractor, images)[0])
    return {"file": FILES["classifier"], "extractor": {"name": extractor.name,
                                                      "sha256": extractor.weights_sha256},
            "split": split, "n": len(images)}


def _inception_entry(prepared_dir: str | Path, meta: PreparedMeta, params: Params,
                     reference: tuple[np.ndarray, str], out_dir: Path) -> dict[str, Any]:
    evaluate = params.evaluate
    if evaluate.reference_stats is not None:
        return {"reason": f"evaluate.reference_stats ({evaluate.reference_stats}) is used"}
    network, reason = load_inception(evaluate.inception)
    if network is None:
        return {"reason": reason}
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
        info["classifier"] = info["inception"] = {"reason": "masks have no feature extractor"}
    else:
        split, n = reference_split(meta, reference_n(params))
        images = read_split(prepared_dir, split, n)[0]
        info["classifier"] = _classifier_entry(classifier_dir, images, split, out_dir)
        info["inception"] = _inception_entry(prepared_dir, meta, params, (images, split),
                                             out_dir)
    write_json(out_dir / INFO_FILE, info)
    return info


def read_reference(reference_dir: str | Path, family: str, sha256: str, split: str,
                   n: int) -> ReferenceStats:
    """The reference statistics of ``family`` for the first ``n`` images of ``split``,
    checked to come from the extractor with weights/graph ``sha256``.

    Raises:
      ValueError: one line naming the file when it is missing, for another extractor,
        split or fewer images, or malformed (then: re-run the reference stage).
    """
    info_path = Path(reference_dir) / INFO_FILE
    if not info_path.is_file():
        raise ValueError(f"{info_path} not found; run `dvc repro reference`")
    entry = read_json(info_path, 1 << 16, _RERUN)
    entry = entry.get(family) if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or "file" not in entry:
        reason = entry.get("reason") if isinstance(entry, dict) else "no entry"
        raise ValueError(f"{info_path}: no {family} statistics ({reason}); {_RERUN}")
    path = Path(reference_dir) / FILES[family]
    recorded = (entry.get("extractor") or {}).get("sha256"), entry.get("split")
    if recorded != (sha256, split) or not isinstance(entry.get("n"), int) or entry["n"] < n:
        raise ValueError(f"{path}: computed with extractor {recorded[0]} on "
                         f"{entry.get('n')} {recorded[1]} images, but {n} {split} images "
                         f"with {sha256} are needed; {_RERUN}")
    stats = read_stats(path)
    if stats.features is None and n == entry["n"]:
        return stats
    if stats.features is None or len(stats.features) != entry["n"]:
        raise ValueError(f"{path}: holds no features for the first {n} of the "
                         f"{entry['n']} images {INFO_FILE} names; {_RERUN}")
    return stats.prefix(n)
