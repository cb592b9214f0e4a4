"""Studies: statistics, curves and figures on files written here; then a real DVC queue of
tiny experiments in a clone, and the same study gathered across two clones through a
bare git remote with ``dvc exp push`` / ``dvc exp pull``.

Expected values are always recomputed from what the experiments hold (their commits,
read with plain git and yaml) with the standard library's ``statistics``, never typed in.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, TINY_MODEL, write_params
from PIL import Image

from wgan.study import (
    Run,
    curve_figure,
    describe,
    group_runs,
    load_run,
    median_curve,
    read_curve,
    write_study,
)

BIN = str(Path(sys.executable).parent)
TIMEOUT = 2400  # seconds for a queue of tiny experiments on a busy 2-core machine


def _env(pythonpath: str = "src") -> dict:
    """By default ``src`` relative to the working directory: each stage then imports the
    code of the workspace it runs in, a queued experiment's temporary copy included."""
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"],
            "PYTHONPATH": pythonpath, "DVC_NO_ANALYTICS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2", "GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_EMAIL": "t@example.com"}


def _run(cmd: list[str], cwd: Path, timeout: int = 900, ok: bool = True,
         pythonpath: str = "src"):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(pythonpath), capture_output=True, text=True,
                          timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


# ---------------------------------------------------------------- statistics and curves

def test_describe_matches_the_standard_library():
    rng = np.random.default_rng(0)
    values = [float(v) for v in rng.normal(10, 3, 7)]
    stats = describe(values[:3] + [None] + values[3:])
    assert stats["n"] == 7
    assert stats["median"] == pytest.approx(statistics.median(values))
    assert stats["mean"] == pytest.approx(statistics.mean(values))
    assert stats["std"] == pytest.approx(statistics.stdev(values))  # ddof = 1
    one = describe([None, values[0]])
    assert (one["n"], one["median"], one["mean"], one["std"]) == (1, values[0], values[0], None)
    assert describe([None]) == {"n": 0, "median": None, "mean": None, "std": None}


def _tsv(header: list[str], rows: np.ndarray) -> str:
    return "\n".join(["\t".join(header)] + ["\t".join(map(repr, r)) for r in rows.tolist()])


def test_read_curve_takes_the_named_metric_column():
    rng = np.random.default_rng(1)
    header = ["step", "train_seconds", "eval_seconds", "kid", "fid", "recall"]
    table = rng.uniform(0, 100, (6, len(header)))
    curve = read_curve(_tsv(header, table) + "\n", "fid")
    np.testing.assert_array_equal(curve.step, table[:, 0])
    np.testing.assert_array_equal(curve.train_seconds, table[:, 1])
    np.testing.assert_array_equal(curve.value, table[:, header.index("fid")])
    with pytest.raises(ValueError, match="no column 'validity_rate'"):
        read_curve(_tsv(header, table), "validity_rate")
    with pytest.raises(ValueError, match=f"row {len(table) + 2} has 4 fields"):  # 1 = header
        read_curve(_tsv(header, table) + "\n1\t2\t3\t4", "fid")
    with pytest.raises(ValueError, match="empty"):
        read_curve("\n", "fid")


def test_median_curve_over_the_common_range():
    """Lines are interpolated exactly, so the median at any x is the median of a·x + b."""
    rng = np.random.default_rng(2)
    lines = [(rng.uniform(-2, 2), rng.uniform(0, 5)) for _ in range(5)]
    xs = [np.sort(rng.uniform(0, 100, 12)) for _ in lines]
    ys = [a * x + b for (a, b), x in zip(lines, xs, strict=True)]
    ys[0] = ys[0].copy()
    ys[0][-1] = np.nan  # a diverged run's last evaluation
    grid, median = median_curve(list(zip(xs, ys, strict=True)))
    assert grid[0] == max(x[0] for x in xs)
    assert grid[-1] == min([xs[0][-2]] + [x[-1] for x in xs[1:]])
    assert set(grid) <= set(np.concatenate(xs))
    expected = [statistics.median(a * g + b for a, b in lines) for g in grid]
    np.testing.assert_allclose(median, expected)


