"""sample → classifier → evaluate on tiny datasets built here, plus each stage's main().

The labelled set is synthetic "digits": one Gaussian blob per class at a class-dependent
position, which the domain classifier learns in a second. The generators are untrained
one-layer Keras models, i.e. garbage, so every distance must lie above its real-vs-real
floor. No Inception weights are downloaded: without them (or with a broken file) its
metrics must be null with a reason; with a file, a stand-in network checks the plumbing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from inception_standin import standin_graph_bytes  # noqa: E402

from wgan.classifier import load_feature_extractor, train_classifier  # noqa: E402
from wgan.config import (  # noqa: E402
    PROTOCOLS,
    ClassifierConfig,
    EvaluateConfig,
    InceptionConfig,
    ModelConfig,
    Params,
    Protocol,
    SampleConfig,
    parse_params,
)
from wgan.datasets import masks as mask_reader  # noqa: E402
from wgan.datasets.safe_pickle import load_pickle  # noqa: E402
from wgan.evaluate import CLASSIFIER_KEYS, INCEPTION_KEYS, MASK_KEYS, evaluate  # noqa: E402
from wgan.metrics import inception  # noqa: E402
from wgan.metrics.frechet import (  # noqa: E402
    feature_statistics,
    fid_from_features,
    frechet_distance,
)
from wgan.metrics.inception import StandardInception  # noqa: E402
from wgan.models import latent_dim  # noqa: E402
from wgan.prepared.write import Source, write_prepared  # noqa: E402
from wgan.reference import write_reference  # noqa: E402
from wgan.reference_stats import (  # noqa: E402
    read_floor,
    read_reference,
    read_stats,
    write_floor,
)
from wgan.sample import write_samples  # noqa: E402
from wgan.scoring import classifier_outputs, read_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (28, 28, 1)
MASK_LENGTH = 64
SEED = 3
SAMPLE = SampleConfig(n=120, batch=50, grid=4)
CLASSIFIER = ClassifierConfig(epochs=4, batch=32, lr=3e-3)
EVALUATE = EvaluateConfig(n=100, kid_subsets=10, kid_subset_size=50, pr_k=3, swd_patches=8)
# Lower is better for these; for the others the floor is a ceiling.
DISTANCES = ("fid", "kid_mean", "class_kl")


def blob_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 28, 28, 1] noisy images of one bright blob whose position encodes the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    rows, cols = np.mgrid[0:28, 0:28]
    centres = np.stack([5 + 9 * (labels // 4), 4 + 7 * (labels % 4)], 1) + rng.normal(0, 0.7,
                                                                                        (n, 2))
    dist2 = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    images = 220 * np.exp(-dist2 / 8.0) + rng.uniform(0, 35, (n, 28, 28))
    return images.clip(0, 255).astype(np.uint8)[..., None], labels


def prefix_masks(n: int, seed: int) -> np.ndarray:
    lengths = np.random.default_rng(seed).integers(8, 48, n)
    return (np.arange(MASK_LENGTH)[None, :] < lengths[:, None]).astype(np.uint8)


def prepare(out: Path, shape: tuple[int, ...], splits: dict, num_classes: int | None) -> Path:
    examples = {name: [(x, None if y is None else int(y)) for x, y in zip(*arrays, strict=True)]
                for name, arrays in splits.items()}
    source = Source("synthetic", shape, num_classes, examples, {},
                    {name: len(e) for name, e in examples.items()})
    write_prepared(source, out, shards=2, params={})
    return out


def garbage_generator(path: Path, shape: tuple[int, ...]) -> Path:
    """An untrained generator with the pipeline's latent size: tanh images or sigmoid masks."""
    keras.utils.set_random_seed(0)
    z = keras.Input((latent_dim(ModelConfig(), shape),))
    if len(shape) == 3:
        x = keras.layers.Reshape(shape)(keras.layers.Dense(math.prod(shape), "tanh")(z))
    else:
        x = keras.layers.Dense(shape[0], "sigmoid")(z)
    keras.Model(z, x).save(path)
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict[str, Path]:
    """Prepared blob digits, a trained classifier and garbage samples, shared by the tests."""
    root = tmp_path_factory.mktemp("digits")
    prepared = prepare(root / "prepared", SHAPE, {"train": blob_digits(200, 0),
                                                  "test": blob_digits(100, 1)}, 10)
    generator = garbage_generator(root / "generator.keras", SHAPE)
    write_samples(generator, prepared, root / "samples", root / "report", SAMPLE, SEED)
    metrics = train_classifier(prepared, root / "classifier", CLASSIFIER, SEED)
    return {"root": root, "prepared": prepared, "generator": generator,
            "samples": root / "samples", "classifier": root / "classifier",
            "report": root / "report", "metrics": metrics}


