"""Tests for wgan.metrics: analytic cases, hand-computed values and properties."""

from __future__ import annotations

import hashlib
import math

import keras
import numpy as np
import pytest
import scipy.ndimage
from scipy import linalg

from wgan.metrics import inception
from wgan.metrics.classes import class_histogram_kl, classifier_score, mode_coverage
from wgan.metrics.frechet import fid_from_features, frechet_distance
from wgan.metrics.kid import kernel_inception_distance
from wgan.metrics.masks import (
    histogram_coverage,
    is_valid_mask,
    length_bins,
    length_ks,
    length_wasserstein,
    mask_lengths,
    validity_rate,
)
from wgan.metrics.precision_recall import precision_recall
from wgan.metrics.swd import sliced_wasserstein_distance, sliced_wasserstein_karras


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- Fréchet distance -------------------------------------------------------


@pytest.mark.parametrize(("n", "dim"), [(500, 16), (50, 64)])
def test_fid_of_set_with_itself_is_zero(n: int, dim: int) -> None:
    # (50, 64): rank-deficient covariance, where sqrtm-based FID goes complex/NaN.
    features = _rng().standard_normal((n, dim)) * 3.0 + 1.0
    fid = fid_from_features(features, features)
    assert isinstance(fid, float)
    assert math.isfinite(fid)
    assert fid <= 1e-6