def test_groups_in_numeric_order_then_by_name():
    """``--by train.lambda`` gives 0.5 < 9 < 10 (not "10" < "9"), then null and names."""
    values = [10, None, 0.5, "wgan", 9, 10]
    runs = [Run(name=f"r{i}", rev="0" * 40, group=v, metric="fid", lower_is_better=True,
                final=1.0, best=None, best_step=None, target_step=None,
                target_train_seconds=None, target_recorded=False, health="ok", curve=None)
            for i, v in enumerate(values)]
    groups = group_runs(runs)
    numbers = sorted(v for v in values if isinstance(v, int | float))
    assert list(groups)[:len(set(numbers))] == [str(v) for v in dict.fromkeys(numbers)]
    assert list(groups)[len(set(numbers)):] == sorted(["null", "wgan"])
    assert [r.name for r in groups["10"]] == ["r0", "r5"]


# ------------------------------------------------ experiments in the contract's format

def _commit(repo: Path, files: dict[str, str]) -> str:
    """A commit holding exactly ``files`` under metrics/ (as an experiment's commit does)."""
    subprocess.run(["git", "rm", "-rqf", "--ignore-unmatch", "metrics"], cwd=repo, check=True,
                   env=_env())
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "run", "--allow-empty"]):
        subprocess.run(cmd, cwd=repo, check=True, env=_env())
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, env=_env(),
                          capture_output=True, text=True).stdout.strip()


def _contract_run(rng, floor: float, health: str, ratio: float = 10.0) -> tuple[dict, str]:
    """train.json and eval_curves.tsv as items 1–2 of issue 16 will write them: FID
    decaying towards a random level, evaluated every 100 steps at run-specific speeds."""
    steps = np.arange(100, 900, 100)
    seconds = steps * rng.uniform(0.1, 0.3) + rng.uniform(0, 5)
    fid = floor * (1 + rng.uniform(2, 30) * np.exp(-steps / rng.uniform(150, 400)))
    fid = fid + rng.uniform(0, 0.3, fid.size)
    table = np.column_stack([steps, seconds, seconds / 10, fid * 1e-3, fid, 1 / fid])
    best = int(np.argmin(fid))
    hit = np.flatnonzero(fid <= ratio * floor)
    train = {"variant": "x", "steps": 800, "wall_time_s": float(seconds[-1]) + 1,
             "primary_metric": "fid", "primary_lower_is_better": True,
             "best_fid": float(fid[best]), "best_step": int(steps[best]),
             "best_train_seconds": float(seconds[best]),
             "target_step": int(steps[hit[0]]) if hit.size else None,
             "target_train_seconds": float(seconds[hit[0]]) if hit.size else None,
             "floor_fid": floor, "final_fid": float(fid[-1]), "health": health}
    header = ["step", "train_seconds", "eval_seconds", "kid", "fid", "recall"]
    return train, _tsv(header, table)


