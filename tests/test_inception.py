"""The standard Inception network: graph files, preprocessing, batching, download and refusals.

A stand-in graph with the real tensor names (tests/inception_standin.py) is written as a
.pb and in both published tarball layouts; constant-colour images survive any resize, so
their features and probabilities are known exactly in numpy. Downloads come from a real
HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from inception_standin import MEMBER, expected_constant, standin_graph_bytes, write_tarball

from wgan.metrics import inception_graph
from wgan.metrics.classes import inception_score
from wgan.metrics.inception import StandardInception
from wgan.metrics.inception_graph import download_graph, read_inception_graph

COLOURS = np.array([[0, 128, 255], [10, 20, 30], [200, 100, 50], [255, 255, 255],
                    [1, 2, 3]], np.uint8)


def _constant_images(colours: np.ndarray, size: int) -> np.ndarray:
    return np.broadcast_to(colours[:, None, None, :], (len(colours), size, size, 3)).copy()


@pytest.fixture(scope="module")
def graph_files(tmp_path_factory) -> dict[str, Path]:
    """The stand-in as ``<layout>.pb`` and as ``<layout>.tgz`` (published member name)."""
    root = tmp_path_factory.mktemp("graphs")
    files = {}
    for layout in ("tfgan", "ttur"):
        data = standin_graph_bytes(layout)
        (root / f"{layout}.pb").write_bytes(data)
        files[f"{layout}.pb"] = root / f"{layout}.pb"
        files[f"{layout}.tgz"] = write_tarball(
            root / f"{layout}.tgz", {"LICENSE": b"x", MEMBER[layout]: data})
    return files


@pytest.fixture(scope="module")
def networks(graph_files) -> dict[str, StandardInception]:
    return {name: StandardInception(path) for name, path in graph_files.items()}


@pytest.mark.parametrize("name", ["tfgan.pb", "tfgan.tgz", "ttur.pb", "ttur.tgz"])
@pytest.mark.parametrize("size", [32, 64, 299, 400])
def test_constant_colours_give_known_features(networks, graph_files, name, size) -> None:
    net = networks[name]
    features, probs = net.features_and_probs(_constant_images(COLOURS, size), batch_size=2)
    expected_features, expected_probs = expected_constant(COLOURS, net.layout)
    assert features.shape == (5, 2048) and probs.shape == (5, 1008)
    np.testing.assert_allclose(features, expected_features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-4, atol=1e-7)
    assert net.sha256 == hashlib.sha256(graph_files[name].read_bytes()).hexdigest()
    assert net.member == (MEMBER[net.layout] if name.endswith(".tgz") else None)


def test_grayscale_is_repeated_to_rgb(networks) -> None:
    grey = np.array([[0], [77], [255]], np.uint8)
    images = np.broadcast_to(grey[:, None, None, :], (3, 28, 28, 1)).copy()
    features, _ = networks["tfgan.pb"].features_and_probs(images)
    np.testing.assert_allclose(features, expected_constant(np.repeat(grey, 3, 1), "tfgan")[0],
                               rtol=1e-5, atol=1e-5)


def test_batching_does_not_change_results(networks) -> None:
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    net = networks["ttur.pb"]
    whole = net.features_and_probs(images, batch_size=7)
    for batch_size in (1, 3):
        for a, b in zip(net.features_and_probs(images, batch_size=batch_size), whole,
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pinned_checksum_refuses_another_file(graph_files) -> None:
    path = graph_files["tfgan.tgz"]
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_inception_graph(path, good).layout == "tfgan"
    with pytest.raises(ValueError, match=r"^\S+tfgan.tgz: sha256 \w+ is not the pinned 0+ "):
        read_inception_graph(path, "0" * 64)


@pytest.mark.parametrize(("members", "match"), [
    ({"../classify_image_graph_def.pb": b"x"}, "escapes the archive"),
    ({"/etc/inceptionv1_for_inception_score.pb": b"x"}, "escapes the archive"),
    ({"LICENSE": b"x"}, "holds none of"),
    ({"classify_image_graph_def.pb": b"\xff\xfe garbage"}, "not a GraphDef"),
])
def test_untrusted_tarballs_are_refused(tmp_path, members, match) -> None:
    path = write_tarball(tmp_path / "bad.tgz", members)
    with pytest.raises(ValueError, match=match) as err:
        read_inception_graph(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tgz"]  # nothing extracted


def test_untrusted_pb_files_are_refused(tmp_path) -> None:
    oversized = tmp_path / "big.pb"
    with open(oversized, "wb") as f:  # sparse: no disk used
        f.truncate(inception_graph.MAX_GRAPH_BYTES + 1)
    with pytest.raises(ValueError, match="over the"):
        read_inception_graph(oversized)
    (tmp_path / "junk.pb").write_bytes(b"\x08\x96\x01" * 5 + b"\xff")
    with pytest.raises(ValueError, match="not a GraphDef"):
        read_inception_graph(tmp_path / "junk.pb")
    import tensorflow as tf
    other = tf.Graph()
    with other.as_default():
        tf.constant(1.0, name="Mul")
    (tmp_path / "other.pb").write_bytes(other.as_graph_def().SerializeToString())
    with pytest.raises(ValueError, match="without the Inception tensors"):
        read_inception_graph(tmp_path / "other.pb")
    with pytest.raises(ValueError, match="not found"):
        read_inception_graph(tmp_path / "missing.pb")


@pytest.fixture
def server(graph_files):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(graph_files["tfgan.tgz"].parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_the_pinned_checksum(server, graph_files, tmp_path) -> None:
    url = f"{server}/tfgan.tgz"
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"^download of \S+: sha256 \w+ is not the pinned f+ ") \
            as err:
        download_graph("f" * 64, cache, url)
    assert "\n" not in str(err.value)
    assert list(cache.iterdir()) == []  # nothing partial left behind
    good = hashlib.sha256(graph_files["tfgan.tgz"].read_bytes()).hexdigest()
    path = download_graph(good, cache, url)
    assert path == cache / "tfgan.tgz" and StandardInception(path, good).layout == "tfgan"
    assert [p.name for p in cache.iterdir()] == ["tfgan.tgz"]
    with pytest.raises(ValueError, match="failed"):
        download_graph(good, tmp_path / "other", f"{server}/missing.tgz")


def test_inception_score_ten_splits_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(1003, 1008)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = []
    for i in range(10):  # improved-gan's get_inception_score, written out
        part = probs[i * 1003 // 10:(i + 1) * 1003 // 10]
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)
    with pytest.raises(ValueError, match="splits"):
        inception_score(probs[:5], splits=10)
