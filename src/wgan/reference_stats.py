"""Reference statistics files: TTUR's ``.npz`` layout, written and read untrusted.

A file holds ``mu`` [D] and ``sigma`` [D, D] in float64 (what TTUR's ``fid.py`` reads),
plus ``features`` (float32 [n, D], in reference order) when KID and precision/recall
need them. The ``reference`` stage (:mod:`wgan.reference`) writes one per feature
extractor with an ``info.json`` beside; ``evaluate`` and the evaluations during training
read the first rows they need (:func:`read_reference`), which are exactly the features
they used to compute themselves. With Inception, ``inception_floor.npz`` also caches the
network's outputs on the floor images (:func:`read_floor`), so ``evaluate`` runs the
costly network on the generated samples only. Every ``.npz`` read here (a published statistics file
included, ``evaluate.reference_stats``) is untrusted: its array headers are checked (no
object arrays, float, consistent [D] / [D, D] / [n, D] shapes, bounded sizes) before any
data is read, and a bad file is one ``ValueError`` line naming it.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wgan.files import atomic_path, npy_header, read_json
from wgan.metrics.frechet import feature_statistics

__all__ = ["FILES", "INFO_FILE", "ReferenceStats", "read_floor", "read_reference", "read_stats",
           "write_floor", "write_stats"]

FILES = {"classifier": "classifier.npz", "inception": "inception.npz",
         "inception_floor": "inception_floor.npz"}
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


def _read_arrays(path: Path, names: tuple[str, ...], check: Callable[[dict], None],
                 fix: str) -> dict[str, np.ndarray]:
    """The float arrays of ``names`` present in an untrusted ``.npz``: their headers are
    judged by ``check`` (shapes) before any data is read."""
    if not path.is_file():
        raise ValueError(f"{path}: statistics file not found; {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for name in names:
                if f"{name}.npy" in archive.namelist():
                    with archive.open(f"{name}.npy") as f:
                        shape, _, dtype = npy_header(f)
                    if dtype.kind != "f":
                        raise ValueError(f"{path}: array {name!r} is {dtype}, not floats; {fix}")
                    headers[name] = shape
            check(headers)
            arrays = {}
            for name in headers:
                with archive.open(f"{name}.npy") as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path}: not a complete .npz ({type(err).__name__}: {err}); "
                         f"{fix}") from err
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise ValueError(f"{path}: holds NaN or infinite values; {fix}")
    return arrays


def read_stats(path: str | Path, fix: str = _RERUN) -> ReferenceStats:
    """The statistics in an untrusted TTUR-layout ``.npz`` (``features`` optional).

    Raises:
      ValueError: one line naming ``path`` and then ``fix``: missing, not an npz, object
        or non-float arrays, or inconsistent shapes.
    """
    path = Path(path)
    arrays = _read_arrays(path, ("mu", "sigma", "features"),
                          lambda shapes: _checked_shapes(shapes, path, fix), fix)
    return ReferenceStats(arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64),
                          arrays.get("features"))


def write_floor(path: str | Path, features: np.ndarray, probs: np.ndarray) -> None:
    """Write the floor images' network outputs (float32 ``features``, ``probs``) atomically."""
    with atomic_path(path) as tmp:
        np.savez(tmp, features=np.asarray(features, np.float32),
                 probs=np.asarray(probs, np.float32))


def _checked_floor_shapes(shapes: dict[str, tuple], n: int, path: Path) -> None:
    features, probs = shapes.get("features", ()), shapes.get("probs", ())
    if (len(features) != 2 or len(probs) != 2 or features[0] != n or probs[0] != n
            or not 2 <= features[1] <= MAX_DIM or not 2 <= probs[1] <= MAX_DIM):
        raise ValueError(f"{path}: shapes {dict(shapes)} are not features [{n}, D] and probs "
                         f"[{n}, C] with D, C <= {MAX_DIM}; {_RERUN}")


def read_floor(reference_dir: str | Path, sha256: str, rows: str,
               n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The network outputs (features, class probabilities) of the floor images ``rows``
    (:attr:`wgan.scoring.RealSets.floor_rows`, ``n`` of them) that the reference stage
    cached, or None when it cached other rows or another network's: the caller then
    computes them.

    Raises:
      ValueError: one line naming the file, when the cache it names is malformed.
    """
    info_path = Path(reference_dir) / INFO_FILE
    info = read_json(info_path, 1 << 16, _RERUN) if info_path.is_file() else None
    entry = info.get("inception_floor") if isinstance(info, dict) else None
    if (not isinstance(entry, dict) or entry.get("rows") != rows
            or (entry.get("extractor") or {}).get("sha256") != sha256):
        return None
    path = Path(reference_dir) / FILES["inception_floor"]
    arrays = _read_arrays(path, ("features", "probs"),
                          lambda shapes: _checked_floor_shapes(shapes, n, path), _RERUN)
    return arrays["features"], arrays["probs"]


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