@pytest.fixture
def contract_runs(tmp_path):
    """Runs of three groups in a real git repo: gan and wgan in the contract's format
    (one wgan run never reaches its target), wgan-gp an older run with only eval.json."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    rng = np.random.default_rng(3)
    plan = [("gan", "ok", 10.0), ("gan", "ok", 10.0), ("gan", "stalled", 10.0),
            ("wgan", "degraded", 10.0), ("wgan", "ok", 1.0)]  # ratio 1: never reached
    runs, written = [], {}
    for i, (variant, health, ratio) in enumerate(plan):
        train, tsv = _contract_run(rng, 1.02, health, ratio)
        evaluation = {"classifier": {"fid": {"value": train["final_fid"] * 1.01, "floor": 1.0}}}
        rev = _commit(repo, {"metrics/train.json": json.dumps(train),
                             "metrics/eval.json": json.dumps(evaluation),
                             "metrics/eval_curves.tsv": tsv})
        name = f"{variant}-{i}"
        written[name] = (train, read_curve(tsv, "fid"))
        runs.append(load_run(repo, {"name": name, "rev": rev,
                                    "params": {"train.variant": variant}}, "train.variant"))
    old_eval = {"classifier": {"fid": {"value": float(rng.uniform(5, 50)), "floor": 1.0}}}
    rev = _commit(repo, {"metrics/train.json": json.dumps({"variant": "wgan-gp", "steps": 8}),
                         "metrics/eval.json": json.dumps(old_eval)})
    runs.append(load_run(repo, {"name": "old", "rev": rev,
                                "params": {"train.variant": "wgan-gp"}}, "train.variant"))
    written["old"] = (old_eval, None)
    return runs, written


def test_study_of_runs_in_the_contract_format(contract_runs, tmp_path):
    runs, written = contract_runs
    summary = write_study(tmp_path / "study", runs, "train.variant", [])
    saved = json.loads((tmp_path / "study/study.json").read_text())
    assert saved == summary and saved["primary_metric"] == "fid" and saved["lower_is_better"]
    assert list(saved["groups"]) == ["gan", "wgan", "wgan-gp"]
    for label, group in saved["groups"].items():
        trains = [written[n][0] for n in group["experiments"]]
        assert group["runs"] == len(trains) and all(n.startswith(label) or n == "old"
                                                    for n in group["experiments"])
        finals = [t.get("final_fid", t.get("classifier", {}).get("fid", {}).get("value"))
                  for t in trains]
        assert group["final"]["median"] == pytest.approx(statistics.median(finals))
        assert group["final"]["mean"] == pytest.approx(statistics.mean(finals))
        assert group["final"]["std"] == (pytest.approx(statistics.stdev(finals))
                                         if len(finals) > 1 else None)
        bests = [t["best_fid"] for t in trains if "best_fid" in t]
        assert group["best"]["n"] == len(bests)
        if bests:
            assert group["best"]["median"] == pytest.approx(statistics.median(bests))
        reached = [t for t in trains if t.get("target_step") is not None]
        assert group["target_reached"] == len(reached)
        assert group["target_recorded"] == sum("target_step" in t for t in trains)
        if reached:
            assert group["target_step"]["median"] == pytest.approx(
                statistics.median(t["target_step"] for t in reached))
            assert group["target_train_seconds"]["mean"] == pytest.approx(
                statistics.mean(t["target_train_seconds"] for t in reached))
        assert group["health"] == dict(Counter(t.get("health", "unknown") for t in trains))
    old = saved["groups"]["wgan-gp"]
    assert old["best"]["median"] is None and old["health"] == {"unknown": 1}
    md = (tmp_path / "study/study.md").read_text()
    for name in ("fid_vs_step.png", "fid_vs_seconds.png"):
        assert f"]({name})" in md
        with Image.open(tmp_path / "study" / name) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_figures_draw_each_run_thin_and_the_group_median_bold(contract_runs):
    runs, written = contract_runs
    groups = group_runs(runs)
    for x in ("step", "train_seconds"):
        ax = curve_figure(groups, x, "train.variant").axes[0]
        thin = [line for line in ax.get_lines() if line.get_linewidth() < 1]
        bold = [line for line in ax.get_lines() if line.get_linewidth() > 2]
        with_curves = {label: [written[r.name][1] for r in g if r.curve is not None]
                       for label, g in groups.items()}
        assert len(thin) == sum(len(c) for c in with_curves.values())
        assert len(bold) == sum(bool(c) for c in with_curves.values())
        assert ax.get_yscale() == "log"
        gan = next(line for line in bold if line.get_label().startswith("gan "))
        curves = with_curves["gan"]
        if x == "step":  # the runs share their steps: the median is taken per step
            np.testing.assert_array_equal(gan.get_xdata(), curves[0].step)
            np.testing.assert_allclose(gan.get_ydata(),
                                       np.median([c.value for c in curves], axis=0))
        else:
            assert gan.get_xdata()[0] == max(c.train_seconds[0] for c in curves)
            assert gan.get_xdata()[-1] == min(c.train_seconds[-1] for c in curves)


def test_a_study_refuses_mixed_primary_metrics(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    runs = []
    for i, evaluation in enumerate([{"classifier": {"fid": {"value": 9.0}}},
                                    {"masks": {"validity_rate": {"value": 0.5}}}]):
        rev = _commit(repo, {"metrics/eval.json": json.dumps(evaluation)})
        runs.append(load_run(repo, {"name": f"r{i}", "rev": rev, "params": {}}, "seed"))
    assert [(r.metric, r.lower_is_better) for r in runs] == [("fid", True),
                                                             ("validity_rate", False)]
    with pytest.raises(ValueError, match="different primary metrics"):
        write_study(tmp_path / "study", runs, "seed", [])


# ------------------------------------------------------------- a real queue, two clones

def _wait_for_queue(repo: Path) -> str:
    deadline = time.monotonic() + TIMEOUT
    while True:
        status = _run(["dvc", "queue", "status"], repo).stdout
        if not any(s in status for s in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
        time.sleep(5)


LIVE = "dvclive/train/metrics.json"  # DVCLive's latest evaluation, a `train` metric


def _live_metrics(show: list[dict], name: str) -> tuple[str | None, dict | None]:
    """Experiment ``name``'s executor state and the DVCLive metrics of its newest revision
    in ``dvc exp show --json`` (None when it is not there)."""
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            if exp.get("name") != name:
                continue
            state = (exp.get("executor") or {}).get("state")
            data = exp["revs"][0].get("data") or {}
            return state, ((data.get("metrics") or {}).get(LIVE) or {}).get("data")
    return None, None


def _follow(repo: Path, name: str) -> list[dict]:
    """Poll ``dvc exp show --json`` until experiment ``name`` has its commit; return the
    DVCLive metrics it showed while the experiment was running (each distinct one once).
    ``exp show`` can fail while an experiment is writing its files: such a poll is
    retried."""
    seen: list[dict] = []
    deadline = time.monotonic() + TIMEOUT
    while name not in _experiments(repo):
        assert time.monotonic() < deadline, \
            f"experiment {name!r} did not finish within {TIMEOUT} s; exp show saw {seen}"
        proc = _run(["dvc", "exp", "show", "--json"], repo, ok=False)
        try:
            state, metrics = _live_metrics(json.loads(proc.stdout), name)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            continue  # a transient failure (returncode != 0 or partial output)
        assert state != "failed", f"experiment {name!r} failed:\n" + _run(
            ["dvc", "queue", "logs", name], repo, ok=False).stdout[-3000:]
        if state == "running" and metrics and metrics not in seen:
            seen.append(metrics)
        time.sleep(1)
    return seen


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Clone A of this repository with tiny params, pushed to a bare remote, that ran a
    queue of 2 variants × 2 seeds plus one experiment that fails (train.batch=0), after a
    longer one, ``live``, evaluated every 2 steps, that ``dvc exp show`` followed while it
    ran (its runs are grouped with the others: every expectation is read from git). The
    queue runs two experiments at a time, as ``WGAN_JOBS=2 dvc queue start -j 2``."""
    base = tmp_path_factory.mktemp("study")
    remote, a = base / "remote.git", base / "a"
    _run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], base)
    _run(["git", "clone", "-q", str(ROOT), str(a)], base)
    write_params(a, train={"steps": 2, "batch": 16, "log_every": 2, "sample_every": 2,
                           "checkpoint_every": 2, "jit_compile": False, "eval_n": 200},
                 model=TINY_MODEL, sample={"n": 200, "batch": 100}, classifier={"epochs": 1},
                 evaluate={"n": 200, "kid_subsets": 5, "kid_subset_size": 50,
                           "swd_patches": 8})
    _run(["git", "commit", "-qam", "tiny params"], a)
    # prepare, classifier and reference once, committed: every run shares them (``live``
    # re-runs reference for its eval_every), and two workers must not both compute them.
    _run(["dvc", "repro", "reference"], a)
    _run(["git", "add", "-A"], a)
    _run(["git", "commit", "-qm", "shared stages"], a)
    _run(["git", "remote", "add", "share", str(remote)], a)
    _run(["git", "push", "-q", "share", "HEAD:refs/heads/main"], a)
    _run(["dvc", "exp", "run", "--queue", "-n", "live", "-S", "train.variant=gan",
          "-S", "train.steps=60", "-S", "train.eval_every=2"], a)  # first out of the queue
    _run(["dvc", "exp", "run", "--queue", "-S", "train.variant=gan,wgan", "-S", "seed=0,1"], a)
    _run(["dvc", "exp", "run", "--queue", "-S", "train.batch=0", "-n", "broken"], a)
    # Two workers, each stage's TensorFlow on one core (docs/training.md): a tiny run is
    # mostly process start-up, which leaves the second core idle at -j 1.
    with (base / "queue.log").open("w") as out:  # not a pipe: the workers would hold it
        subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=a,
                       env={**_env(), "WGAN_JOBS": "2"}, stdout=out,
                       stderr=subprocess.STDOUT, check=True, timeout=300)
    live = _follow(a, "live")
    _wait_for_queue(a)
    return {"remote": remote, "a": a, "base": base, "live": live}