def _diagonal_closed_form(mu1, var1, mu2, var2) -> float:
    """||mu1-mu2||^2 + sum (sqrt(a) - sqrt(b))^2 for diagonal covariances."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


def test_frechet_distance_diagonal_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = _diagonal_closed_form(mu1, var1, mu2, var2)
    assert expected == pytest.approx(1.0 + 6.25 + 4.0 + 1.0)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(
        expected, rel=1e-12
    )


def test_frechet_distance_non_diagonal_matches_sqrtm() -> None:
    rng = _rng(1)
    a, b = rng.standard_normal((2, 6, 6))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.standard_normal((2, 6))
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2.0 * covmean)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_fid_from_samples_matches_gaussian_closed_form() -> None:
    rng = _rng(2)
    mu1, mu2 = np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.5, 0.0, 1.0, -1.0])
    var1, var2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.0, 0.5, 2.0, 1.0])
    n = 200_000
    f1 = mu1 + rng.standard_normal((n, 4)) * np.sqrt(var1)
    f2 = mu2 + rng.standard_normal((n, 4)) * np.sqrt(var2)
    expected = _diagonal_closed_form(mu1, var1, mu2, var2)
    assert fid_from_features(f1, f2) == pytest.approx(expected, abs=0.02)


def test_frechet_distance_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# --- KID --------------------------------------------------------------------


def test_kid_same_distribution_is_unbiased() -> None:
    rng = _rng(4)
    f1, f2 = rng.standard_normal((2, 400, 16))
    mean, std = kernel_inception_distance(f1, f2, n_subsets=50, subset_size=100)
    assert std > 0
    assert abs(mean) < 0.5 * std
    single_subset = [
        kernel_inception_distance(f1, f2, n_subsets=1, subset_size=100, seed=s)[0]
        for s in range(10)
    ]
    assert min(single_subset) < 0 < max(single_subset)


def test_kid_grows_with_shift() -> None:
    rng = _rng(5)
    f1, noise = rng.standard_normal((2, 300, 8))
    means = [
        kernel_inception_distance(f1, noise + shift, n_subsets=10, subset_size=100)[0]
        for shift in (0.0, 0.3, 1.0)
    ]
    assert means[0] < means[1] < means[2]
    assert means[1] > 0


def test_kid_caps_subset_size() -> None:
    rng = _rng(6)
    f1, f2 = rng.standard_normal((30, 4)), rng.standard_normal((20, 4)) + 1.0
    capped = kernel_inception_distance(f1, f2, n_subsets=3, subset_size=1000)
    assert capped == kernel_inception_distance(f1, f2, n_subsets=3, subset_size=20)


# --- Precision / recall -----------------------------------------------------


def test_precision_recall_identical_sets() -> None:
    features = _rng(7).standard_normal((300, 8))
    assert precision_recall(features, features, k=3, batch_size=64) == (1.0, 1.0)


def test_precision_recall_disjoint_sets() -> None:
    rng = _rng(8)
    real = rng.standard_normal((200, 8))
    fake = rng.standard_normal((200, 8)) + 100.0
    assert precision_recall(real, fake, k=3, batch_size=64) == (0.0, 0.0)


def test_precision_recall_half_of_modes() -> None:
    rng = _rng(9)
    n = 1000
    real = np.concatenate([rng.uniform(0, 1, (n, 2)), rng.uniform(10, 11, (n, 2))])
    fake = rng.uniform(0, 1, (n, 2))  # covers only the first real mode
    precision, recall = precision_recall(real, fake, k=3, batch_size=300)
    assert precision > 0.95
    assert recall == pytest.approx(0.5, abs=0.03)


def test_precision_recall_batching_does_not_change_result() -> None:
    rng = _rng(10)
    real, fake = rng.standard_normal((150, 4)), rng.standard_normal((120, 4)) * 1.5
    assert precision_recall(real, fake, batch_size=7) == precision_recall(
        real, fake, batch_size=1000
    )


# --- SWD --------------------------------------------------------------------


def _smooth_images(n: int, size: int, channels: int, seed: int) -> np.ndarray:
    """Random images in [40, 200] built from upsampled noise, so all levels carry signal."""
    rng = _rng(seed)
    coarse = rng.uniform(40, 200, (n, size // 4, size // 4, channels))
    fine = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    return np.clip(fine + rng.normal(0, 10, fine.shape), 40, 200).astype(np.uint8)


SWD_ARGS = {"patches_per_image": 16, "n_projections": 32, "n_repeats": 2}


@pytest.mark.parametrize(
    ("size", "channels", "levels"),
    [(28, 1, ["28x28", "14x14"]), (32, 3, ["32x32", "16x16", "8x8"])],
)
def test_swd_identical_sets_is_zero(size: int, channels: int, levels: list[str]) -> None:
    images = _smooth_images(32, size, channels, seed=11)
    result = sliced_wasserstein_distance(images, images.copy(), **SWD_ARGS)
    assert list(result) == [*levels, "avg"]
    assert all(value == 0.0 for value in result.values())


def test_swd_grows_with_brightness_shift() -> None:
    images = _smooth_images(64, 28, 1, seed=12)
    averages = [
        sliced_wasserstein_distance(images, images + np.uint8(shift), **SWD_ARGS)["avg"]
        for shift in (0, 5, 20, 50)
    ]
    assert averages[0] == 0.0
    assert averages == sorted(averages)
    assert len(set(averages)) == len(averages)


def test_swd_separates_different_image_sets() -> None:
    images = _smooth_images(64, 28, 1, seed=13)
    same_law = _smooth_images(64, 28, 1, seed=14)
    noise = _rng(15).integers(40, 200, images.shape, dtype=np.uint8)
    near = sliced_wasserstein_distance(images, same_law, **SWD_ARGS)
    far = sliced_wasserstein_distance(images, noise, **SWD_ARGS)
    assert 0 < near["avg"] < far["avg"]
    assert near["28x28"] < far["28x28"]


def test_swd_rejects_bad_input() -> None:
    images = _smooth_images(4, 28, 1, seed=16)
    with pytest.raises(ValueError):
        sliced_wasserstein_distance(images, images[:3])
    with pytest.raises(ValueError):
        sliced_wasserstein_distance(images.astype(np.float32), images.astype(np.float32))


def _karras_reference_swd(a: np.ndarray, b: np.ndarray, seed: int) -> list[float]:
    """The PGGAN protocol written out from Karras et al.'s description, NCHW with 2-D
    convolutions and its own RNG: an independent check of the port's numbers."""
    rng = np.random.RandomState(seed)
    kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])[None, None].astype(np.float32) / 256

    def pyramid(x):
        levels = [np.float32(x.transpose(0, 3, 1, 2))]
        while levels[-1].shape[2] // 2 >= 16:
            down = scipy.ndimage.convolve(levels[-1], kernel, mode="mirror")[:, :, ::2, ::2]
            up = np.zeros_like(levels[-1])
            up[:, :, ::2, ::2] = down
            levels[-1] = levels[-1] - scipy.ndimage.convolve(up, kernel * 4, mode="mirror")
            levels.append(down)
        return levels

    def descriptors(level):
        n, c, h, w = level.shape
        rows = rng.randint(3, h - 3, size=n * 128)
        cols = rng.randint(3, w - 3, size=n * 128)
        d = np.stack([level[i // 128, :, y - 3:y + 4, x - 3:x + 4]
                      for i, (y, x) in enumerate(zip(rows, cols, strict=True))])
        d = (d - d.mean(axis=(0, 2, 3), keepdims=True)) / d.std(axis=(0, 2, 3), keepdims=True)
        return d.reshape(len(d), -1)

    out = []
    for la, lb in zip(pyramid(a), pyramid(b), strict=True):
        da, db = descriptors(la), descriptors(lb)
        dists = []
        for _ in range(4):
            dirs = rng.randn(da.shape[1], 128)
            dirs /= np.sqrt((dirs ** 2).sum(axis=0, keepdims=True))
            dists.append(np.abs(np.sort(da @ dirs, axis=0) - np.sort(db @ dirs, axis=0)).mean())
        out.append(1e3 * np.mean(dists))
    return out


def test_swd_karras_matches_the_reference_protocol() -> None:
    a = _smooth_images(150, 32, 3, seed=21)
    b = np.clip(_smooth_images(150, 32, 3, seed=22).astype(int) * 1.3 - 30, 0, 255)
    b = b.astype(np.uint8)
    ours = sliced_wasserstein_karras(a, b, seed=1)
    assert list(ours) == ["32x32", "16x16", "avg"]
    reference = _karras_reference_swd(a, b, seed=2)
    np.testing.assert_allclose([ours["32x32"], ours["16x16"]], reference, rtol=0.1)
    assert ours["avg"] == pytest.approx(np.mean(reference), rel=0.1)


def test_swd_karras_normalizes_each_set_and_stops_at_16px() -> None:
    images = _smooth_images(100, 28, 1, seed=23)
    brighter = (images.astype(np.float32) * 0.5 + 60).astype(np.uint8)
    same = sliced_wasserstein_karras(images, images.copy(), seed=3)
    shifted = sliced_wasserstein_karras(images, brighter, seed=3)
    assert list(same) == ["28x28", "avg"]  # 14 px < 16: one level, as in the paper
    assert shifted["avg"] < 2 * same["avg"]  # blind to brightness and contrast
    assert sliced_wasserstein_distance(images, brighter, **SWD_ARGS)["avg"] > 10 * shifted["avg"]
    with pytest.raises(ValueError):
        sliced_wasserstein_karras(images, images[:3])


# --- Classifier-based metrics -----------------------------------------------


def test_classifier_score_extremes() -> None:
    one_hot = np.eye(10)[np.repeat(np.arange(10), 7)]
    assert classifier_score(one_hot) == pytest.approx(10.0, rel=1e-12)
    identical = np.tile([0.2, 0.3, 0.5], (20, 1))
    assert classifier_score(identical) == pytest.approx(1.0, rel=1e-12)


def test_classifier_score_hand_computed() -> None:
    # Marginal [0.75, 0.25]; KL1 = log(1/0.75), KL2 = 0.5 log(0.5/0.75) + 0.5 log(0.5/0.25).
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    kl1 = math.log(1 / 0.75)
    kl2 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert classifier_score(probs) == pytest.approx(math.exp((kl1 + kl2) / 2), rel=1e-12)


def test_classifier_score_rejects_non_distributions() -> None:
    with pytest.raises(ValueError):
        classifier_score(np.array([[0.5, 0.6]]))


def test_mode_coverage() -> None:
    # n = 10, 4 classes: expected share 2.5, threshold 1.25 -> classes 0 and 1 only.
    labels = np.array([0] * 5 + [1] * 3 + [2] * 1 + [3] * 1)
    assert mode_coverage(labels, num_classes=4) == 2
    assert mode_coverage(np.repeat(np.arange(5), 3), num_classes=5) == 5
    assert mode_coverage(np.zeros(9, dtype=int), num_classes=3) == 1
    with pytest.raises(ValueError):
        mode_coverage(np.array([0, 3]), num_classes=3)


def test_class_histogram_kl() -> None:
    assert class_histogram_kl(np.array([0, 0, 1, 1]), np.array([1, 0, 1, 0]), 2) == pytest.approx(
        0.0, abs=1e-12
    )
    # p = [0.75, 0.25], q = [0.5, 0.5]
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    kl = class_histogram_kl(np.array([0, 0, 0, 1]), np.array([0, 1, 0, 1]), 2, eps=1e-12)
    assert kl == pytest.approx(expected, rel=1e-9)
    # A class absent from the real labels: finite thanks to eps, and large.
    missing = class_histogram_kl(np.array([0, 1]), np.array([0, 0]), 2, eps=1e-6)
    assert 5.0 < missing < math.inf


# --- Masks ------------------------------------------------------------------

MASKS = np.array(
    [
        [1, 1, 1, 0, 0],  # valid, 3
        [1, 0, 1, 0, 0],  # gap, 2
        [0, 0, 0, 0, 0],  # all zeros, 0
        [0, 1, 1, 0, 0],  # does not start at 0, 2
        [1, 1, 1, 1, 1],  # valid, full, 5
        [0.9, 0.6, 0.4, 0.1, 0.0],  # valid after rounding, 2
        [0.5, 0.49, 0.0, 0.0, 0.0],  # 0.5 rounds up: valid, 1
    ]
)


def test_mask_validity_and_lengths() -> None:
    expected_valid = [True, False, False, False, True, True, True]
    np.testing.assert_array_equal(is_valid_mask(MASKS), expected_valid)
    np.testing.assert_array_equal(is_valid_mask(MASKS[:5].astype(np.uint8)), expected_valid[:5])
    np.testing.assert_array_equal(mask_lengths(MASKS), [3, 2, 0, 2, 5, 2, 1])
    assert validity_rate(MASKS) == pytest.approx(4 / 7)
    np.testing.assert_array_equal(is_valid_mask(np.array([[1], [0]])), [True, False])


def test_length_distances_hand_computed() -> None:
    assert length_wasserstein(np.array([1, 2, 3]), np.array([2, 3, 4])) == pytest.approx(1.0)
    # Equal sizes: mean |sorted difference| = (1 + 1 + 3) / 3.
    assert length_wasserstein(np.array([0, 0, 4]), np.array([1, 1, 1])) == pytest.approx(5 / 3)
    # At t = 2: F_real = 2/3, F_gen = 0.
    assert length_ks(np.array([1, 2, 3]), np.array([3, 4, 5])) == pytest.approx(2 / 3)
    assert length_ks(np.array([1, 2, 3]), np.array([3, 2, 1])) == 0.0


def test_length_bins_are_fixed_by_the_mask_length() -> None:
    np.testing.assert_array_equal(length_bins(100), np.arange(0, 102, 2))
    assert len(length_bins(7)) == 51 and length_bins(7)[-1] == 7


def test_histogram_coverage() -> None:
    edges = np.array([0, 2, 4, 6, 8, 10])
    real = np.array([1, 1, 5, 9])  # occupies bins [0,2), [4,6), [8,10]
    assert histogram_coverage(real, np.array([1, 9, 3]), bins=edges) == pytest.approx(2 / 3)
    assert histogram_coverage(real, real, bins=edges) == 1.0
    assert histogram_coverage(real, np.array([20, 30]), bins=4) == 0.0


# --- Inception plumbing -----------------------------------------------------


@pytest.fixture(scope="module")
def random_extractor() -> inception.InceptionExtractor:
    return inception.InceptionExtractor(weights=None)


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (32, 3)])
def test_inception_shapes_and_probs(random_extractor, size: int, channels: int) -> None:
    images = _rng(17).integers(0, 256, (4, size, size, channels), dtype=np.uint8)
    features, probs = random_extractor.features_and_probs(images, batch_size=3)
    assert features.shape == (4, 2048)
    assert probs.shape == (4, 1000)
    assert np.all(np.isfinite(features))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert random_extractor.resize_filter == "PIL.BICUBIC"
    assert random_extractor.sha256 is None