def score(data: dict[str, Path], out: Path, config: EvaluateConfig = EVALUATE) -> dict:
    """The reference stage's features, then evaluate, as the pipeline runs them."""
    reference = out / "reference"
    write_reference(data["prepared"], data["classifier"], reference,
                    Params(sample=SAMPLE, evaluate=config))
    return evaluate(data["prepared"], data["samples"], data["classifier"], reference,
                    out / "plots", config, SEED)


@pytest.fixture(scope="module")
def digits_eval(digits) -> tuple[dict, Path]:
    result = score(digits, digits["root"])
    return result, digits["root"] / "plots"


def assert_paired_finite(section: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        assert set(section[key]) == {"value", "floor"}, key
        assert all(math.isfinite(v) for v in section[key].values()), (key, section[key])


def test_sample_writes_prepared_layout_and_grid(digits) -> None:
    with np.load(digits["samples"] / "samples.npz") as npz:
        x = npz["x"]
    assert x.shape == (SAMPLE.n, *SHAPE) and x.dtype == np.uint8
    assert (digits["report"] / "grid.png").is_file()
    assert not (digits["samples"] / "masks.pkl").exists()


def test_sample_is_deterministic_per_seed_and_batch_size(digits, tmp_path) -> None:
    def draw(seed: int, batch: int) -> np.ndarray:
        out = tmp_path / f"{seed}-{batch}"
        return write_samples(digits["generator"], digits["prepared"], out, out,
                             SampleConfig(n=SAMPLE.n, batch=batch, grid=2), seed)

    with np.load(digits["samples"] / "samples.npz") as npz:
        first = npz["x"]
    np.testing.assert_array_equal(draw(SEED, SAMPLE.batch), first)
    np.testing.assert_array_equal(draw(SEED, 7), first)
    assert not np.array_equal(draw(SEED + 1, SAMPLE.batch), first)


def test_classifier_learns_blobs_and_extracts_features(digits) -> None:
    assert digits["metrics"]["trained"] and digits["metrics"]["test_accuracy"] >= 0.9
    info = json.loads((digits["classifier"] / "info.json").read_text())
    assert info["num_classes"] == 10 and len(info["sha256"]) == 64
    extractor = load_feature_extractor(digits["classifier"])
    features, probs = extractor(np.zeros((5, *SHAPE), np.float32))
    assert features.shape == (5, 128) and probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_evaluate_reports_every_metric_with_a_floor(digits_eval) -> None:
    result, plots = digits_eval
    assert_paired_finite(result["classifier"], CLASSIFIER_KEYS)
    assert_paired_finite(result["swd"], ("28x28", "14x14", "avg"))
    assert result["protocol"] == {
        "dataset": "synthetic", "n_samples": EVALUATE.n, "n_reference": 100,
        "reference_split": "test", "seed": SEED, "inception": None,
        "feature_extractor": {"name": "domain-cnn", "sha256": result["protocol"]
                              ["feature_extractor"]["sha256"]}}
    assert (plots / "class_histogram.csv").read_text().startswith("class,real,generated\n")
    assert len((plots / "swd_levels.csv").read_text().splitlines()) == 4


def test_garbage_scores_worse_than_its_floor(digits_eval) -> None:
    result, _ = digits_eval
    for key in DISTANCES:
        assert result["classifier"][key]["value"] > result["classifier"][key]["floor"], key
    assert result["swd"]["avg"]["value"] > result["swd"]["avg"]["floor"]
    assert result["classifier"]["recall"]["value"] < result["classifier"]["recall"]["floor"]


@pytest.mark.parametrize("weights", [None, "missing.h5"])
def test_inception_without_weights_is_null_with_reason(digits_eval, digits, weights) -> None:
    result, _ = digits_eval
    if weights is not None:
        config = EvaluateConfig(**{**EVALUATE.__dict__, "inception": InceptionConfig(
            model="keras", weights=weights)})
        result = score(digits, digits["root"] / "missing", config)
        assert "missing.h5" in result["inception"]["reason"]
    assert result["inception"]["reason"]
    for key in INCEPTION_KEYS:
        assert result["inception"][key] == {"value": None, "floor": None}


def test_broken_inception_weights_do_not_fail_evaluation(digits, tmp_path) -> None:
    bad = tmp_path / "inception.h5"
    bad.write_bytes(b"not an h5 file")
    config = EvaluateConfig(n=20, kid_subsets=2, kid_subset_size=10, swd_patches=2,
                            inception=InceptionConfig(model="keras", weights=str(bad)))
    result = score(digits, tmp_path, config)
    assert result["inception"]["reason"].startswith("inception unavailable")
    assert result["inception"]["fid"]["value"] is None


class FakeInception:
    """Stands in for InceptionV3 (covered in test_metrics) to keep this plumbing test fast."""

    resize_filter = "PIL.BICUBIC"

    def __init__(self, weights: str) -> None:
        self.sha256 = hashlib.sha256(Path(weights).read_bytes()).hexdigest()

    def describe(self) -> dict[str, str]:
        return {"name": "keras InceptionV3 (ImageNet)", "sha256": self.sha256,
                "resize_filter": f"{self.resize_filter} to 299x299"}

    def features_and_probs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = images.reshape(len(images), -1)[:, ::49].astype(np.float32)
        logits = features[:, :10] / 50.0
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return features, probs


def test_inception_metrics_with_local_weights(digits, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(inception, "InceptionExtractor", FakeInception)
    weights = tmp_path / "inception.weights.h5"
    weights.write_bytes(b"weights")
    config = EvaluateConfig(n=40, kid_subsets=2, kid_subset_size=10, swd_patches=2,
                            inception=InceptionConfig(model="keras", weights=str(weights)))
    result = score(digits, tmp_path, config)
    assert "reason" not in result["inception"]
    assert_paired_finite(result["inception"], INCEPTION_KEYS)
    assert result["inception"]["fid"]["value"] > result["inception"]["fid"]["floor"]
    assert result["protocol"]["inception"] == {
        "name": "keras InceptionV3 (ImageNet)", "resize_filter": "PIL.BICUBIC to 299x299",
        "sha256": hashlib.sha256(b"weights").hexdigest(), "protocol": "custom",
        "n_samples": 40, "reference": {"split": "test", "n": 40}, "floor": "reference stage"}


def test_unlabelled_images_use_held_out_train_and_no_classifier(tmp_path) -> None:
    images, _ = blob_digits(120, 2)
    prepared = prepare(tmp_path / "prepared", SHAPE, {"train": (images, [None] * 120)}, None)
    metrics = train_classifier(prepared, tmp_path / "classifier", CLASSIFIER, SEED)
    assert metrics["trained"] is False and "labels" in metrics["reason"]
    assert load_feature_extractor(tmp_path / "classifier") is None
    generator = garbage_generator(tmp_path / "generator.keras", SHAPE)
    write_samples(generator, prepared, tmp_path / "samples", tmp_path / "report", SAMPLE, SEED)
    result = score({"prepared": prepared, "samples": tmp_path / "samples",
                    "classifier": tmp_path / "classifier"}, tmp_path)
    assert result["protocol"]["reference_split"] == "train[:60]"
    assert result["protocol"]["n_samples"] == 60
    assert result["classifier"]["fid"]["value"] is None and result["classifier"]["reason"]
    assert_paired_finite(result["swd"], ("avg",))


def test_masks_path(tmp_path) -> None:
    prepared = prepare(tmp_path / "prepared", (MASK_LENGTH,),
                       {"train": (prefix_masks(150, 0), [None] * 150),
                        "test": (prefix_masks(50, 1), [None] * 50)}, None)
    generator = garbage_generator(tmp_path / "generator.keras", (MASK_LENGTH,))
    meta_only = tmp_path / "meta-only"  # sample reads the prepared meta.json, no samples
    meta_only.mkdir()
    shutil.copy(prepared / "meta.json", meta_only)
    samples = write_samples(generator, meta_only, tmp_path / "samples", tmp_path / "report",
                            SAMPLE, SEED)
    pickled = tmp_path / "samples" / "masks.pkl"
    masks = load_pickle(pickled)
    assert masks.dtype == np.float32 and masks.shape == (SAMPLE.n, MASK_LENGTH)
    # The pickle is valid input for the mask dataset reader, sample for sample.
    data = parse_params({"data": {"name": "mask", "mask": {
        "path": str(pickled), "length": MASK_LENGTH, "test_fraction": 0.0}}}).data
    reread = [x.tobytes() for x, _ in mask_reader.load(data, tmp_path).splits["train"]]
    assert sorted(reread) == sorted(x.tobytes() for x in samples)
    train_classifier(prepared, tmp_path / "classifier", CLASSIFIER, SEED)
    result = score({"prepared": prepared, "samples": tmp_path / "samples",
                    "classifier": tmp_path / "classifier"}, tmp_path)
    assert set(result) == {"protocol", "masks"}
    assert_paired_finite(result["masks"], MASK_KEYS)
    assert result["masks"]["validity_rate"]["floor"] == 1.0
    assert result["masks"]["length_w1"]["value"] > result["masks"]["length_w1"]["floor"]
    # The real-vs-generated length histogram (dvc.yaml plot mask_length_histogram).
    with open(tmp_path / "plots" / "lengths.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["length", "real", "generated"] and len(rows) == 51
    for column in (1, 2):
        assert sum(float(row[column]) for row in rows[1:]) == pytest.approx(1.0)


def test_stage_scripts_run_end_to_end(digits, tmp_path) -> None:
    params = {"seed": SEED, "sample": {"n": 40, "batch": 20, "grid": 3},
              "classifier": {"epochs": 1, "batch": 32, "lr": 0.003},
              "evaluate": {"n": 40, "kid_subsets": 3, "kid_subset_size": 20, "pr_k": 3,
                           "swd_patches": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared, generator = str(digits["prepared"]), str(digits["generator"])
    waves = [  # sample and classifier read nothing of each other's: they run at once
        [["sample.py", generator, generator, prepared, "samples", "reports/sample"],
         ["classifier.py", prepared, "models/classifier", "metrics/classifier.json"]],
        [["reference.py", prepared, "models/classifier", "data/reference"]],
        [["evaluate.py", prepared, "samples", "models/classifier", "data/reference",
          "metrics/eval.json", "metrics/eval_plots"]],
    ]
    for wave in waves:
        procs = [subprocess.Popen([sys.executable, str(ROOT / "stages" / script), *args],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for script, *args in wave]
        try:
            for proc in procs:
                _, err = proc.communicate(timeout=240)
                assert proc.returncode == 0, err[-2000:]
        finally:
            for proc in procs:
                proc.kill()  # a no-op for a stage that has exited
                proc.wait()
    assert json.loads((tmp_path / "metrics/classifier.json").read_text())["trained"] is True
    result = json.loads((tmp_path / "metrics/eval.json").read_text())
    assert result["protocol"]["n_samples"] == 40
    assert_paired_finite(result["classifier"], CLASSIFIER_KEYS)
    assert (tmp_path / "reports/sample/grid.png").is_file()


# --- The standard Inception network, reference statistics and presets ------------------


@pytest.fixture(scope="module")
def standin_graph(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("graph") / "inception.pb"
    path.write_bytes(standin_graph_bytes("tfgan"))
    return path


def _standard(graph: Path, **evaluate_keys) -> EvaluateConfig:
    return EvaluateConfig(**{**EVALUATE.__dict__, "inception": InceptionConfig(graph=str(graph)),
                             **evaluate_keys})


def test_standard_inception_scores_against_the_reference_stage(digits, standin_graph,
                                                               tmp_path) -> None:
    result = score(digits, tmp_path, _standard(standin_graph))
    assert_paired_finite(result["inception"], INCEPTION_KEYS)
    assert result["inception"]["fid"]["value"] > result["inception"]["fid"]["floor"]
    entry = result["protocol"]["inception"]
    assert entry["sha256"] == hashlib.sha256(standin_graph.read_bytes()).hexdigest()
    assert entry["protocol"] == "custom" and entry["reference"] == {"split": "test", "n": 100}
    assert entry["floor"] == "reference stage"
    assert "ResizeBilinear" in entry["resize_filter"] and "(x - 128) / 128" in \
        entry["preprocessing"]
    # The reference stage's file is TTUR's layout, of the first n test images' features.
    network = StandardInception(standin_graph)
    test_images = read_split(digits["prepared"], "test", 100)[0]
    stats = read_stats(tmp_path / "reference" / "inception.npz")
    mu, sigma = feature_statistics(network.features_and_probs(test_images)[0])
    np.testing.assert_allclose(stats.mu, mu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.sigma, sigma, rtol=1e-5, atol=1e-5)


def test_the_inception_floor_is_cached_by_the_reference_stage(digits, standin_graph,
                                                              tmp_path) -> None:
    # Cached floor outputs give the values evaluate computes itself, and are really read.
    config = _standard(standin_graph)
    cached = score(digits, tmp_path, config)
    reference = tmp_path / "reference"
    info = json.loads((reference / "info.json").read_text())
    assert info["inception_floor"]["rows"] == "train[:100]"

    def rescore(n: int = config.n) -> dict:
        return evaluate(digits["prepared"], digits["samples"], digits["classifier"], reference,
                        tmp_path / "plots", EvaluateConfig(**{**config.__dict__, "n": n}), SEED)

    (reference / "inception_floor.npz").rename(tmp_path / "floor.npz")
    del info["inception_floor"]
    (reference / "info.json").write_text(json.dumps(info))
    computed = rescore()
    assert computed["protocol"]["inception"]["floor"] == "computed"
    for key in INCEPTION_KEYS:
        assert cached["inception"][key]["floor"] == pytest.approx(
            computed["inception"][key]["floor"], rel=1e-5), key
    # Outputs that differ from the network's change the floor: evaluate used the cache.
    features, probs = read_floor(tmp_path / "ref2", "x", "train[:100]", 100) or (None, None)
    assert features is None  # no reference stage there: nothing cached
    score(digits, tmp_path, config)
    with np.load(reference / "inception_floor.npz") as npz:
        features, probs = npz["features"], npz["probs"]
    write_floor(reference / "inception_floor.npz", features * 2, probs)
    assert rescore()["inception"]["fid"]["floor"] != pytest.approx(
        cached["inception"]["fid"]["floor"], rel=1e-3)
    # Another n means other floor rows: computed, not read.
    assert rescore(60)["protocol"]["inception"]["floor"] == "computed"


@pytest.mark.parametrize(("arrays", "match"), [
    ({"features": np.zeros((100, 8))}, r"not features \[100, D\] and probs"),
    ({"features": np.zeros((99, 8)), "probs": np.zeros((99, 4))}, r"not features \[100, D\]"),
    ({"features": np.zeros((100, 8)), "probs": np.full((100, 4), np.inf)}, "infinite"),
])
def test_a_malformed_floor_cache_is_refused_in_one_line(digits, standin_graph, tmp_path,
                                                        arrays, match) -> None:
    config = _standard(standin_graph)
    write_reference(digits["prepared"], digits["classifier"], tmp_path,
                    Params(sample=SAMPLE, evaluate=config))
    np.savez(tmp_path / "inception_floor.npz", **arrays)
    sha256 = hashlib.sha256(standin_graph.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=match) as err:
        read_floor(tmp_path, sha256, "train[:100]", 100)
    assert "\n" not in str(err.value) and "re-run `dvc repro reference`" in str(err.value)


def test_fid_against_a_published_statistics_file(digits, standin_graph, tmp_path) -> None:
    network = StandardInception(standin_graph)
    train_images = read_split(digits["prepared"], "train", 150)[0]
    mu, sigma = feature_statistics(network.features_and_probs(train_images)[0])
    published = tmp_path / "fid_stats_train.npz"
    np.savez(published, mu=mu, sigma=sigma)  # TTUR's layout
    result = score(digits, tmp_path, _standard(standin_graph, reference_stats=str(published)))
    samples = np.load(digits["samples"] / "samples.npz")["x"][:100]
    expected = frechet_distance(*feature_statistics(network.features_and_probs(samples)[0]),
                                mu, sigma)
    assert result["inception"]["fid"]["value"] == pytest.approx(expected, rel=1e-9)
    assert result["inception"]["kid_mean"] == {"value": None, "floor": None}
    assert math.isfinite(result["inception"]["fid"]["floor"])
    assert result["protocol"]["inception"]["reference"] == {
        "published": str(published), "sha256": hashlib.sha256(published.read_bytes()).hexdigest()}


def test_a_preset_scores_its_own_n_against_its_split(digits, standin_graph, tmp_path,
                                                     monkeypatch) -> None:
    monkeypatch.setitem(PROTOCOLS, "fid10k_test", Protocol(110, "test"))  # a small preset
    result = score(digits, tmp_path, _standard(standin_graph, protocol="fid10k_test"))
    entry = result["protocol"]["inception"]
    assert entry["protocol"] == "fid10k_test" and entry["n_samples"] == 110
    assert entry["reference"] == {"split": "test", "n": 100}  # the whole (smaller) split
    assert result["inception"]["fid"]["floor"] is None  # published protocols have none
    assert math.isfinite(result["inception"]["fid"]["value"])
    assert math.isfinite(result["inception"]["is10_std"]["value"])
    with np.load(tmp_path / "reference" / "inception.npz") as npz:
        assert sorted(npz.files) == ["mu", "sigma"]


@pytest.mark.parametrize(("arrays", "match"), [
    ({"mu": np.zeros(4), "sigma": np.zeros((3, 3))}, r"shapes .* are not mu \[D\]"),
    ({"mu": np.zeros(4)}, "no 'mu' and 'sigma'"),
    ({"mu": np.array([None] * 4), "sigma": np.zeros((4, 4))}, "not floats"),
    ({"mu": np.zeros(4), "sigma": np.full((4, 4), np.nan)}, "NaN"),
])
def test_untrusted_statistics_files_are_refused_in_one_line(tmp_path, arrays, match) -> None:
    path = tmp_path / "stats.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        read_stats(path, "fix it")
    assert "\n" not in str(err.value) and str(err.value).startswith(str(path))
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="not a complete .npz"):
        read_stats(path, "fix it")


def test_reference_features_of_another_classifier_are_refused(digits, tmp_path) -> None:
    write_reference(digits["prepared"], digits["classifier"], tmp_path,
                    Params(sample=SAMPLE, evaluate=EVALUATE))
    with pytest.raises(ValueError, match=r"computed with extractor \w+ on 100 test images, "
                                         r"but 50 test images with 0+ are needed; re-run"):
        read_reference(tmp_path, "classifier", "0" * 64, "test", 50)
    with pytest.raises(ValueError, match="no inception statistics"):
        read_reference(tmp_path, "inception", "0" * 64, "test", 50)


def test_swd_karras_is_reported_beside_swd_when_asked(digits, tmp_path) -> None:
    config = EvaluateConfig(**{**EVALUATE.__dict__, "swd_karras": True})
    result = score(digits, tmp_path, config)
    assert_paired_finite(result["swd_karras"], ("28x28", "avg"))
    assert result["swd_karras"]["avg"]["value"] > result["swd_karras"]["avg"]["floor"]


def test_evaluate_reads_the_first_n_reference_features(digits, tmp_path) -> None:
    # The reference stage keeps features of all 100 test images; evaluate at n=40 must
    # score against the first 40 only, exactly as featurising them itself would.
    config = EvaluateConfig(**{**EVALUATE.__dict__, "n": 40})
    write_reference(digits["prepared"], digits["classifier"], tmp_path / "reference",
                    Params(sample=SAMPLE, evaluate=EVALUATE))
    result = evaluate(digits["prepared"], digits["samples"], digits["classifier"],
                      tmp_path / "reference", tmp_path / "plots", config, SEED)
    extractor = load_feature_extractor(digits["classifier"])
    samples = np.load(digits["samples"] / "samples.npz")["x"][:40]
    reference = read_split(digits["prepared"], "test", 40)[0]
    expected = fid_from_features(classifier_outputs(extractor, samples)[0],
                                 classifier_outputs(extractor, reference)[0])
    assert result["classifier"]["fid"]["value"] == expected