def _git(repo: Path, *args: str) -> str:
    return _run(["git", *args], repo).stdout


def _experiments(repo: Path) -> dict[str, str]:
    """Experiment name → commit, from git: DVC keeps the experiments of baseline commit
    B as refs/exps/B[:2]/B[2:]/<name> (what dvc exp push/pull moves); its queue's own
    refs (refs/exps/celery/…, refs/exps/exec/…) are not experiments."""
    head = _git(repo, "rev-parse", "HEAD").strip()
    refs = _git(repo, "for-each-ref", "--format=%(objectname) %(refname)",
                f"refs/exps/{head[:2]}/{head[2:]}/")
    return {ref.rsplit("/", 1)[1]: sha for sha, ref in (line.split() for line in
                                                         refs.splitlines())}


def _expected(repo: Path, by: str) -> dict[str, dict]:
    """Per group of ``by``: the final FIDs and health verdicts, read from each
    experiment's commit with plain git and yaml."""
    groups: dict[str, dict] = {}
    for name, sha in _experiments(repo).items():
        params = yaml.safe_load(_git(repo, "show", f"{sha}:params.yaml"))
        value = params
        for key in by.split("."):
            value = value[key]
        train = json.loads(_git(repo, "show", f"{sha}:metrics/train.json"))
        final = json.loads(_git(repo, "show", f"{sha}:metrics/eval.json"))
        final = train.get("final_fid", final["classifier"]["fid"]["value"])
        group = groups.setdefault(str(value), {"names": [], "finals": [], "health": Counter()})
        group["names"].append(name)
        group["finals"].append(final)
        group["health"][train.get("health", "unknown")] += 1
    return groups