def test_inception_grayscale_equals_repeated_rgb(random_extractor) -> None:
    gray = _rng(18).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    gray_features, _ = random_extractor.features_and_probs(gray)
    rgb_features, _ = random_extractor.features_and_probs(np.repeat(gray, 3, axis=-1))
    np.testing.assert_allclose(gray_features, rgb_features, rtol=1e-5, atol=1e-6)


def test_inception_loads_weights_file(tmp_path) -> None:
    source = keras.applications.InceptionV3(include_top=True, weights=None)
    path = str(tmp_path / "inception.weights.h5")
    source.save_weights(path)
    extractor = inception.InceptionExtractor(weights=path)
    with open(path, "rb") as handle:
        assert extractor.sha256 == hashlib.sha256(handle.read()).hexdigest()
    images = _rng(19).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    _, probs = extractor.features_and_probs(images)
    resized = np.stack([inception._resize_to_inception(image) for image in images])
    expected = source.predict_on_batch(keras.applications.inception_v3.preprocess_input(resized))
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)


def test_resolve_inception_weights_offline(tmp_path) -> None:
    path, reason = inception.resolve_inception_weights(None, download=False)
    assert path is None
    assert "evaluate.inception.weights" in reason
    missing = str(tmp_path / "missing.h5")
    path, reason = inception.resolve_inception_weights(missing, download=False)
    assert path is None
    assert missing in reason
    existing = tmp_path / "present.h5"
    existing.write_bytes(b"stub")
    assert inception.resolve_inception_weights(str(existing), download=False) == (
        str(existing),
        None,
    )
