"""Test-session setup: split the CPU into two logical devices before TensorFlow starts.

That lets MirroredStrategy(["/cpu:0", "/cpu:1"]) run two real replicas on a CPU-only
machine, which is how the distributed tests check loss scaling and gradient sums.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from wgan.prepared.write import Source, write_prepared  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Small enough for a CPU test, large enough to exercise every part of the loop.
# XLA compiling costs ~5 s per training run here; the tests of the default (XLA) path,
# determinism and exact resume, turn it back on.
TINY_TRAIN = {"steps": 6, "batch": 8, "log_every": 2, "sample_every": 3, "checkpoint_every": 2,
              "jit_compile": False, "eval_every": None}
TINY_MODEL = {"base_channels": 4, "z_dim": 8}


def digit_blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labelled 28×28×1 uint8 images: class c is a bright square at a class-dependent place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    x = rng.integers(0, 40, (n, 28, 28, 1)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, k = divmod(int(c), 4)
        x[i, 2 + 8 * r: 8 + 8 * r, 2 + 6 * k: 8 + 6 * k] = 255
    return x, labels


def write_digit_dataset(path: Path, n_train: int = 64, n_test: int = 32) -> Path:
    splits = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, y = digit_blobs(n, seed)
        splits[split] = list(zip(x, y.tolist(), strict=True))
    source = Source("mnist", (28, 28, 1), 10, splits, {"blobs": "synthetic"},
                    {"train": n_train, "test": n_test})
    write_prepared(source, path, 2, {"name": "mnist"})
    return path


def cluster_hosts(n: int) -> list[str]:
    """``n`` distinct ``127.0.0.1:port`` addresses that were free a moment ago (a local TF
    cluster); the sockets stay open until all are chosen, so no two workers share a port."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]


def tf_config(hosts: list[str], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` of a cluster of ``hosts``."""
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def run_cluster(workers: list[dict], logs: Path, timeout: float) -> list[str]:
    """Run a cluster's worker processes (``Popen`` keyword arguments each) at once; return
    each one's stderr. Output goes to files under ``logs``, so no unread pipe can stall a
    worker that the others wait for in a collective; if one fails, the rest are killed."""
    logs.mkdir(parents=True, exist_ok=True)
    errs = [logs / f"worker-{i}.err" for i in range(len(workers))]
    procs: list[subprocess.Popen] = []
    try:
        for i, kwargs in enumerate(workers):
            with open(logs / f"worker-{i}.out", "w") as out, open(errs[i], "w") as err:
                procs.append(subprocess.Popen(**kwargs, stdout=out, stderr=err))
        deadline = time.monotonic() + timeout
        for i, proc in enumerate(procs):
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert code == 0, f"worker {i} exited with {code}:\n{errs[i].read_text()[-2000:]}"
    finally:
        for proc in procs:
            proc.kill()  # a no-op for a worker that has exited
            proc.wait()
    return [err.read_text() for err in errs]


def write_params(directory: Path, **sections) -> Path:
    """params.yaml = the repository's, with the given sections' keys overridden."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# Under pytest-xdist these modules run whole and one after another in one process: test_study
# builds its DVC queue once (a module fixture), and they and the benchmark smoke test are
# mostly stage subprocesses, which slow each other down when they run at once.
SUBPROCESS_MODULES = {"tests/test_benchmarks.py", "tests/test_pipeline.py", "tests/test_study.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``pytest -n N`` (``make test``): every other test is its own unit of work, so the
    processes end together; the modules above are one unit, sent first (xdist orders units
    by size). xdist's ``--dist loadgroup`` would group with marks, but it sets an item
    attribute that pytest 9 no longer reads."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TestOrSubprocessModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "subprocess modules" if module in SUBPROCESS_MODULES else nodeid

    return TestOrSubprocessModules(config, log)


@pytest.fixture(scope="session")
def two_cpus() -> tf.distribute.MirroredStrategy:
    """The one two-replica strategy of the session, as a training process has one.

    Every new MirroredStrategy numbers its collective all-reduces from the same keys, and
    TensorFlow remembers a key's tensor shape process-wide: strategies whose steps
    all-reduce different tensors (sync BatchNorm, wgan-lp's σ) must not take turns.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def digits(tmp_path) -> Path:
    return write_digit_dataset(tmp_path / "data/prepared/mnist")