def _study(repo: Path, out: Path, *args: str, ok: bool = True):
    proc = _run([sys.executable, "-m", "wgan.study", "--out", str(out), *args], repo, ok=ok,
                pythonpath=str(ROOT / "src"))  # the study code under test
    return json.loads((out / "study.json").read_text()) if ok else proc


def _assert_matches(study: dict, expected: dict[str, dict]) -> None:
    assert set(study["groups"]) == set(expected)
    for label, exp in expected.items():
        group = study["groups"][label]
        assert sorted(group["experiments"]) == sorted(exp["names"])
        assert group["runs"] == len(exp["names"])
        assert group["final"]["n"] == len(exp["finals"])
        assert group["final"]["median"] == pytest.approx(statistics.median(exp["finals"]))
        assert group["final"]["mean"] == pytest.approx(statistics.mean(exp["finals"]))
        if len(exp["finals"]) > 1:
            assert group["final"]["std"] == pytest.approx(statistics.stdev(exp["finals"]))
        else:
            assert group["final"]["std"] is None
        assert group["health"] == dict(exp["health"])


def _curves_exist(repo: Path) -> bool:
    return any(_git(repo, "ls-tree", "--name-only", sha, "--", "metrics/eval_curves.tsv")
               for sha in _experiments(repo).values())


def test_study_of_a_real_queue(machines, tmp_path):
    a = machines["a"]
    assert "broken" not in _experiments(a)  # a failed experiment has no commit
    study = _study(a, tmp_path / "variant")
    expected = _expected(a, "train.variant")
    assert sorted(expected) == ["gan", "wgan"]
    _assert_matches(study, expected)
    assert {"name": "broken", "reason": "experiment is failed"} in study["skipped"]
    figures = {p.name for p in (tmp_path / "variant").glob("*.png")}
    assert figures == ({"fid_vs_step.png", "fid_vs_seconds.png"} if _curves_exist(a) else set())

    by_seed = _study(a, tmp_path / "seed", "--by", "seed")
    assert list(by_seed["groups"]) == ["0", "1"]
    _assert_matches(by_seed, _expected(a, "seed"))

    two = sorted(_experiments(a))[:2]
    named = _study(a, tmp_path / "named", *two)
    assert sorted(n for g in named["groups"].values() for n in g["experiments"]) == two
    refused = _study(a, tmp_path / "none", "no-such-exp", ok=False)
    assert refused.returncode == 1 and "no such experiment: no-such-exp" in refused.stderr
    refused = _study(a, tmp_path / "none", "--by", "train.colour", ok=False)
    assert refused.returncode == 1 and "no experiment has the param 'train.colour'" \
        in refused.stderr


def test_exp_show_shows_a_running_experiments_latest_evaluation(machines):
    """Issue 16: live metrics go through DVCLive, so ``dvc exp show`` shows a running
    experiment's latest values. Each value seen while ``live`` ran is that evaluation's
    row of the curves file it committed."""
    seen, a = machines["live"], machines["a"]
    assert seen, f"dvc exp show never showed {LIVE} of experiment 'live' while it ran"
    table = _git(a, "show", f"{_experiments(a)['live']}:metrics/eval_curves.tsv")
    header, *lines = [line.split("\t") for line in table.splitlines()]
    rows = {int(float(r[0])): dict(zip(header, map(float, r), strict=True)) for r in lines}
    for metrics in seen:
        assert "eval" in metrics, f"{LIVE} of the running experiment holds no evaluation: " \
            f"{metrics}"
        row = rows[metrics["step"]]
        assert metrics["eval"].keys() == set(header) - {"step", "eval_seconds"}
        for name, value in metrics["eval"].items():
            assert value == pytest.approx(row[name], rel=1e-5), (metrics["step"], name)


def test_a_study_gathers_runs_from_two_clones(machines, tmp_path):
    """Clone B (another machine; it shares A's DVC cache as a cluster's shared disk
    would, so only its own stages run) adds a wgan-gp run; both push to the bare remote,
    and after `dvc exp pull` each clone's study holds all five runs."""
    a, remote = machines["a"], machines["remote"]
    b = machines["base"] / "b"
    _run(["git", "clone", "-q", "-b", "main", str(remote), str(b)], machines["base"])
    _run(["dvc", "cache", "dir", "--local", str(a / ".dvc/cache")], b)
    _run(["dvc", "exp", "run", "-S", "train.variant=wgan-gp", "-n", "from-b"], b)
    _run(["dvc", "exp", "push", "origin", "--no-cache"], b)
    _run(["dvc", "exp", "push", "share", "--no-cache"], a)
    pulled = _run(["dvc", "exp", "pull", "origin", "--no-cache"], b).stdout
    assert all(name in pulled for name in _experiments(a))
    _run(["dvc", "exp", "pull", "share", "--no-cache"], a)
    assert _experiments(a) == _experiments(b) and "from-b" in _experiments(a)

    expected = _expected(b, "train.variant")
    assert sorted(expected) == ["gan", "wgan", "wgan-gp"]
    study_b = _study(b, tmp_path / "b")
    _assert_matches(study_b, expected)
    assert study_b["groups"]["wgan-gp"]["final"]["std"] is None  # one run
    study_a = _study(a, tmp_path / "a")
    assert study_a["groups"] == study_b["groups"]
